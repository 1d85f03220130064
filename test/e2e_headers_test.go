package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// headersEcho answers with the request's headers as JSON, and headers
// of its own that the gateway is told to change.
func headersEcho(t *testing.T) string {
	t.Helper()
	return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Powered-By", "php")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	}).URL
}

func headersConfig(engine, be, down string) string {
	return gatewayConfig(engine, fmt.Sprintf(`  - path: "/h"
    backend: %[1]q
    middlewares: &mw
      - name: jwt
        secret: "${JWT_SECRET}"
        issuer: %[3]q
        audience: [%[4]s]
      - name: headers
        trusted_proxies: ["127.0.0.1"]
        request:
          set: { X-Client: "{client_ip}", X-Req-Id: "{request_id}", X-User: "{jwt.sub}", X-From: "{scheme} {method} {host}{path}" }
          add: { X-Tag: "gw-{header.X-Tag}" }
          remove: [X-Debug]
        response:
          set: { X-Frame-Options: DENY }
          add: { X-Served-By: "rustygate {request_id}" }
          remove: [X-Powered-By]
  - path: "/down"
    backend: %[2]q
    middlewares: *mw
`, be, "http://"+down, polIssuer, polAudience))
}

// TestHeadersMiddleware: the request the backend gets and the response
// the client gets carry what the headers entry sets, adds and removes,
// with values from the request, on every engine, over HTTP/1.1 and h2c;
// the gateway's own 502 gets the response operations too.
func TestHeadersMiddleware(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	be := headersEcho(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, headersConfig(engine, be, closedAddr(t)))
		token := "Bearer " + polSignHS(t, []byte(polSecret), polClaims("alice"))
		for name, c := range map[string]*http.Client{"h1": newClient(t), "h2c": h2cClient(t)} {
			t.Run(name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", g.URL()+"/h/x?q=1", nil)
				req.Header.Set("Authorization", token)
				req.Header.Set("X-Forwarded-For", "203.0.113.7")
				req.Header.Set("X-Debug", "1")
				req.Header.Set("X-Tag", "client")
				req.Header.Set("X-User", "mallory")
				resp, body := do(t, c, req)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				var got http.Header
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("backend answer %q: %v", body, err)
				}
				id := resp.Header.Get("X-Request-Id")
				want := map[string][]string{
					"X-Client": {"203.0.113.7"},
					"X-Req-Id": {id},
					"X-User":   {"alice"},
					"X-From":   {"http GET " + g.addr + "/h/x"},
					"X-Tag":    {"client", "gw-client"},
					"X-Debug":  nil,
				}
				for k, v := range want {
					if !slices.Equal(got.Values(k), v) {
						t.Errorf("backend got %s %q, want %q", k, got.Values(k), v)
					}
				}
				checkResponseOps(t, resp.Header, id)
			})
		}
		resp, body := get(t, newClient(t), g.URL()+"/down")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("without a token: %d %s", resp.StatusCode, body)
		}
		req, _ := http.NewRequest("GET", g.URL()+"/down", nil)
		req.Header.Set("Authorization", token)
		resp, body = do(t, newClient(t), req)
		checkErrorResponse(t, resp, body, http.StatusBadGateway)
		checkResponseOps(t, resp.Header, resp.Header.Get("X-Request-Id"))
	})
}

func checkResponseOps(t *testing.T, h http.Header, id string) {
	t.Helper()
	if v := h.Values("X-Frame-Options"); !slices.Equal(v, []string{"DENY"}) {
		t.Errorf("X-Frame-Options %q, want DENY alone", v)
	}
	if v := h.Values("X-Powered-By"); v != nil {
		t.Errorf("X-Powered-By %q, want none", v)
	}
	if v := h.Get("X-Served-By"); id == "" || v != "rustygate "+id {
		t.Errorf("X-Served-By %q, want rustygate %s", v, id)
	}
}
