package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/rustygate/rustygate/config"
)

// Readiness of the process, as /readyz reports it.
const (
	// stateStarting: the listeners are not serving yet.
	stateStarting int32 = iota
	// stateReady: the gateway serves and takes new traffic.
	stateReady
	// stateDraining: a stop or a binary upgrade began; the process
	// finishes the work in flight and wants no new traffic.
	stateDraining
)

var stateNames = [...]string{stateStarting: "starting", stateReady: "ready", stateDraining: "draining"}

// readiness is the process state /readyz reports.
type readiness struct{ v atomic.Int32 }

func (r *readiness) set(s int32) { r.v.Store(s) }
func (r *readiness) get() int32  { return r.v.Load() }

// adminMux routes the operator endpoints. /livez, /healthz (its older
// name) and /readyz are open; /metrics is open unless admin.metrics_auth;
// /admin/* and /debug/pprof/ (only with admin.pprof) need the token.
// Every check reads the running configuration, so a reload applies.
func (g *gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metricsAuth(g.metrics.Handler()))
	mux.HandleFunc("GET /livez", handleLive)
	mux.HandleFunc("GET /healthz", handleLive)
	mux.HandleFunc("GET /readyz", g.handleReady)
	mux.Handle("POST /admin/reload", g.requireToken(http.HandlerFunc(g.handleReload)))
	bans := g.requireToken(g.bansHandler())
	mux.Handle("/admin/bans", bans)
	mux.Handle("/admin/bans/", bans)
	mux.Handle("GET /admin/cluster", g.requireToken(http.HandlerFunc(g.handleCluster)))
	mux.Handle("/debug/pprof/", g.pprofGate(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", g.pprofGate(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", g.pprofGate(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", g.pprofGate(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", g.pprofGate(http.HandlerFunc(pprof.Trace)))
	return mux
}

// handleLive answers while the process runs: a liveness probe that fails
// only when the process is hung or gone.
func handleLive(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// handleReady answers 200 while the gateway takes new traffic, and 503
// before it serves and from the moment a drain starts.
func (g *gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	st := g.ready.get()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if st != stateReady {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, stateNames[st]+"\n")
}

// metricsAuth asks for the token when admin.metrics_auth is on.
func (g *gateway) metricsAuth(next http.Handler) http.Handler {
	guarded := g.requireToken(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.srv.Snapshot().Config.Admin.MetricsAuth {
			guarded.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pprofGate serves the profiler only with admin.pprof, and then behind
// the token: profiles, traces and the command line are not for anyone
// who reaches the port.
func (g *gateway) pprofGate(next http.Handler) http.Handler {
	guarded := g.requireToken(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.srv.Snapshot().Config.Admin.PProf {
			http.NotFound(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

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
	if !reflect.DeepEqual(old.Server.TLS, cfg.Server.TLS) || old.Server.RedirectHTTPS != cfg.Server.RedirectHTTPS {
		res.Changed = append(res.Changed, "server.tls")
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
	if !reflect.DeepEqual(old.Cluster, cfg.Cluster) {
		res.Restart = append(res.Restart, "cluster")
	}
	if old.Admin.Listen != cfg.Admin.Listen {
		res.Restart = append(res.Restart, "admin.listen")
	}
	if old.Log.Format != cfg.Log.Format || old.AccessLog() != cfg.AccessLog() {
		res.Restart = append(res.Restart, "log.format/log.access")
	}
	return res
}
