package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http2"
)

// The header-trust tests: what a client sends never passes for what the
// jwt policy vouches for. They run on every engine, over HTTP/1.1 (raw
// bytes, so that the spelling of each header line is exact) and h2c.

// polSignHSHeader signs c with HS256 and extra JOSE header parameters.
func polSignHSHeader(t *testing.T, key []byte, c gojwt.MapClaims, h map[string]any) string {
	t.Helper()
	tok := gojwt.NewWithClaims(gojwt.SigningMethodHS256, c)
	for k, v := range h {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startTrustGateway starts a gateway whose route /api verifies HS256
// tokens and copies the sub claim to X-User, in front of a recording
// backend.
func startTrustGateway(t *testing.T, engine string) (*gateway, *recorder) {
	t.Helper()
	t.Setenv("JWT_SECRET", polSecret)
	rec, be := polBackend(t)
	g := startGateway(t, engine, gatewayConfig(engine, fmt.Sprintf(`  - path: "/api"
    backend: %q
    middlewares:
      - name: jwt
        secret: "${JWT_SECRET}"
        issuer: %q
        audience: [%s]
        claims_to_headers: { sub: X-User }
`, be, polIssuer, polAudience)))
	return g, rec
}

// h2cClient returns an HTTP/2 client with prior knowledge over cleartext.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// rawH1 sends one HTTP/1.1 GET with the given header lines, exactly as
// written, and returns the status and body of the answer.
func rawH1(t *testing.T, addr, path string, lines []string) (int, string) {
	t.Helper()
	c := dialRaw(t, addr, 10*time.Second)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for _, l := range lines {
		req += l + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// h2Get sends a GET over h2c with the given header fields (names as
// given; the h2 client lowercases them).
func h2Get(t *testing.T, c *http.Client, url string, fields [][2]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	resp, body := do(t, c, req)
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2.0", resp.Proto)
	}
	return resp.StatusCode, string(body)
}

// xUserValues returns the values the backend got under any spelling of
// X-User, underscores included (CGI and WSGI read X_User as X-User).
func xUserValues(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-user" {
			out = append(out, vs...)
		}
	}
	slices.Sort(out)
	return out
}

// claimHeaderCase is one request of the claim-header tests: a token with
// or without sub, and the X-User lines a client adds.
type claimHeaderCase struct {
	name  string
	sub   string // "" for a token without sub
	spoof []string
}

// checkClaimHeaders sends each case over HTTP/1.1 and h2c and checks
// that the backend sees X-User only as the token's sub claim.
func checkClaimHeaders(t *testing.T, engine string, cases []claimHeaderCase) {
	g, rec := startTrustGateway(t, engine)
	h2 := h2cClient(t)
	for _, tc := range cases {
		claims := polClaims(tc.sub)
		if tc.sub == "" {
			delete(claims, "sub")
		}
		auth := "Bearer " + polSignHS(t, []byte(polSecret), claims)
		var want []string
		if tc.sub != "" {
			want = []string{tc.sub}
		}
		t.Run(tc.name+"/h1", func(t *testing.T) {
			lines := []string{"Authorization: " + auth}
			for _, s := range tc.spoof {
				lines = append(lines, s+": admin")
			}
			n := rec.count()
			if st, body := rawH1(t, g.addr, "/api/x", lines); st != 200 || rec.count() != n+1 {
				t.Fatalf("status %d %q, backend requests %d; want 200 from the backend", st, body, rec.count()-n)
			}
			if got := xUserValues(rec.last(t).Header); !slices.Equal(got, want) {
				t.Errorf("backend X-User values %q, want %q", got, want)
			}
		})
		t.Run(tc.name+"/h2", func(t *testing.T) {
			fields := [][2]string{{"Authorization", auth}}
			for _, s := range tc.spoof {
				fields = append(fields, [2]string{s, "admin"})
			}
			n := rec.count()
			if st, body := h2Get(t, h2, g.URL()+"/api/x", fields); st != 200 || rec.count() != n+1 {
				t.Fatalf("status %d %q, backend requests %d; want 200 from the backend", st, body, rec.count()-n)
			}
			if got := xUserValues(rec.last(t).Header); !slices.Equal(got, want) {
				t.Errorf("backend X-User values %q, want %q", got, want)
			}
		})
	}
}

// TestJWTClaimHeaderSpellings: a header that claims_to_headers sets is
// removed from the client's request in every spelling of its case and
// every line it was sent on, whether the token has the claim or not.
func TestJWTClaimHeaderSpellings(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkClaimHeaders(t, engine, []claimHeaderCase{
			{"claim absent", "", []string{"X-User", "x-user"}},
			{"claim absent, upper case", "", []string{"X-USER", "X-User", "x-uSeR"}},
			{"claim present", "alice", []string{"X-User", "x-user"}},
		})
	})
}

// TestJWTClaimHeaderUnderscore: X_User, which CGI and WSGI backends read
// as X-User, never reaches the backend beside (or instead of) the claim:
// headers whose names have underscores are dropped by the request parser.
func TestJWTClaimHeaderUnderscore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkClaimHeaders(t, engine, []claimHeaderCase{
			{"claim absent", "", []string{"X_User", "x_user", "X-User"}},
			{"claim present", "alice", []string{"X_User", "x_user"}},
		})
	})
}

// TestJWTTwoAuthorizationHeaders: a request with two Authorization
// headers (a valid token, then an alg-none token claiming sub=admin, or
// the other way round) is refused with 400 and never reaches the
// backend, over HTTP/1.1 and h2c.
func TestJWTTwoAuthorizationHeaders(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		g, rec := startTrustGateway(t, engine)
		h2 := h2cClient(t)
		valid := "Bearer " + polSignHS(t, []byte(polSecret), polClaims("alice"))
		none := "Bearer " + polSignNone(t, polClaims("admin"))
		for _, order := range []struct {
			name          string
			first, second string
		}{{"valid first", valid, none}, {"alg none first", none, valid}, {"the same token twice", valid, valid}} {
			t.Run(order.name+"/h1", func(t *testing.T) {
				n := rec.count()
				st, body := rawH1(t, g.addr, "/api/x", []string{"Authorization: " + order.first, "authorization: " + order.second})
				if st != 400 || rec.count() != n {
					t.Errorf("status %d %q, backend requests %d; want 400 and none", st, body, rec.count()-n)
				}
			})
			t.Run(order.name+"/h2", func(t *testing.T) {
				n := rec.count()
				st, body := h2Get(t, h2, g.URL()+"/api/x", [][2]string{{"Authorization", order.first}, {"Authorization", order.second}})
				if st != 400 || rec.count() != n {
					t.Errorf("status %d %q, backend requests %d; want 400 and none", st, body, rec.count()-n)
				}
			})
		}
		// One valid token on its own still passes.
		if st, body := rawH1(t, g.addr, "/api/x", []string{"Authorization: " + valid}); st != 200 {
			t.Errorf("one valid token: status %d %q, want 200", st, body)
		}
	})
}

// TestJWTCacheReload: verified tokens are cached by the built policy, so
// a reload that rotates the secret out refuses a token verified (and
// cached) before it, on every engine.
func TestJWTCacheReload(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		secretFile := filepath.Join(t.TempDir(), "jwt-secret")
		oldKey, newKey := []byte(polSecret), []byte(polSecret+"-rotated")
		if err := os.WriteFile(secretFile, oldKey, 0o600); err != nil {
			t.Fatal(err)
		}
		_, be := polBackend(t)
		g := startGateway(t, engine, gatewayConfig(engine, fmt.Sprintf(`  - path: "/api"
    backend: %q
    middlewares: [ { name: jwt, secret_file: %q, issuer: %q, audience: [%s] } ]
`, be, secretFile, polIssuer, polAudience)))
		c := newClient(t)
		status := func(key []byte) int {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, g.URL()+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+polSignHS(t, key, polClaims("alice")))
			resp, _ := do(t, c, req)
			return resp.StatusCode
		}
		for range 3 {
			if got := status(oldKey); got != 200 {
				t.Fatalf("before the reload: status %d, want 200", got)
			}
		}
		if err := os.WriteFile(secretFile, newKey, 0o600); err != nil {
			t.Fatal(err)
		}
		g.Signal(syscall.SIGHUP)
		waitLog(t, g, "Config reloaded")
		if got := status(oldKey); got != 401 {
			t.Errorf("a token of the rotated-out secret, cached before the reload: status %d, want 401", got)
		}
		if got := status(newKey); got != 200 {
			t.Errorf("a token of the new secret: status %d, want 200", got)
		}
	})
}
