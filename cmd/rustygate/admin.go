package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"

	"github.com/rustygate/rustygate/config"
)

// requireToken protects an admin endpoint with `Authorization: Bearer
// <admin.token>`. Without a configured token the endpoint is disabled.
func (g *gateway) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := g.srv.Snapshot().Config.Admin.Token
		if token == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error": "admin endpoints are disabled: set admin.token in the configuration to enable them",
			})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Digests compared in constant time: neither the token's content
		// nor its length shows in the timing.
		want, have := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(have[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rustygate-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleReload forces a reload, even when the file did not change: 200
// with a summary, or 422 with the validation errors (the running
// configuration stays).
func (g *gateway) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := g.reload("admin", false)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// diffConfigs lists the routes added, removed and changed (by name), and
// the settings that only a restart applies.
func diffConfigs(old, cfg *config.Config) reloadResult {
	res := reloadResult{Routes: len(cfg.Routes), Added: []string{}, Removed: []string{}, Changed: []string{}}
	before := map[string]config.Route{}
	for _, r := range old.Routes {
		before[r.Name] = r
	}
	after := map[string]bool{}
	for _, r := range cfg.Routes {
		after[r.Name] = true
		prev, ok := before[r.Name]
		switch {
		case !ok:
			res.Added = append(res.Added, r.Name)
		case !reflect.DeepEqual(prev, r):
			res.Changed = append(res.Changed, r.Name)
		}
	}
	for _, r := range old.Routes {
		if !after[r.Name] {
			res.Removed = append(res.Removed, r.Name)
		}
	}
	if !reflect.DeepEqual(old.Middlewares, cfg.Middlewares) {
		res.Changed = append(res.Changed, "middlewares")
	}
	if old.Server.Engine != cfg.Server.Engine {
		res.Restart = append(res.Restart, "server.engine")
	}
	if old.Server.EventLoopCount() != cfg.Server.EventLoopCount() {
		res.Restart = append(res.Restart, "server.event_loops")
	}
	if *old.Server.H2C != *cfg.Server.H2C {
		res.Restart = append(res.Restart, "server.h2c")
	}
	if old.Server.MaxHeaderBytes != cfg.Server.MaxHeaderBytes {
		res.Restart = append(res.Restart, "server.max_header_bytes (new connections use the new value)")
	}
	if old.Admin.Listen != cfg.Admin.Listen {
		res.Restart = append(res.Restart, "admin.listen")
	}
	if old.Log.Format != cfg.Log.Format || old.AccessLog() != cfg.AccessLog() {
		res.Restart = append(res.Restart, "log.format/log.access")
	}
	return res
}
