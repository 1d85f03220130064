package l7

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
)

// peekPolicy reads a bounded prefix of the request body, refuses a body
// whose prefix holds EVIL, and tells the backend what it saw.
type peekPolicy struct{ limit int }

func (p peekPolicy) Handle(r middleware.Request) *middleware.Reply {
	ex := r.(middleware.Exchange)
	prefix, complete, err := ex.RequestBodyPrefix(p.limit)
	if err != nil {
		return &middleware.Reply{Status: 400, Error: "unreadable body"}
	}
	if bytes.Contains(prefix, []byte("EVIL")) {
		return &middleware.Reply{Status: 403, Error: "refused", LogReason: "peek EVIL"}
	}
	ex.SetHeader("X-Prefix", strconv.Itoa(len(prefix))+" "+strconv.FormatBool(complete))
	return nil
}

// hashBackend answers with the body's length and SHA-256 and the
// X-Prefix header it got.
func hashBackend(t *testing.T) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x %s", n, h.Sum(nil), r.Header.Get("X-Prefix"))
	}).URL
}

func withPeek(gw *testGateway, limit int) {
	for _, rt := range gw.srv.Snapshot().Routes {
		rt.chain = []middleware.Instance{{Handler: peekPolicy{limit}, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}}
	}
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// TestRequestBodyPrefix: a middleware reads a bounded prefix of the body,
// which still reaches the backend whole, with a length or chunked, on
// every engine; a body that fits is reported complete.
func TestRequestBodyPrefix(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	be := hashBackend(t)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be))
			withPeek(gw, 1000)
			c := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(c.CloseIdleConnections)
			for _, tc := range []struct {
				name    string
				body    []byte
				chunked bool
				want    string
			}{
				{"length", big, false, "false"},
				{"chunked", big, true, "false"},
				{"small", []byte("a=1&b=2"), false, "7 true"},
				{"small chunked", []byte("a=1&b=2"), true, "7 true"},
			} {
				var body io.Reader = bytes.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // unknown length: chunked
				}
				req, _ := http.NewRequest("POST", "http://"+gw.addr+"/u", body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				f := strings.Fields(string(got))
				if len(f) != 4 || f[0] != strconv.Itoa(len(tc.body)) || f[1] != sum(tc.body) || !strings.Contains(f[2]+" "+f[3], tc.want) {
					t.Fatalf("%s: backend saw %q, want %d bytes %s and prefix %q", tc.name, got, len(tc.body), sum(tc.body)[:8], tc.want)
				}
				if n, _ := strconv.Atoi(f[2]); len(tc.body) > 1000 && (n < 1000 || n > 1000+64<<10) {
					t.Fatalf("%s: prefix of %d bytes held for a limit of 1000", tc.name, n)
				}
			}
		})
	}
}

// TestRequestBodyPrefixRefusal: a refusal after reading the prefix is the
// proxy's JSON error with the request id, and the access line's error is
// the middleware's reason.
func TestRequestBodyPrefixRefusal(t *testing.T) {
	be := hashBackend(t)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be))
			withPeek(gw, 1000)
			body := "xEVILx" + strings.Repeat("z", 200000)
			out, _ := rawExchange(t, gw.addr, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			if statusOf(out) != 403 || !strings.Contains(out, `{"error":"refused","status":403,"request_id":"`) {
				t.Fatalf("refusal:\n%.400s", out)
			}
		})
	}
}

// TestRequestBodyPrefixExpectContinue: a client that waits for 100
// Continue gets it when a middleware reads the body, before the backend
// is involved.
func TestRequestBodyPrefixExpectContinue(t *testing.T) {
	be := hashBackend(t)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be))
			withPeek(gw, 10)
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			body := strings.Repeat("q", 100000)
			fmt.Fprintf(c, "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
				t.Fatalf("before the body: %q %v", line, err)
			}
			io.WriteString(c, body)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(l, "HTTP/1.1 200") {
					break
				}
			}
		})
	}
}

// TestRequestBodyPrefixReplay: a body whose prefix a middleware read is
// still replayed whole on a retry.
func TestRequestBodyPrefixReplay(t *testing.T) {
	var calls atomic.Int32
	h := func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %s", len(b), sum(b))
	}
	a, b := backend(t, h), backend(t, h)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			calls.Store(0)
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backends: [ { url: %q }, { url: %q } ], retries: { attempts: 1, on: [\"503\"] } }\n", a.URL, b.URL))
			withPeek(gw, 100)
			body := bytes.Repeat([]byte("r"), 40000)
			req, _ := http.NewRequest("PUT", "http://"+gw.addr+"/u", bytes.NewReader(body))
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("40000 %s", sum(body)); resp.StatusCode != 200 || string(got) != want || calls.Load() != 2 {
				t.Fatalf("after a retry: %d %q (%d calls), want %q", resp.StatusCode, got, calls.Load(), want)
			}
		})
	}
}
