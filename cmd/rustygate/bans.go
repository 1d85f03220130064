package main

import (
	"net/http"
	"net/netip"

	"github.com/rustygate/rustygate/loader"
)

// bansHandler serves the ban list on the admin listener:
//
//	GET    /admin/bans        200, a JSON list [{"ip": "...", "until": "RFC 3339"}]
//	DELETE /admin/bans/{ip}   204 when the ban is lifted, 404 when there was none
//
// The admin mux puts them behind the admin token. Mount it at
// "/admin/bans" and "/admin/bans/".
func bansHandler(dp *loader.Datapath) http.Handler {
	if dp == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the datapath is not running"})
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/bans", func(w http.ResponseWriter, r *http.Request) {
		bans := dp.Bans()
		if bans == nil {
			bans = []loader.Ban{}
		}
		writeJSON(w, http.StatusOK, bans)
	})
	mux.HandleFunc("DELETE /admin/bans/{ip}", func(w http.ResponseWriter, r *http.Request) {
		ip, err := netip.ParseAddr(r.PathValue("ip"))
		if err != nil || ip.Zone() != "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not an IP address: " + r.PathValue("ip")})
			return
		}
		ip = ip.Unmap()
		banned := false
		for _, b := range dp.Bans() {
			if b.IP == ip {
				banned = true
			}
		}
		if err := dp.Unban(ip); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if !banned {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": ip.String() + " is not banned"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
