package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
