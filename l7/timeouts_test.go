package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testnet"
)

// withServer is the engine argument of startGateway for engine with extra
// server settings.
func withServer(engine, settings string) string {
	return strings.TrimPrefix(engineYAML(engine), "engine: ") + ", " + settings
}

// dripHead writes a request head to c one byte every interval until the
// connection fails or stop is closed.
func dripHead(c net.Conn, interval time.Duration, stop <-chan struct{}) {
	head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 64) + "\r\n\r\n"
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < len(head); i++ {
		if _, err := c.Write([]byte{head[i]}); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// waitCut reads from c until the gateway answers or closes, and returns
// what it read.
func waitCut(t *testing.T, c net.Conn, within time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %q)", within, b)
	}
	return string(b)
}

// TestHeadTimeoutDrip: a head dripped one byte every 2 s against a 4 s
// read_header_timeout is cut (408 or close) about 4 s after its first
// byte, on a new connection and on a keep-alive one (there the idle time
// before the head does not count), on every engine; a head that is slow
// but complete within the timeout is served.
func TestHeadTimeoutDrip(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	routes := fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			gw := startGateway(t, withServer(engine, "read_header_timeout: 4s"), routes)
			t.Run("first", func(t *testing.T) {
				t.Parallel()
				c := dial(t, gw.addr)
				stop := make(chan struct{})
				defer close(stop)
				start := time.Now()
				go dripHead(c, 2*time.Second, stop)
				got := waitCut(t, c, 8*time.Second)
				checkCut(t, got, time.Since(start))
			})
			t.Run("keepalive", func(t *testing.T) {
				t.Parallel()
				c := dial(t, gw.addr)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				// Idle longer than the head timeout's remainder would
				// allow if it counted from the previous response.
				time.Sleep(2500 * time.Millisecond)
				stop := make(chan struct{})
				defer close(stop)
				start := time.Now()
				go dripHead(c, 2*time.Second, stop)
				got := waitCut(t, c, 8*time.Second)
				checkCut(t, got, time.Since(start))
			})
			t.Run("slow-complete", func(t *testing.T) {
				t.Parallel()
				c := dial(t, gw.addr)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for _, part := range []string{"GET / HT", "TP/1.1\r\nHo", "st: x\r\nConnection: close\r\n", "\r\n"} {
					io.WriteString(c, part)
					time.Sleep(900 * time.Millisecond)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("head complete in 2.7s of 4s: status %d, want 200", resp.StatusCode)
				}
			})
		})
	}
}

func checkCut(t *testing.T, got string, d time.Duration) {
	t.Helper()
	t.Logf("dripped head cut after %v", d.Round(time.Millisecond))
	if d < 3500*time.Millisecond || d > 6*time.Second {
		t.Errorf("dripped head cut after %v, want about 4s (before 6s)", d)
	}
	if got != "" && statusOf(got) != 408 {
		t.Errorf("dripped head: answer %q, want 408 or a close", got)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hungBackend is a TCP listener that accepts connections and never
// answers. It returns its URL and the number of connections accepted.
func hungBackend(t *testing.T) (string, *atomic.Int64) {
	addr, accepted := testnet.HungListener(t)
	return "http://" + addr, accepted
}

// timedGet sends a GET on a new connection and returns the status and
// how long the answer took.
func timedGet(t *testing.T, addr, path string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	raw, _ := rawExchangeWithin(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 20*time.Second)
	return statusOf(raw), time.Since(start)
}

// rawExchangeWithin is rawExchange with a longer deadline.
func rawExchangeWithin(t *testing.T, addr, raw string, within time.Duration) (string, error) {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(within))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestResponseHeaderTimeoutHungBackends: a backend that accepts and never
// answers gets 504 after response_header (2s), not after its retries: a
// timeout is retried only when `retries.on` lists it. When it does,
// timeouts.total still bounds the whole: the retry's wait is cut to what
// remains, and no retry starts after it.
func TestResponseHeaderTimeoutHungBackends(t *testing.T) {
	h1, n1 := hungBackend(t)
	h2, n2 := hungBackend(t)
	h3, n3 := hungBackend(t)
	routes := fmt.Sprintf(`  - { path: "/plain", backends: [ { url: %q }, { url: %q } ], timeouts: { response_header: 2s } }
  - path: "/retried"
    backends: [ { url: %q } ]
    timeouts: { response_header: 2s, total: 3s }
    retries: { on: [timeout], attempts: 5, budget: 1 }
`, h1, h2, h3)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, routes)
			before := n1.Load() + n2.Load()
			status, d := timedGet(t, gw.addr, "/plain")
			t.Logf("hung backends: %d after %v", status, d.Round(time.Millisecond))
			if status != 504 || d < 1900*time.Millisecond || d > 2300*time.Millisecond {
				t.Errorf("hung backends, response_header 2s: %d after %v, want 504 after 2s (within 200ms)", status, d)
			}
			if got := n1.Load() + n2.Load() - before; got != 1 {
				t.Errorf("hung backends received %d connections, want 1 (no retry on timeout by default)", got)
			}

			before = n3.Load()
			status, d = timedGet(t, gw.addr, "/retried")
			t.Logf("retried on timeout, total 3s: %d after %v", status, d.Round(time.Millisecond))
			if status != 504 || d < 2900*time.Millisecond || d > 3300*time.Millisecond {
				t.Errorf("retried on timeout, total 3s: %d after %v, want 504 after 3s (within 200ms)", status, d)
			}
			if got := n3.Load() - before; got != 2 {
				t.Errorf("hung backend received %d attempts, want 2 (2s, then the 1s left of total)", got)
			}
		})
	}
}

// TestReadTimeoutAccuracy: a backend that stops in the middle of a body
// is cut timeouts.read (3s) after the last data, within 200 ms, on every
// engine; data that keeps coming more often than that is not cut.
func TestReadTimeoutAccuracy(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for range 3 {
			// Steady data: each wait stays under the bound.
			time.Sleep(time.Second)
			io.WriteString(w, "0123456789")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done() // then nothing more
	})
	routes := fmt.Sprintf("  - { path: \"/\", backend: %q, timeouts: { read: 3s, response_header: 1s } }\n", be.URL)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			gw := startGateway(t, engine, routes)
			c := dial(t, gw.addr)
			c.SetDeadline(time.Now().Add(15 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var last time.Time
			buf := make([]byte, 100)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					got += n
					last = time.Now()
				}
				if err != nil {
					break
				}
			}
			d := time.Since(last)
			t.Logf("stalled body cut %v after the last data", d.Round(time.Millisecond))
			if got != 30 {
				t.Errorf("body: %d bytes before the cut, want 30", got)
			}
			if d < 2900*time.Millisecond || d > 3300*time.Millisecond {
				t.Errorf("stalled body cut %v after the last data, want 3s (within 200ms)", d)
			}
		})
	}
}
