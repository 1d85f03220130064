package l7

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// headerEcho is a backend that records the request headers it received.
type headerEcho struct {
	mu   sync.Mutex
	last http.Header
}

func (h *headerEcho) start(t *testing.T) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.last = r.Header.Clone()
		h.mu.Unlock()
		io.WriteString(w, "ok")
	}).URL
}

func (h *headerEcho) header() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// TestUnderscoreHeaders: a header whose name contains "_" is dropped by
// default, refused with "reject" and forwarded with "allow", over
// HTTP/1.1 on every engine and over HTTP/2.
func TestUnderscoreHeaders(t *testing.T) {
	be := &headerEcho{}
	routes := fmt.Sprintf("  - { path: /, backend: %q }\n", be.start(t))
	for _, tc := range []struct {
		server    string
		status    int
		forwarded bool
	}{
		{"", 200, false},
		{"headers_with_underscores: drop", 200, false},
		{"headers_with_underscores: reject", 400, false},
		{"headers_with_underscores: allow", 200, true},
	} {
		check := func(t *testing.T, status int) {
			t.Helper()
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if status != 200 {
				return
			}
			h := be.header()
			if got := h.Get("X_User") != ""; got != tc.forwarded {
				t.Errorf("X_User forwarded %v, want %v (headers %v)", got, tc.forwarded, h)
			}
			if h.Get("X-User") != "alice" {
				t.Errorf("X-User %q, want alice", h.Get("X-User"))
			}
		}
		for _, engine := range engines {
			t.Run(engine+"/"+tc.server, func(t *testing.T) {
				gw := startGatewayServer(t, engine, tc.server, routes, nil)
				out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nX_User: admin\r\nX-User: alice\r\nConnection: close\r\n\r\n")
				check(t, statusOf(out))
				if engine == "fast-goroutines" {
					return
				}
				req, _ := http.NewRequest("GET", "http://"+gw.addr+"/x", nil)
				req.Header["X_User"] = []string{"admin"}
				req.Header.Set("X-User", "alice")
				resp, err := h2cClient(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Fatalf("proto %s", resp.Proto)
				}
				check(t, resp.StatusCode)
			})
		}
	}
}

// TestUnderscoreHeadersHidden: a dropped header is gone from the request
// before the middlewares run.
func TestUnderscoreHeadersHidden(t *testing.T) {
	var r request
	if _, err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nX_User: admin\r\nX-Real: 1\r\nA_B: 2\r\n\r\n"), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.applyRules(&requestRules{path: optDefault}); err != nil {
		t.Fatal(err)
	}
	x := &exchange{req: &r}
	if x.Header("x_user") != nil || x.Header("a_b") != nil || len(r.fields) != 2 {
		t.Fatalf("fields after drop: %d", len(r.fields))
	}
	if string(x.Header("x-real")) != "1" || string(r.host) != "a" {
		t.Fatalf("other fields lost: %d left", len(r.fields))
	}
}

// TestDuplicateAuthorizationH2: two Authorization fields are refused on
// HTTP/2 as on HTTP/1.1 (see smugglingVectors), before any backend.
func TestDuplicateAuthorizationH2(t *testing.T) {
	be := &headerEcho{}
	routes := fmt.Sprintf("  - { path: /, backend: %q }\n", be.start(t))
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, routes)
			req, _ := http.NewRequest("GET", "http://"+gw.addr+"/x", nil)
			req.Header["Authorization"] = []string{"Bearer good", "Bearer none"}
			resp, err := h2cClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(body), "Authorization") {
				t.Fatalf("status %d %q, want 400", resp.StatusCode, body)
			}
			if be.header() != nil {
				t.Fatalf("the request reached the backend: %v", be.header())
			}
		})
	}
}
