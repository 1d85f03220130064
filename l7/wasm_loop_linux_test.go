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

// TestWASMTrustedGuestRunsOnTheLoop: while a guest is on probation, each
// exchange of its route leaves the event loop for the call (which runs on
// a worker thread) and the connection comes back for its next request;
// once the guest is trusted, its calls run on the loop, and the
// connection no longer leaves it. A plain route's connection on the same
// loop never leaves it.
func TestWASMTrustedGuestRunsOnTheLoop(t *testing.T) {
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
	const n = 60 // past the guest's probation (32 calls)
	detached := make([]int64, n)
	for i := range n {
		resp := k.get(t, "/w")
		if resp.StatusCode != 200 || resp.Header.Get("X-RustyGate-Plugin") != "executed" {
			t.Fatalf("request %d: %d %v, want 200 with the plugin's header", i, resp.StatusCode, resp.Header)
		}
		detached[i] = st.detaches.Load() - d0
	}
	if detached[0] < 1 {
		t.Errorf("the first request to the new guest did not leave the loop")
	}
	if d := detached[n-1] - detached[n-21]; d != 0 {
		t.Errorf("the last 20 requests, to a trusted guest, left the loop %d times, want 0 (detaches after each request: %v)", d, detached)
	}
	for range 5 {
		if code := plain.get(t, "/plain").StatusCode; code != 200 {
			t.Fatalf("plain route: %d", code)
		}
	}
	if d, r := st.detaches.Load()-d0, st.rejoins.Load()-r0; d != detached[n-1] || r != d {
		t.Errorf("detaches %d, rejoins %d: want %d of each (the guest's connection back each time, the plain one never away)", d, r, detached[n-1])
	}
}

// TestWASMLoopingGuestLeavesTheLoopFree: a guest that starts to loop after
// it was trusted (its calls run on the event loop) holds the loop for at
// most the demotion delay (5 ms), then goes on off the loop; its later
// calls run on the workers: another route on the same (single) loop
// answers while it loops, each time.
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
