//go:build linux

package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// loopGateway starts the fast engine on n event loops in front of be.
func loopGateway(t *testing.T, n int, be string) *testGateway {
	t.Helper()
	return startGateway(t, fmt.Sprintf(`fast, event_loops: "%d"`, n), fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be))
}

// TestEventLoopConnectionLife: one keep-alive connection goes through
// every way on and off its loop: a first request that dials the backend
// (detach), plain requests (on the loop), a streamed request body
// (detach), pipelined requests, a large response to a slow reader (write
// waits), then rejoins each time.
func TestEventLoopConnectionLife(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16) // 4 MiB
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sum":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big":
			w.Write(big)
		default:
			io.WriteString(w, "hello "+r.URL.Path)
		}
	})
	gw := loopGateway(t, 2, be.URL)

	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip := func(raw string) *http.Response {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	body := func(resp *http.Response) string {
		t.Helper()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	for i := range 3 {
		resp := roundTrip(fmt.Sprintf("GET /a%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		if got := body(resp); got != fmt.Sprintf("hello /a%d", i) {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := gw.srv.loopStats.conns.Load(); n != 1 {
		t.Fatalf("connections on loops: %d, want 1", n)
	}
	if n := gw.srv.loopStats.detaches.Load(); n != 1 {
		t.Errorf("detaches after the first requests: %d, want 1 (the first dial)", n)
	}

	// A 1 MiB body streamed in pieces.
	payload := bytes.Repeat([]byte("x"), 1<<20)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(payload))
	for off := 0; off < len(payload); off += 64 << 10 {
		c.Write(payload[off : off+64<<10])
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := body(resp), fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload)); got != want {
		t.Fatalf("streamed body: backend saw %q, want %q", got, want)
	}

	// Two pipelined requests in one write.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"hello /p1", "hello /p2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := body(resp); got != want {
			t.Fatalf("pipelined: %q, want %q", got, want)
		}
	}

	// A large response read slowly: the gateway's writes wait for room.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // let the socket buffers fill
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 32<<10)
	var n int
	for {
		m, err := resp.Body.Read(buf)
		h.Write(buf[:m])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n < 1<<20 {
			time.Sleep(time.Millisecond)
		}
	}
	if sum := sha256.Sum256(big); n != len(big) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("large response: %d bytes, want %d with the backend's checksum", n, len(big))
	}

	resp = roundTrip("GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := body(resp); got != "hello /last" {
		t.Fatalf("last request: %q", got)
	}
	st := &gw.srv.loopStats
	if d, r := st.detaches.Load(), st.rejoins.Load(); d < 2 || r != d {
		t.Errorf("detaches %d, rejoins %d: want at least 2 (first dial, streamed body), each followed by a rejoin", d, r)
	}
}

// TestEventLoopConcurrent: many connections over two loops share the
// backend connections (which move between loops) and every response
// matches its request.
func TestEventLoopConcurrent(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Query().Get("v"))
	})
	gw := loopGateway(t, 2, be.URL)
	const clients, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			for j := range each {
				v := strconv.Itoa(i*1000 + j)
				fmt.Fprintf(c, "GET /?v=%s HTTP/1.1\r\nHost: x\r\n\r\n", v)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != v {
					errs <- fmt.Errorf("client %d request %d: %d %q, want 200 %q", i, j, resp.StatusCode, b, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := gw.srv.loopStats.conns.Load(); n != clients {
		t.Errorf("connections on loops: %d, want %d", n, clients)
	}
}

// TestEventLoopBackendAffinity: under load from many connections on two
// loops, a request takes a backend connection its own loop already
// watches; one moving between the loops' epoll sets costs two epoll_ctl
// calls, so moves stay rare once each loop has its own.
func TestEventLoopBackendAffinity(t *testing.T) {
	gw := loopGateway(t, 2, "http://"+rawBackend(t))
	const clients, each = 64, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			for range each {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if moves := gw.srv.loopStats.moves.Load(); moves > clients*each/50 {
		t.Errorf("backend connections moved between loops %d times in %d requests, want at most 2%%", moves, clients*each)
	}
}

// TestEventLoopTimeouts: on a loop, a request head that never ends gets
// 408 after read_header_timeout, and a backend that does not answer gets
// 504 after response_header.
func TestEventLoopTimeouts(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok")
	})
	gw := startGateway(t, `fast, event_loops: "1", read_header_timeout: 300ms`,
		fmt.Sprintf("  - { path: \"/\", backend: %q, timeouts: { response_header: 300ms } }\n", be.URL))

	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 408 {
		t.Errorf("unfinished head: status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("408 after %v, want about 300ms", d)
	}

	raw, _ := rawExchange(t, gw.addr, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if got := statusOf(raw); got != 504 {
		t.Errorf("slow backend: status %d, want 504\n%s", got, raw)
	}
	if !strings.Contains(raw, "backend timeout") && !strings.Contains(raw, "timeout") {
		t.Errorf("504 body does not say timeout: %s", raw)
	}
}

// TestEventLoopTurns: a connection pipelining requests that need no
// backend lets the loop's other connections go every few requests, and
// every response arrives in order.
func TestEventLoopTurns(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := startGateway(t, `fast, event_loops: "1"`, fmt.Sprintf("  - { path: \"/api\", backend: %q }\n", be.URL))
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const n = 100
	var req strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "GET /nothing/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	go io.WriteString(c, req.String())
	br := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 404 {
			t.Fatalf("response %d: status %d, want 404", i, resp.StatusCode)
		}
	}
	if got := gw.srv.loopStats.turns.Load(); got < 2 {
		t.Errorf("turns after %d pipelined local answers: %d, want several (one per %d)", n, got, maxRun)
	}
}

// TestPinHead: once pinned, a request's fields survive the read buffer
// being overwritten by its streamed body.
func TestPinHead(t *testing.T) {
	raw := "POST /up/load?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ua/1\r\nX-Request-Id: abc\r\nTransfer-Encoding: chunked\r\nX-Other: v\r\n\r\n"
	buf := make([]byte, 4096)
	copy(buf, raw)
	cc := &clientConn{connWork: new(connWork)}
	n, err := parseRequest(buf[:len(raw)], &cc.req)
	if err != nil {
		t.Fatal(err)
	}
	cc.reqHead = buf[:n]
	cc.pinHead()
	for i := range buf {
		buf[i] = '#'
	}
	r := &cc.req
	for _, c := range []struct{ name, got, want string }{
		{"method", string(r.method), "POST"},
		{"target", string(r.target), "/up/load?x=1"},
		{"path", string(r.path), "/up/load"},
		{"host", string(r.host), "example.com"},
		{"user agent", string(r.userAgent), "ua/1"},
		{"request id", string(r.requestID), "abc"},
	} {
		if c.got != c.want {
			t.Errorf("%s after the buffer was reused: %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, f := range r.fields {
		if bytes.Contains(f.name, []byte("#")) || bytes.Contains(f.value, []byte("#")) {
			t.Errorf("field %q: %q still points into the reused buffer", f.name, f.value)
		}
	}
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventLoopIdleParks: idle keep-alive connections, and new ones that
// have sent nothing yet, leave their coroutine (parked) and are served
// again when they send; a parked connection still closes at its idle or
// head timeout, and at a shutdown at once.
func TestEventLoopIdleParks(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })
	gw := startGateway(t, `fast, event_loops: "2", idle_timeout: 1500ms, read_header_timeout: 2s`, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
	st := &gw.srv.loopStats
	get := func(c net.Conn, br *bufio.Reader, path string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok "+path {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
	const n = 10
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range n {
		conns[i] = dial(t, gw.addr)
		brs[i] = bufio.NewReader(conns[i])
		get(conns[i], brs[i], fmt.Sprintf("/first/%d", i))
	}
	silent := dial(t, gw.addr) // sends nothing yet
	waitFor(t, 1500*time.Millisecond, "idle connections not parked", func() bool { return st.parks.Load() >= n+1 })
	// Within its read_header_timeout (2s from the accept).
	get(silent, bufio.NewReader(silent), "/late")
	// Served again from a new coroutine, twice.
	for round := range 2 {
		for i := range n {
			get(conns[i], brs[i], fmt.Sprintf("/again/%d/%d", round, i))
		}
	}
	if st.unparks.Load() < n {
		t.Errorf("unparks %d, want >= %d", st.unparks.Load(), n)
	}

	// A parked connection closes at its idle timeout (1.5s) ...
	c := conns[0]
	get(c, brs[0], "/before-idle")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := brs[0].ReadByte(); err == nil {
		t.Fatal("idle connection answered something")
	}
	if d := time.Since(start); d < 1400*time.Millisecond || d > 1800*time.Millisecond {
		t.Errorf("parked idle connection closed after %v, want 1.5s", d)
	}
	// ... and a new one that sends nothing at read_header_timeout (2s).
	quiet := dial(t, gw.addr)
	start = time.Now()
	quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := quiet.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent connection answered something")
	}
	if d := time.Since(start); d < 1900*time.Millisecond || d > 2300*time.Millisecond {
		t.Errorf("silent connection closed after %v, want 2s", d)
	}

	// A shutdown closes the parked connections at once.
	parks := st.parks.Load()
	for i := 1; i < n; i++ {
		conns[i] = dial(t, gw.addr)
		brs[i] = bufio.NewReader(conns[i])
		get(conns[i], brs[i], "/before-shutdown")
	}
	waitFor(t, 2*time.Second, "connections not parked again", func() bool { return st.parks.Load() >= parks+n-1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	if err := gw.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("shutdown with %d parked connections took %v", n-1, d)
	}
	for i := 1; i < n; i++ {
		conns[i].SetReadDeadline(time.Now().Add(time.Second))
		if _, err := brs[i].ReadByte(); err != io.EOF {
			t.Errorf("connection %d after the shutdown: %v, want EOF", i, err)
		}
	}
}

// TestEventLoopBurstParks: past liveIdleMax coroutines on a loop, a
// connection that goes idle parks at its first wait instead of holding
// its coroutine until a sweep, and is served again from a new one.
func TestEventLoopBurstParks(t *testing.T) {
	old := liveIdleMax
	liveIdleMax = 3
	t.Cleanup(func() { liveIdleMax = old })
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })
	gw := startGateway(t, `fast, event_loops: "1"`, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
	st := &gw.srv.loopStats
	get := func(c net.Conn, br *bufio.Reader, path string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok "+path {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
	const n = 12
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range n {
		conns[i] = dial(t, gw.addr)
		brs[i] = bufio.NewReader(conns[i])
		get(conns[i], brs[i], fmt.Sprintf("/first/%d", i))
	}
	// At most liveIdleMax (+1: the one that waits while at the limit)
	// keep a coroutine; the others parked at once.
	waitFor(t, 2*time.Second, "idle connections past the limit not parked at once", func() bool {
		return st.burstParks.Load() >= int64(n-liveIdleMax-1)
	})
	for i := range n {
		get(conns[i], brs[i], fmt.Sprintf("/again/%d", i))
	}
}
