package main

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/rustygate/rustygate/loader"
)

// bansHandler serves the ban list on the admin listener:
//
//	GET    /admin/bans        200, a JSON list [{"ip": "...", "until": "RFC 3339"}]
//	POST   /admin/bans        201: bans {"ip": "...", "duration": "10m"}
//	                          (duration: default datapath.bans.duration)
//	DELETE /admin/bans/{ip}   204 when the ban is lifted, 404 when there was none
//
// In cluster mode a ban and its lifting reach every node. The admin mux
// puts them behind the admin token. Mount it at "/admin/bans" and
// "/admin/bans/".
func (g *gateway) bansHandler() http.Handler {
	dp := g.dp
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
	mux.HandleFunc("POST /admin/bans", g.handleBan)
	mux.HandleFunc("DELETE /admin/bans/{ip}", g.handleUnban)
	return mux
}

// handleBan bans an address from the admin API.
func (g *gateway) handleBan(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IP       string `json:"ip"`
		Duration string `json:"duration"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON object {\"ip\": \"...\", \"duration\": \"10m\"}: " + err.Error()})
		return
	}
	ip, err := netip.ParseAddr(req.IP)
	if err != nil || ip.Zone() != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not an IP address: " + req.IP})
		return
	}
	var ttl time.Duration
	if req.Duration != "" {
		if ttl, err = time.ParseDuration(req.Duration); err != nil || ttl <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid duration " + strconv.Quote(req.Duration) + " (want a Go duration such as 10m)"})
			return
		}
	} else {
		ttl = g.srv.Snapshot().Config.Datapath.Bans.Duration.D()
	}
	if err := g.banTarget().Ban(ip.Unmap(), ttl); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	g.log.Warn("client banned", "ip", ip.Unmap().String(), "reason", "admin", "for", ttl.String(), "datapath", g.dp.Mode())
	writeJSON(w, http.StatusCreated, loader.Ban{IP: ip.Unmap(), Until: time.Now().Add(ttl)})
}

// handleUnban lifts a ban, on every node in cluster mode.
func (g *gateway) handleUnban(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil || ip.Zone() != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not an IP address: " + r.PathValue("ip")})
		return
	}
	ip = ip.Unmap()
	banned := false
	for _, b := range g.dp.Bans() {
		if b.IP == ip {
			banned = true
		}
	}
	if g.cluster != nil {
		was, err := g.cluster.Unban(ip)
		banned = banned || was
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "lifted on this node only: " + err.Error()})
			return
		}
	} else if err := g.dp.Unban(ip); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if !banned {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": ip.String() + " is not banned"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
