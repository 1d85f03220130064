package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// mirrored is one copy a mirror backend got.
type mirrored struct {
	method, uri, host, body, xff string
}

// TestMirror: the copy carries the method, target, body and headers;
// the client gets the real backend's answer; a mirror that never answers
// delays no request and holds at most max_in_flight copies, the others
// being dropped and counted.
func TestMirror(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		got := make(chan mirrored, 100)
		shadow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- mirrored{r.Method, r.RequestURI, r.Host, string(b), r.Header.Get("X-Forwarded-For")}
			w.WriteHeader(500) // never seen by the client
		})
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
    middlewares: [ { name: mirror, backend: %q } ]
  - path: "/slow"
    backend: %q
    middlewares: [ { name: mirror, backend: %q, max_in_flight: 2, timeout: 2s } ]
`, be, shadow.URL, be, hung.URL)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, "", routes))
		c := newClient(t)

		req, _ := http.NewRequest(http.MethodPost, g.URL()+"/api/items?x=1", strings.NewReader(`{"n":1}`))
		resp, body := do(t, c, req)
		if resp.StatusCode != 200 || string(body) != "ok /api/items" {
			t.Fatalf("original: %d %q", resp.StatusCode, body)
		}
		select {
		case m := <-got:
			want := mirrored{"POST", "/api/items?x=1", strings.TrimPrefix(shadow.URL, "http://"), `{"n":1}`, "127.0.0.1"}
			if m != want {
				t.Errorf("mirror got %+v, want %+v", m, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the mirror got no copy")
		}
		polWaitMetric(t, c, admin, "rustygate_mirror_requests_total", map[string]string{"route": "/api", "reason": "sent"}, 1)

		// With the copies hung for 2s each, ten requests would take at
		// least 20s if a copy delayed its original.
		start := time.Now()
		for range 10 {
			if resp, _ := get(t, c, g.URL()+"/slow"); resp.StatusCode != 200 {
				t.Fatalf("/slow: %d", resp.StatusCode)
			}
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("10 requests with a hung mirror took %s", took)
		}
		if rec.count() != 11 {
			t.Errorf("the backend got %d requests, want 11", rec.count())
		}
		polWaitMetric(t, c, admin, "rustygate_mirror_requests_total", map[string]string{"route": "/slow", "reason": "dropped"}, 8)
		polWaitMetric(t, c, admin, "rustygate_mirror_requests_total", map[string]string{"route": "/slow", "reason": "failed"}, 2)
	})
}
