package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// bodyCounter is a backend that reads each request's body in full and
// answers with its size; it records the paths it saw and the largest
// body it was sent, complete or not.
type bodyCounter struct {
	mu      sync.Mutex
	paths   []string
	largest int64
}

func newBodyCounter(t *testing.T) (*bodyCounter, string) {
	t.Helper()
	bc := &bodyCounter{}
	srv := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		bc.mu.Lock()
		bc.paths = append(bc.paths, r.URL.Path)
		bc.largest = max(bc.largest, n)
		bc.mu.Unlock()
		if err != nil {
			return
		}
		w.Header().Set("Server", "backend/1.0")
		fmt.Fprintf(w, "%d", n)
	})
	return bc, srv.URL
}

func limitsConfig(engine, be string) string {
	return gatewayConfig(engine, fmt.Sprintf(`  - path: "/up"
    backend: %q
    middlewares:
      - { name: limits, max_request_body: 1k, server_header: edge, via: true }
`, be))
}

// TestLimitsMiddleware: on every engine, a body within max_request_body
// goes through; a larger one gets 413, from its Content-Length before
// the backend sees anything, or once a chunked or HTTP/2 body of unknown
// length passes the limit; the responses carry the configured Server and
// a Via.
func TestLimitsMiddleware(t *testing.T) {
	bc, be := newBodyCounter(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, limitsConfig(engine, be))
		for name, c := range map[string]*http.Client{"h1": newClient(t), "h2c": h2cClient(t)} {
			t.Run(name, func(t *testing.T) {
				post := func(body io.Reader, length int64) (*http.Response, []byte) {
					req, _ := http.NewRequest("POST", g.URL()+"/up", body)
					req.ContentLength = length
					return do(t, c, req)
				}
				resp, body := post(strings.NewReader(strings.Repeat("a", 1024)), 1024)
				if resp.StatusCode != 200 || string(body) != "1024" {
					t.Fatalf("1024 bytes: %d %q", resp.StatusCode, body)
				}
				if s, v := resp.Header.Values("Server"), resp.Header.Values("Via"); !slices.Equal(s, []string{"edge"}) || !slices.Equal(v, []string{"1.1 rustygate"}) {
					t.Errorf("Server %q Via %q, want edge and 1.1 rustygate", s, v)
				}
				resp, body = post(strings.NewReader(strings.Repeat("a", 1025)), 1025)
				if resp.StatusCode != 413 {
					t.Errorf("1025 bytes declared: %d %q, want 413", resp.StatusCode, body)
				}
				// A body of unknown length: chunked on HTTP/1.1, DATA
				// frames without content-length on h2c.
				resp, body = post(io.MultiReader(strings.NewReader(strings.Repeat("b", 3000)), slowReader{}), -1)
				if resp.StatusCode != 413 {
					t.Errorf("streamed body over the limit: %d %q, want 413", resp.StatusCode, body)
				}
			})
		}
	})
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.largest > 1024 {
		t.Fatalf("the backend was sent a body of %d bytes, over the limit", bc.largest)
	}
}

// slowReader ends a body after a pause, so that the part before it is on
// its way before the body ends.
type slowReader struct{}

func (slowReader) Read([]byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return 0, io.EOF
}

// TestLimitsNoSmuggling: after a chunked body refused with 413, what
// follows it on the connection is never taken for a request.
func TestLimitsNoSmuggling(t *testing.T) {
	bc, be := newBodyCounter(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, limitsConfig(engine, be))
		chunk := strings.Repeat("c", 600)
		raw := "POST /up/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk) + fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk) +
			"0\r\n\r\nGET /up/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		conn := dialRaw(t, g.addr, 10*time.Second)
		io.WriteString(conn, raw)
		br := bufio.NewReader(conn)
		status, hdr, err := readHead(br)
		if err != nil || !strings.Contains(status, " 413 ") {
			t.Fatalf("first answer %q %v, want 413", status, err)
		}
		io.CopyN(io.Discard, br, contentLength(hdr))
		rest, closed, err := readAllRaw(conn)
		if !closed || len(rest) > 0 {
			t.Fatalf("after the 413: %q, closed %v (%v); want the connection closed and nothing more", rest, closed, err)
		}
	})
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if slices.Contains(bc.paths, "/up/smuggled") {
		t.Fatalf("the backend got the request that followed the refused body: %q", bc.paths)
	}
}

func contentLength(h map[string][]string) int64 {
	var n int64
	if v := h["Content-Length"]; len(v) == 1 {
		fmt.Sscan(v[0], &n)
	}
	return n
}
