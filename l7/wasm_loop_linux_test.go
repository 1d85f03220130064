package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// keepAliveConn is one client connection sending GETs in turn.
type keepAliveConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t testing.TB, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{c: c, br: bufio.NewReader(c)}
}

func (k *keepAliveConn) send(t testing.TB, path string) {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
}

func (k *keepAliveConn) read(t testing.TB) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (k *keepAliveConn) get(t testing.TB, path string) *http.Response {
	t.Helper()
	k.send(t, path)
	return k.read(t)
}

// untilOnLoop sends GETs for path on k until n requests in a row have
// not left the event loop (the guest is trusted), checking each answer.
func untilOnLoop(t *testing.T, gw *testGateway, k *keepAliveConn, path string, n int, check func(*http.Response)) {
	t.Helper()
	streak := 0
	for i := 0; streak < n; i++ {
		if i == 2000 {
			t.Fatalf("after %d requests, still no %d in a row on the event loop (detaches %d)", i, n, gw.srv.loopStats.detaches.Load())
		}
		before := gw.srv.loopStats.detaches.Load()
		check(k.get(t, path))
		if gw.srv.loopStats.detaches.Load() == before {
			streak++
		} else {
			streak = 0
		}
	}
}

// TestWASMRequestsStayOnTheLoop: a WASM guest on probation runs on the
// plugin host's workers, so each request of its route leaves the event
// loop (and rejoins it after the exchange); once the guest is trusted, its calls
// run on the loop and the requests stay there.
func TestWASMRequestsStayOnTheLoop(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := wasmGateway(t, "event_loops: 1", fmt.Sprintf(`  - path: "/"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
`, be.URL, wasmGuest(t, "add_header")), 5*time.Second)
	st := &gw.srv.loopStats
	k := dialKeepAlive(t, gw.addr)
	check := func(resp *http.Response) {
		t.Helper()
		if resp.StatusCode != 200 || resp.Header.Get("X-RustyGate-Plugin") != "executed" {
			t.Fatalf("answer %d %v, want 200 with the plugin's header", resp.StatusCode, resp.Header)
		}
	}
	for i := range 4 {
		check(k.get(t, "/"))
		if d := st.detaches.Load(); d != int64(i+1) {
			t.Fatalf("request %d on probation: %d detaches, want %d", i+1, d, i+1)
		}
	}
	// Each connection goes back to the loop once its exchange is over.
	waitFor(t, 5*time.Second, "the connection back on the loop", func() bool { return st.rejoins.Load() == 4 })
	untilOnLoop(t, gw, k, "/", 20, check)
}

// TestWASMLoopingGuestHoldsTheLoopOnce: a trusted guest that starts
// looping on the event loop holds it, and another route's requests, until
// its call deadline, once; from then on its calls run off the loop, and
// the other route answers while they loop.
func TestWASMLoopingGuestHoldsTheLoopOnce(t *testing.T) {
	const deadline = time.Second
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := wasmGateway(t, "event_loops: 1", fmt.Sprintf(`  - path: "/w"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
  - { path: "/plain", backend: %q }
`, be.URL, wasmGuest(t, "wasmspin"), be.URL), deadline)
	guest, plain := dialKeepAlive(t, gw.addr), dialKeepAlive(t, gw.addr)
	untilOnLoop(t, gw, guest, "/w/ok", 20, func(resp *http.Response) {
		t.Helper()
		if resp.StatusCode != 200 {
			t.Fatalf("guest route: %d", resp.StatusCode)
		}
	})

	// The first looping call runs on the loop: the other route waits
	// until the deadline stops the guest, and no longer.
	guest.send(t, "/w/spin")
	start := time.Now()
	if code := plain.get(t, "/plain").StatusCode; code != 200 {
		t.Fatalf("plain route: %d", code)
	}
	if d := time.Since(start); d > 3*deadline {
		t.Errorf("plain route held %v by a looping guest, want at most its deadline %v (and slack)", d, deadline)
	}
	if code := guest.read(t).StatusCode; code != 504 {
		t.Errorf("looping call: %d, want 504", code)
	}

	// The next one runs off the loop.
	detaches := gw.srv.loopStats.detaches.Load()
	guest.send(t, "/w/spin")
	start = time.Now()
	var slowest time.Duration
	for time.Since(start) < deadline/2 {
		t0 := time.Now()
		if code := plain.get(t, "/plain").StatusCode; code != 200 {
			t.Fatalf("plain route: %d", code)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if slowest > deadline/2 {
		t.Errorf("plain route took %v beside a guest looping a second time, want it off the loop", slowest)
	}
	if code := guest.read(t).StatusCode; code != 504 {
		t.Errorf("second looping call: %d, want 504", code)
	}
	if gw.srv.loopStats.detaches.Load() == detaches {
		t.Error("the second looping call did not leave the loop")
	}
}
