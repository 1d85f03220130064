package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// faService is an auth service: "Bearer good" is alice, anything else
// gets 401 with a challenge and a body. It keeps the last request's
// headers.
type faService struct {
	mu   sync.Mutex
	last http.Header
	n    int
}

func (s *faService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.last, s.n = r.Header.Clone(), s.n+1
	s.last.Set("X-Method-Seen", r.Method)
	s.mu.Unlock()
	if r.Header.Get("Authorization") == "Bearer good" {
		w.Header().Set("X-User", "alice")
		w.Header().Set("X-Unrelated", "kept by the service")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, "denied by the auth service")
}

func (s *faService) header() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// TestForwardAuth: the auth service decides; its 2xx lets the request
// through with X-User copied (a client's X-User never reaches the
// backend), its refusal reaches the client as it is; an unreachable or
// hung service gives the configured status within the timeout.
func TestForwardAuth(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		svc := &faService{}
		auth := newBackend(t, svc.ServeHTTP)
		hang := make(chan struct{})
		hung := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(hang) })
		rec, be := polBackend(t)
		routes := fmt.Sprintf(`  - path: "/api"
    backend: %q
    middlewares:
      - name: forward_auth
        address: %q
        copy_headers: [X-User]
  - path: "/down"
    backend: %q
    middlewares: [ { name: forward_auth, address: "http://%s/auth", on_error: 502, timeout: 2s } ]
  - path: "/hung"
    backend: %q
    middlewares: [ { name: forward_auth, address: %q, timeout: 300ms } ]
`, be, auth.URL+"/verify", be, closedAddr(t), be, hung.URL)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, "", routes))
		c := newClient(t)
		send := func(method, path, token string) (*http.Response, []byte) {
			req, _ := http.NewRequest(method, g.URL()+path, strings.NewReader("payload"))
			req.Header.Set("Authorization", token)
			req.Header.Set("X-User", "forged")
			return do(t, c, req)
		}

		resp, body := send(http.MethodPost, "/api/orders?id=7", "Bearer good")
		if resp.StatusCode != 200 {
			t.Fatalf("allowed: %d %q", resp.StatusCode, body)
		}
		if got := rec.last(t).Header.Values("X-User"); len(got) != 1 || got[0] != "alice" {
			t.Errorf("backend got X-User %q, want [alice]", got)
		}
		h := svc.header()
		for k, v := range map[string]string{
			"X-Method-Seen": "GET", "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/api/orders?id=7",
			"X-Forwarded-Host": g.addr, "X-Forwarded-Proto": "http", "X-Forwarded-For": "127.0.0.1", "X-User": "",
		} {
			if h.Get(k) != v {
				t.Errorf("auth service got %s %q, want %q", k, h.Get(k), v)
			}
		}

		n := rec.count()
		resp, body = send(http.MethodGet, "/api/orders", "Bearer bad")
		if resp.StatusCode != 401 || string(body) != "denied by the auth service" || resp.Header.Get("WWW-Authenticate") != `Bearer realm="api"` {
			t.Errorf("refused: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if rec.count() != n {
			t.Error("a refused request reached the backend")
		}

		resp, _ = send(http.MethodGet, "/down", "Bearer good")
		if resp.StatusCode != 502 {
			t.Errorf("unreachable auth service: %d, want 502", resp.StatusCode)
		}
		start := time.Now()
		resp, _ = send(http.MethodGet, "/hung", "Bearer good")
		if took := time.Since(start); resp.StatusCode != 503 || took > 3*time.Second {
			t.Errorf("hung auth service: %d after %s, want 503 after about 300ms", resp.StatusCode, took)
		}
		if rec.count() != n {
			t.Error("a request reached the backend without an answer of the auth service")
		}
		polWaitMetric(t, c, admin, "rustygate_forward_auth_rejected_total", map[string]string{"route": "/api", "reason": "denied"}, 1)
		polWaitMetric(t, c, admin, "rustygate_forward_auth_rejected_total", map[string]string{"route": "/down", "reason": "error"}, 1)
		polWaitMetric(t, c, admin, "rustygate_forward_auth_rejected_total", map[string]string{"route": "/hung", "reason": "error"}, 1)
	})
}
