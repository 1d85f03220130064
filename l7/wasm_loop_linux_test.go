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

// TestWASMConnectionsLeaveTheLoop: a connection's first request to a
// route with a WASM guest moves it off the event loop for good (once, not
// per request: the guest's calls never run on the loop); a connection of a
// plain route on the same loop stays on it.
func TestWASMConnectionsLeaveTheLoop(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	// The plain route has a backend of its own: sharing one pool, the
	// plain route's next request could come before the guest route's
	// connection went back to the pool (the client has its answer
	// first) and dial a second one.
	bePlain := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := wasmGateway(t, "event_loops: 1", fmt.Sprintf(`  - path: "/w"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
  - { path: "/plain", backend: %q }
`, be.URL, wasmGuest(t, "add_header"), bePlain.URL), 5*time.Second)
	st := &gw.srv.loopStats
	plain := dialKeepAlive(t, gw.addr)
	for range 5 {
		if code := plain.get(t, "/plain").StatusCode; code != 200 {
			t.Fatalf("plain route: %d", code)
		}
	}
	// (The first request detached once to dial the backend.)
	d0, r0 := st.detaches.Load(), st.rejoins.Load()
	k := dialKeepAlive(t, gw.addr)
	const n = 40 // past the guest's probation (32 calls)
	for i := range n {
		resp := k.get(t, "/w")
		if resp.StatusCode != 200 || resp.Header.Get("X-RustyGate-Plugin") != "executed" {
			t.Fatalf("request %d: %d %v, want 200 with the plugin's header", i, resp.StatusCode, resp.Header)
		}
		if d := st.detaches.Load() - d0; d != 1 {
			t.Fatalf("request %d: %d detaches, want 1", i, d)
		}
	}
	for range 5 {
		if code := plain.get(t, "/plain").StatusCode; code != 200 {
			t.Fatalf("plain route: %d", code)
		}
	}
	if d, r := st.detaches.Load()-d0, st.rejoins.Load()-r0; d != 1 || r != 0 {
		t.Errorf("detaches %d, rejoins %d: want 1 and 0", d, r)
	}
}

// TestWASMLoopingGuestLeavesTheLoopFree: a guest that loops, after it was
// trusted, runs off the event loop: another route on the same (single)
// loop answers while it loops, each time.
func TestWASMLoopingGuestLeavesTheLoopFree(t *testing.T) {
	const deadline = time.Second
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := wasmGateway(t, "event_loops: 1", fmt.Sprintf(`  - path: "/w"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
  - { path: "/plain", backend: %q }
`, be.URL, wasmGuest(t, "wasmspin"), be.URL), deadline)
	guest, plain := dialKeepAlive(t, gw.addr), dialKeepAlive(t, gw.addr)
	for range 40 { // past the guest's probation
		if code := guest.get(t, "/w/ok").StatusCode; code != 200 {
			t.Fatalf("guest route: %d", code)
		}
	}
	for round := range 2 {
		guest.send(t, "/w/spin")
		start := time.Now()
		var slowest time.Duration
		for time.Since(start) < deadline/2 {
			t0 := time.Now()
			if code := plain.get(t, "/plain").StatusCode; code != 200 {
				t.Fatalf("plain route: %d", code)
			}
			slowest = max(slowest, time.Since(t0))
		}
		if slowest > deadline/2 {
			t.Errorf("round %d: the plain route took %v beside a looping guest, want it unaffected", round, slowest)
		}
		if code := guest.read(t).StatusCode; code != 504 {
			t.Errorf("round %d: looping call %d, want 504", round, code)
		}
	}
}
