package e2e_test

import (
	"fmt"
	"testing"
)

// The request rules the gateway applies before routing: absolute-form
// authorities, Host shapes, one Authorization header, and header names
// with underscores.

// rulesConfig is a gateway with a host-scoped route, a JWT-guarded route
// that sets X-User from the token, and an open route, all to be.
func rulesConfig(engine, server, be string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
%sadmin:
  listen: "off"
log:
  format: json
  level: info
  access: true
middlewares:
  - { name: jwt, enabled: false, secret: "${JWT_SECRET}", audience: [%s], issuer: %q, claims_to_headers: { sub: X-User } }
routes:
  - { name: secure, host: secure.example, path: /, backend: %[6]q }
  - { name: api, path: /api, backend: %[6]q, middlewares: [ { name: jwt, enabled: true } ] }
  - { name: open, path: /, backend: %[6]q }
`, anyPort, engineYAML(engine), server, polAudience, polIssuer, be)
}

// TestAbsoluteFormAuthority: an absolute-form target routes and forwards
// on its validated authority; userinfo or a malformed authority is 400
// and reaches no backend.
func TestAbsoluteFormAuthority(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, rulesConfig(engine, "", be.URL))

		r := pnGetH1(t, g.addr, "other.example", "http://secure.example/x?y", "")
		if r.status != 201 {
			t.Fatalf("absolute-form: %d %q", r.status, r.body)
		}
		got := rec.last(t)
		if got.Host != "secure.example" || got.RequestURI != "/x?y" {
			t.Errorf("backend saw Host %q target %q, want secure.example /x?y", got.Host, got.RequestURI)
		}
		if line := g.accessLine(t, got.Header.Get("X-Request-Id")); line["route"] != "secure" || line["path"] != "/x?y" || line["host"] != "secure.example" {
			t.Errorf("access line route %v path %v host %v, want secure /x?y secure.example", line["route"], line["path"], line["host"])
		}

		before := rec.count()
		for _, target := range []string{
			"http://user@secure.example/",
			"http://user:pw@secure.example",
			"http://secure.example@evil.example/",
			`http://a"<>{|}^b/`,
			"http://secure.example:80x/",
			"http://:80/",
			"http://[::1/",
		} {
			if r := pnGetH1(t, g.addr, "secure.example", target, ""); r.status != 400 {
				t.Errorf("%q: %d %q, want 400", target, r.status, r.body)
			}
		}
		for _, host := range []string{"a:1:2", "[::1", "[secure.example]", "user@secure.example"} {
			if r := pnGetH1(t, g.addr, host, "/", ""); r.status != 400 {
				t.Errorf("Host %q: %d %q, want 400", host, r.status, r.body)
			}
		}
		if rec.count() != before {
			t.Errorf("%d refused requests reached the backend", rec.count()-before)
		}
	})
}

// TestDuplicateAuthorization: a valid token and an alg-none token in two
// Authorization headers are refused with 400 on HTTP/1.1 and HTTP/2, and
// reach no backend; one valid token still passes.
func TestDuplicateAuthorization(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	good := polSignHS(t, []byte(polSecret), polClaims("alice"))
	none := polSignNone(t, polClaims("admin"))
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, rulesConfig(engine, "", be.URL))

		r := pnGetH1Header(t, g.addr, "a", "/api/x", good, "Authorization: Bearer "+none+"\r\n")
		if r.status != 400 {
			t.Errorf("HTTP/1.1, two Authorization headers: %d %q, want 400", r.status, r.body)
		}
		req := polRequest(t, "GET", g.URL()+"/api/x", "")
		req.Header["Authorization"] = []string{"Bearer " + good, "Bearer " + none}
		resp, body := do(t, pnH2Client(t), req)
		if resp.ProtoMajor != 2 || resp.StatusCode != 400 {
			t.Errorf("HTTP/2, two Authorization fields: %s %d %q, want 400", resp.Proto, resp.StatusCode, body)
		}
		if rec.count() != 0 {
			t.Fatalf("a request with two Authorization headers reached the backend")
		}
		if r := pnGetH1(t, g.addr, "a", "/api/x", good); r.status != 201 {
			t.Fatalf("one valid token: %d %q", r.status, r.body)
		}
		if got := rec.last(t).Header.Get("X-User"); got != "alice" {
			t.Errorf("X-User %q, want alice", got)
		}
	})
}

// TestUnderscoreHeaders: "X_User: admin" never reaches the backend beside
// the X-User the jwt policy sets (CGI and WSGI read both as HTTP_X_USER),
// unless headers_with_underscores allows it; "reject" answers 400.
func TestUnderscoreHeaders(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	good := polSignHS(t, []byte(polSecret), polClaims("alice"))
	for _, tc := range []struct {
		setting   string
		status    int
		forwarded bool
	}{
		{"", 201, false},
		{"headers_with_underscores: reject", 400, false},
		{"headers_with_underscores: allow", 201, true},
	} {
		forEachEngine(t, func(t *testing.T, engine string) {
			rec := &recorder{}
			be := newBackend(t, echoHandler(rec))
			server := ""
			if tc.setting != "" {
				server = "  " + tc.setting + "\n"
			}
			g := startGateway(t, engine, rulesConfig(engine, server, be.URL))
			for _, proto := range []string{"h1", "h2"} {
				var status int
				if proto == "h1" {
					status = pnGetH1Header(t, g.addr, "a", "/api/x", good, "X_User: admin\r\n").status
				} else {
					req := polRequest(t, "GET", g.URL()+"/api/x", good)
					req.Header["X_User"] = []string{"admin"}
					resp, _ := do(t, pnH2Client(t), req)
					status = resp.StatusCode
				}
				if status != tc.status {
					t.Fatalf("%s %q: status %d, want %d", proto, tc.setting, status, tc.status)
				}
				if status != 201 {
					continue
				}
				h := rec.last(t).Header
				if h.Get("X-User") != "alice" || (h.Get("X_User") != "") != tc.forwarded {
					t.Errorf("%s %q: backend saw X-User %q X_User %q", proto, tc.setting, h.Get("X-User"), h.Get("X_User"))
				}
			}
		})
	}
}
