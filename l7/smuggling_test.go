package l7

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// smugglingVectors are requests that a proxy must refuse outright: each
// is answered with an error status and the connection closed, and none
// reaches the backend.
var smugglingVectors = []struct {
	name   string
	raw    string
	status int
}{
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"duplicate CL same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
	{"duplicate CL differ", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
	{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", 400},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
	{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
	{"TE duplicate", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
	{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
	{"bare LF headers", "GET / HTTP/1.1\nHost: a\n\n", 400},
	{"bare LF in one line", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400},
	{"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
	{"invalid name byte", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nXA\r\n\r\n", 400},
	{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bad version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
	{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
	{"garbage line", "\x16\x03\x01\x00\xa5\x01\x00\x00\r\n\r\n", 400},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"target with space", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"dot-dot segment", "GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"encoded dot-dot", "GET /a/%2e%2E/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form userinfo", "GET http://user@secure.example/ HTTP/1.1\r\nHost: secure.example\r\n\r\n", 400},
	{"absolute-form userinfo no path", "GET http://user:pw@a HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form bad authority", "GET http://a\"<>{|}^b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form empty host", "GET http://:80/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute-form bad port", "GET http://a:8o/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400},
	{"Host unclosed bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
	{"Host bracketed name", "GET / HTTP/1.1\r\nHost: [a.b]\r\n\r\n", 400},
	{"two Authorization headers", "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nauthorization: Bearer y\r\n\r\n", 400},
}

func TestSmugglingVectors(t *testing.T) {
	var reached atomic.Int64
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("backend"))
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			for _, v := range smugglingVectors {
				t.Run(v.name, func(t *testing.T) {
					before := reached.Load()
					out, closed := rawExchange(t, gw.addr, v.raw)
					got := statusOf(out)
					want := v.status
					if engine == "standard" && got >= 400 && got < 600 && got != want {
						// net/http picks its own 4xx/5xx for a few of these.
						want = got
					}
					if got != want {
						t.Errorf("status %d, want %d\n%q", got, v.status, out)
					}
					if !closed {
						t.Errorf("connection left open")
					}
					if reached.Load() != before {
						t.Errorf("request reached the backend")
					}
				})
			}
			// The gateway still serves after all of that.
			out, _ := rawExchange(t, gw.addr, "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 200 || !strings.HasSuffix(out, "backend") {
				t.Fatalf("after vectors: %q", out)
			}
		})
	}
}

// TestValidRequestsPass guards against the vectors above being refused
// for the wrong reason.
func TestValidRequestsPass(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(b))
	})
	valid := []struct{ name, raw, want string }{
		{"CL body", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", "POST /x 3"},
		{"chunked body", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n", "POST /x 5"},
		{"chunked case", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n1\r\na\r\n0\r\n\r\n", "POST /x 1"},
		{"HTTP/1.0 no host", "GET /x?q=1 HTTP/1.0\r\n\r\n", "GET /x?q=1 0"},
		{"absolute form", "GET http://a/x?y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /x?y 0"},
		{"value with tab and obs-text", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\tc\xe9\r\nConnection: close\r\n\r\n", "GET /x 0"},
		{"dots inside names", "GET /a/.well-known/..x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /a/.well-known/..x 0"},
	}
	for _, engine := range engines {
		gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
		for _, v := range valid {
			t.Run(engine+"/"+v.name, func(t *testing.T) {
				out, _ := rawExchange(t, gw.addr, v.raw)
				if statusOf(out) != 200 || !strings.HasSuffix(out, v.want) {
					t.Errorf("got %q, want body %q", out, v.want)
				}
			})
		}
	}
}

// TestMalformedChunkedBody covers framing errors inside a body: the
// exchange fails and the connection closes, never a hang or panic.
func TestMalformedChunkedBody(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		w.Write([]byte("ok"))
	})
	bodies := []string{
		"zz\r\nabc\r\n0\r\n\r\n",
		"3\nabc\r\n0\r\n\r\n",
		"3\r\nabcX\r\n0\r\n\r\n",
		"fffffffffffffffffff\r\n",
		"3\r\nab",
	}
	for _, engine := range engines {
		gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
		for i, b := range bodies {
			t.Run(fmt.Sprintf("%s/%d", engine, i), func(t *testing.T) {
				out, closed := rawExchangeHalfClose(t, gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+b, i == len(bodies)-1)
				if st := statusOf(out); st == 200 {
					t.Errorf("malformed chunked body accepted: %q", out)
				}
				if !closed {
					t.Errorf("connection left open")
				}
			})
		}
	}
}
