package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// noFollow is a client that returns redirects instead of following them.
func noFollow(t *testing.T, c *http.Client) *http.Client {
	t.Helper()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func redirectConfig(engine, be string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
  path: { merge_slashes: false }
admin:
  listen: "off"
log:
  format: json
  level: info
  access: true
routes:
  - path: "/secure"
    backend: %[3]q
    middlewares: [ { name: redirect, scheme: https } ]
  - path: "/old"
    backend: %[3]q
    middlewares: [ { name: redirect, regex: "^/old/(?P<rest>.*)$", replacement: "/new/$${rest}", status: 301 } ]
  - path: "/go"
    backend: %[3]q
    middlewares: [ { name: redirect, regex: "^/go/(.*)$", replacement: "/$1", keep_query: false } ]
  - path: "/new"
    backend: %[3]q
`, anyPort, engineYAML(engine), be)
}

// TestRedirectMiddleware: redirects to HTTPS and by regex on every
// engine, over HTTP/1.1 and h2c, without reaching the backend; a path or
// Host from the client never makes the Location point elsewhere.
func TestRedirectMiddleware(t *testing.T) {
	rec, be := polBackend(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, redirectConfig(engine, be))
		for name, c := range map[string]*http.Client{"h1": noFollow(t, newClient(t)), "h2c": noFollow(t, h2cClient(t))} {
			t.Run(name, func(t *testing.T) {
				for _, tc := range []struct {
					method, path string
					status       int
					location     string
				}{
					{"GET", "/secure/a?b=1", 302, "https://127.0.0.1/secure/a?b=1"},
					{"POST", "/secure/form", 307, "https://127.0.0.1/secure/form"},
					{"GET", "/old/x/y?q=2", 301, "/new/x/y?q=2"},
					{"DELETE", "/old/x", 308, "/new/x"},
					{"GET", "/go/docs?drop=1", 302, "/docs"},
					// The capture starts with "//": a scheme-relative Location
					// would send the browser to evil.example.
					{"GET", "/go//evil.example/x", 302, "/evil.example/x"},
				} {
					req, _ := http.NewRequest(tc.method, g.URL()+tc.path, nil)
					resp, body := do(t, c, req)
					if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
						t.Errorf("%s %s: %d Location %q, want %d %q (%s)", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location, body)
					}
				}
				resp, body := get(t, c, g.URL()+"/new/x")
				if resp.StatusCode != 200 || string(body) != "ok /new/x" {
					t.Errorf("/new/x: %d %q", resp.StatusCode, body)
				}
			})
		}
		// A Host that is not a plain host[:port] gets no redirect.
		conn := dialRaw(t, g.addr, 5*time.Second)
		io.WriteString(conn, "GET /secure/a HTTP/1.1\r\nHost: evil.example@127.0.0.1\r\nConnection: close\r\n\r\n")
		status, hdr, err := readHead(bufio.NewReader(conn))
		if err != nil || !strings.Contains(status, " 400 ") || hdr.Get("Location") != "" {
			t.Errorf("hostile Host: %q %v Location %q, want a 400 without Location", status, err, hdr.Get("Location"))
		}
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		if !strings.HasPrefix(r.RequestURI, "/new/") {
			t.Errorf("backend reached by %s, which was redirected", r.RequestURI)
		}
	}
}
