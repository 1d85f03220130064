package e2e_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMalformedRequests: framing and syntax errors get a 4xx/5xx and the
// connection is closed; the gateway keeps serving.
func TestMalformedRequests(t *testing.T) {
	cases := []struct {
		name string
		req  string
		// want lists acceptable status codes (as status-line prefixes).
		want []string
	}{
		{"CL and TE", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"400"}},
		{"CL and TE with body", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400"}},
		{"duplicate CL identical", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", []string{"400"}},
		{"duplicate CL differing", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", []string{"400"}},
		{"CL list", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", []string{"400"}},
		{"CL negative", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", []string{"400"}},
		{"CL plus sign", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", []string{"400"}},
		{"CL not a number", "POST /api/test HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", []string{"400"}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", []string{"400"}},
		{"bare LF", "GET / HTTP/1.1\nHost: a\nX: b\n\n", []string{"400"}},
		{"bare LF after headers", "GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n", []string{"400"}},
		{"Host missing", "GET / HTTP/1.1\r\nX: b\r\n\r\n", []string{"400"}},
		{"Host duplicate", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []string{"400"}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", []string{"400"}},
		{"space before colon other", "GET / HTTP/1.1\r\nHost: a\r\nX-Y : b\r\n\r\n", []string{"400"}},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", []string{"400"}},
		{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", []string{"400"}},
		{"TE gzip, chunked", "POST /api/test HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []string{"400", "501"}},
		{"TE identity", "POST /api/test HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", []string{"400", "501"}},
		{"TE on HTTP/1.0", "POST /api/test HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400"}},
		{"request line garbage", "\x16\x03\x01garbage\x00\xff\r\n\r\n", []string{"400"}},
		{"request line two tokens", "GET /\r\nHost: a\r\n\r\n", []string{"400"}},
		{"request line extra space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", []string{"400"}},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", []string{"400"}},
		{"bad version", "GET / HTTP/9.9\r\nHost: a\r\n\r\n", []string{"400", "505"}},
		{"header without colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", []string{"400"}},
		{"bad header name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", []string{"400"}},
		{"bad chunk size", "POST /api/test HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", []string{"400"}},
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "backend ok")
		})
		// A short response_header bounds how long a request the gateway
		// wrongly forwards can hold a backend.
		routes := simpleRoutes(be.URL) + "    timeouts: { response_header: 1s }\n"
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := dialRaw(t, g.addr, 2*time.Second)
				start := time.Now()
				if _, err := io.WriteString(c, tc.req); err != nil {
					t.Fatal(err)
				}
				data, closed, err := readAllRaw(c)
				elapsed := time.Since(start)
				status, _, _ := strings.Cut(string(data), "\r\n")
				ok := false
				for _, w := range tc.want {
					if strings.HasPrefix(status, "HTTP/1.1 "+w+" ") || status == "HTTP/1.1 "+w {
						ok = true
					}
				}
				if !ok {
					t.Fatalf("request %q: status line %q, want %v; response %q (connection closed: %v)", tc.req, status, tc.want, truncate(data, 300), closed)
				}
				if !closed {
					t.Errorf("request %q: connection not closed after the %s (%v)", tc.req, status, err)
				}
				if elapsed > 500*time.Millisecond {
					t.Errorf("request %q: the %s came only after %v, want at once", tc.req, status, elapsed.Round(time.Millisecond))
				}
				if strings.Count(string(data), "HTTP/1.") > 1 {
					t.Errorf("request %q: more than one response: %q", tc.req, truncate(data, 300))
				}
			})
		}
		t.Run("still serving", func(t *testing.T) {
			resp, body := get(t, newClient(t), g.URL()+"/api/test")
			if resp.StatusCode != 200 || string(body) != "backend ok" {
				t.Errorf("status %d, body %q", resp.StatusCode, body)
			}
		})
	})
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// TestMalformedBackendResponse: a response the gateway cannot parse
// becomes a 502.
func TestMalformedBackendResponse(t *testing.T) {
	responses := map[string]string{
		"CL not a number": "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"CL differing":    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"garbage":         "SSH-2.0-OpenSSH_9.6\r\n\r\n",
		"space in name":   "HTTP/1.1 200 OK\r\nX-Bad : y\r\nContent-Length: 0\r\n\r\n",
		"NUL in value":    "HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"no status code":  "HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
		"closed early":    "HTTP/1.1 200 OK\r\nContent-",
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		var routes string
		paths := map[string]string{}
		i := 0
		for name, resp := range responses {
			be := newRawBackend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, _, err := readHead(br); err != nil {
					return
				}
				io.WriteString(c, resp)
			})
			p := "/bad" + string(rune('a'+i))
			i++
			paths[name] = p
			routes += "  - path: \"" + p + "\"\n    backend: \"" + be.URL() + "\"\n    timeouts: { response_header: 2s }\n"
		}
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)
		for name := range responses {
			t.Run(name, func(t *testing.T) {
				resp, body := get(t, c, g.URL()+paths[name])
				checkErrorResponse(t, resp, body, 502)
			})
		}
	})
}
