package e2e_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestIPFilter: per-route allow and deny lists (deny wins), the client
// taken from X-Forwarded-For behind a trusted proxy, 403 with a small
// JSON body, refusals counted by reason.
func TestIPFilter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec, be := polBackend(t)
		route := func(path, settings string) string {
			return fmt.Sprintf("  - path: %q\n    backend: %q\n    middlewares: [ { name: ip_filter, %s } ]\n", path, be, settings)
		}
		routes := route("/denied", `deny: ["127.0.0.1"]`) +
			route("/not-allowed", `allow: ["10.0.0.0/8", "::1"]`) +
			route("/allowed", `allow: ["127.0.0.0/8"], deny: ["10.0.0.0/8"]`) +
			route("/narrow", `allow: ["127.0.0.0/8"], deny: ["127.0.0.1/32"]`) +
			route("/proxied", `allow: ["203.0.113.0/24"], trusted_proxies: ["127.0.0.1"]`)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, "", routes))
		c := newClient(t)
		send := func(path, xff string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, g.URL()+path, nil)
			if xff != "" {
				req.Header.Set("X-Forwarded-For", xff)
			}
			resp, body := do(t, c, req)
			return resp.StatusCode, string(body)
		}
		for _, tc := range []struct {
			path, xff string
			want      int
		}{
			{"/denied", "", 403},
			{"/not-allowed", "", 403},
			{"/allowed", "", 200},
			{"/narrow", "", 403}, // deny wins over a wider allow
			{"/proxied", "203.0.113.7", 200},
			{"/proxied", "203.0.113.7, 198.51.100.1", 403}, // the right-most untrusted hop
			{"/proxied", "", 403},
		} {
			code, body := send(tc.path, tc.xff)
			if code != tc.want {
				t.Errorf("%s (X-Forwarded-For %q): %d %q, want %d", tc.path, tc.xff, code, body, tc.want)
			}
			if code == 403 && body != "{\"error\":\"forbidden\"}\n" {
				t.Errorf("%s: body %q", tc.path, body)
			}
		}
		if rec.count() != 2 {
			t.Errorf("the backend got %d requests, want the 2 allowed", rec.count())
		}
		polWaitMetric(t, c, admin, "rustygate_ip_filter_rejected_total", map[string]string{"route": "/denied", "reason": "deny"}, 1)
		polWaitMetric(t, c, admin, "rustygate_ip_filter_rejected_total", map[string]string{"route": "/proxied", "reason": "not_allowed"}, 2)
	})
}
