package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// rwNginxConf answers every request with the target nginx received and
// the path it decoded from it.
const rwNginxConf = `daemon off;
worker_processes 1;
pid nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:%d;
        default_type text/plain;
        location / { return 200 "$request_uri|$uri"; }
    }
}
`

func rewriteConfig(engine, nginx, other string) string {
	return gatewayConfig(engine, fmt.Sprintf(`  - path: "/api"
    backend: %[1]q
    middlewares:
      - name: rewrite
        regex: "^/api/v1/(.*)$"
        replacement: "/v2/$1"
        query: { set: { lang: en }, remove: [debug] }
  - path: "/strip"
    backend: %[1]q
    middlewares: [ { name: rewrite, strip_prefix: /strip, add_prefix: /inner } ]
  - path: "/dots"
    backend: %[1]q
    middlewares: [ { name: rewrite, regex: "^/dots/a(.*)$", replacement: "/$1" } ]
  - path: "/sp"
    backend: %[1]q
    strip_prefix: true
    middlewares: [ { name: rewrite, regex: "^/sp/out/(.*)$", replacement: "/elsewhere/$1" } ]
  - path: "/v2"
    backend: %[2]q
`, nginx, other))
}

// TestRewriteMiddleware: nginx, which decodes paths, receives the
// rewritten target exactly as the gateway logs it (upstream_target), on
// every engine, over HTTP/1.1 and h2c; the route was chosen on the path
// as received.
func TestRewriteMiddleware(t *testing.T) {
	ngx := startNginxConf(t, rwNginxConf)
	rec, other := polBackend(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, rewriteConfig(engine, ngx.url, other))
		for name, c := range map[string]*http.Client{"h1": newClient(t), "h2c": h2cClient(t)} {
			t.Run(name, func(t *testing.T) {
				for _, tc := range []struct{ target, uri, path string }{
					{"/api/v1/users?debug=1&q=go", "/v2/users?q=go&lang=en", "/v2/users"},
					{"/api/v1/a%20b/%C3%A9?x", "/v2/a%20b/%C3%A9?x&lang=en", "/v2/a b/é"},
					{"/api/other", "/api/other?lang=en", "/api/other"},
					{"/strip/x?k=v", "/inner/x?k=v", "/inner/x"},
					// The route strips /sp from a rewritten path that still
					// starts with it, and leaves one that does not.
					{"/sp/out/x", "/elsewhere/x", "/elsewhere/x"},
				} {
					resp, body := get(t, c, g.URL()+tc.target)
					if want := tc.uri + "|" + tc.path; resp.StatusCode != 200 || string(body) != want {
						t.Errorf("%s: %d, nginx got %q, want %q", tc.target, resp.StatusCode, body, want)
						continue
					}
					line := g.accessLine(t, resp.Header.Get("X-Request-Id"))
					if line["path"] != tc.target || line["upstream_target"] != tc.uri {
						t.Errorf("%s: logged path %v upstream_target %v, want %s and %s", tc.target, line["path"], line["upstream_target"], tc.target, tc.uri)
					}
				}
				resp, body := get(t, c, g.URL()+"/dots/a./x")
				if resp.StatusCode != 400 || !strings.Contains(string(body), "dot segment") {
					t.Errorf("rewrite to a dot segment: %d %q, want 400", resp.StatusCode, body)
				}
			})
		}
	})
	if n := rec.count(); n != 0 {
		t.Fatalf("the /v2 route's backend got %d requests: routing used the rewritten path", n)
	}
}
