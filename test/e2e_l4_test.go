package e2e_test

// End-to-end tests of the TCP proxy (`l4:` listeners) through the real
// binary: integrity both ways, half-close in both orders, the PROXY
// protocol header, failover, max_conns, a reload under an established
// connection, and the per-connection log line.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// l4Config is a gateway configuration with no routes and the given `l4:`
// list items (see l4Listener).
func l4Config(listeners ...string) string {
	return `server:
  listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
log:
  format: json
  level: info
  access: false
routes: []
l4:
` + strings.Join(listeners, "")
}

// l4Listener is one `l4:` list item on 127.0.0.1:0; each extra line is a
// field of the listener.
func l4Listener(name string, backends []string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n    listen: \"127.0.0.1:0\"\n    backends:\n", name)
	for _, be := range backends {
		fmt.Fprintf(&b, "      - addr: %q\n", be)
	}
	for _, e := range extra {
		b.WriteString("    " + e + "\n")
	}
	return b.String()
}

// l4Addr waits up to 3 s for the "l4 listener started" line of listener
// name (after the first from lines) and returns its bound address.
func l4Addr(t *testing.T, lines func() []map[string]any, name string) string {
	t.Helper()
	l := l4WaitLine(t, lines, "l4 listener started "+name, func(l map[string]any) bool {
		return l["msg"] == "l4 listener started" && l["listener"] == name
	})
	addr, _ := l["listen"].(string)
	if addr == "" {
		t.Fatalf("l4 listener line without an address: %v", l)
	}
	return addr
}

// l4ConnLine waits up to 3 s for the "l4 connection" line of the client
// connection c on listener.
func l4ConnLine(t *testing.T, lines func() []map[string]any, listener string, c net.Conn) map[string]any {
	t.Helper()
	client := c.LocalAddr().String()
	return l4WaitLine(t, lines, fmt.Sprintf("l4 connection of %s on %s", client, listener), func(l map[string]any) bool {
		return l["msg"] == "l4 connection" && l["listener"] == listener && l["client"] == client
	})
}

func l4WaitLine(t *testing.T, lines func() []map[string]any, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, l := range lines() {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within 3s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// l4CheckConnLine checks the fields of an "l4 connection" line.
func l4CheckConnLine(t *testing.T, l map[string]any, backend string, toBackend, toClient int, closeReason string) {
	t.Helper()
	for _, k := range []string{"duration_ms", "bytes_to_backend", "bytes_to_client", "backend", "close"} {
		if _, ok := l[k]; !ok {
			t.Errorf("l4 connection line has no %q: %v", k, l)
		}
	}
	if d, ok := l["duration_ms"].(float64); !ok || d <= 0 {
		t.Errorf("duration_ms = %v, want a positive number", l["duration_ms"])
	}
	if got, _ := l["bytes_to_backend"].(float64); got != float64(toBackend) {
		t.Errorf("bytes_to_backend = %v, want %d", l["bytes_to_backend"], toBackend)
	}
	if got, _ := l["bytes_to_client"].(float64); got != float64(toClient) {
		t.Errorf("bytes_to_client = %v, want %d", l["bytes_to_client"], toClient)
	}
	if l["backend"] != backend {
		t.Errorf("backend = %v, want %s", l["backend"], backend)
	}
	if l["close"] != closeReason {
		t.Errorf("close = %v, want %q", l["close"], closeReason)
	}
}

// l4Data returns n pseudo-random bytes of seed.
func l4Data(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// l4WriteChunks writes b in random chunk sizes (1 B to 64 KiB).
func l4WriteChunks(c net.Conn, b []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(1<<r.IntN(17)))
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func l4CloseWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}

// l4EchoBackend echoes every byte, then half-closes after the client's
// EOF. With tag, it first sends tag (to tell backends apart).
func l4EchoBackend(t *testing.T, tag string) *rawBackend {
	return newRawBackend(t, func(c net.Conn) {
		if tag != "" {
			if _, err := io.WriteString(c, tag); err != nil {
				return
			}
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					c.(*net.TCPConn).CloseWrite()
				}
				return
			}
		}
	})
}

// l4RoundTrip sends msg on c and reads its echo.
func l4RoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

func (rb *rawBackend) addr() string { return rb.ln.Addr().String() }

// ppResult is what the PROXY protocol backend parsed.
type ppResult struct {
	src, dst netip.AddrPort
	payload  string
	err      error
}

// l4ProxyProtoBackend parses a PROXY protocol header (v1 or v2), reads
// the payload to EOF, answers "ok" and reports what it saw on the channel.
func l4ProxyProtoBackend(t *testing.T, version string) (*rawBackend, <-chan ppResult) {
	ch := make(chan ppResult, 8)
	rb := newRawBackend(t, func(c net.Conn) {
		var r ppResult
		if version == "v2" {
			r.src, r.dst, r.err = l4ParseV2(c)
		} else {
			r.src, r.dst, r.err = l4ParseV1(c)
		}
		if r.err == nil {
			b, err := io.ReadAll(c)
			r.payload, r.err = string(b), err
			io.WriteString(c, "ok")
		}
		ch <- r
	})
	return rb, ch
}

// l4ParseV2 reads a PROXY protocol v2 header announcing TCP over IPv4.
func l4ParseV2(c net.Conn) (src, dst netip.AddrPort, err error) {
	var fixed [16]byte
	if _, err := io.ReadFull(c, fixed[:]); err != nil {
		return src, dst, fmt.Errorf("reading the v2 header: %w", err)
	}
	if sig := "\r\n\r\n\x00\r\nQUIT\n"; string(fixed[:12]) != sig {
		return src, dst, fmt.Errorf("v2 signature %q, want %q", fixed[:12], sig)
	}
	if fixed[12] != 0x21 {
		return src, dst, fmt.Errorf("version/command byte %#x, want 0x21 (v2, PROXY)", fixed[12])
	}
	if fixed[13] != 0x11 {
		return src, dst, fmt.Errorf("family/protocol byte %#x, want 0x11 (TCP over IPv4)", fixed[13])
	}
	n := binary.BigEndian.Uint16(fixed[14:])
	if n != 12 {
		return src, dst, fmt.Errorf("address length %d, want 12", n)
	}
	var a [12]byte
	if _, err := io.ReadFull(c, a[:]); err != nil {
		return src, dst, fmt.Errorf("reading the v2 addresses: %w", err)
	}
	src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
	dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	return src, dst, nil
}

// l4ParseV1 reads a PROXY protocol v1 line, byte by byte so that nothing
// of the payload is consumed.
func l4ParseV1(c net.Conn) (src, dst netip.AddrPort, err error) {
	var line []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(line, []byte("\r\n")) {
		if len(line) > 107 {
			return src, dst, fmt.Errorf("v1 line longer than 107 bytes: %q", line)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return src, dst, fmt.Errorf("reading the v1 line: %w", err)
		}
		line = append(line, one[0])
	}
	f := strings.Fields(string(line))
	if len(f) != 6 || f[0] != "PROXY" || f[1] != "TCP4" {
		return src, dst, fmt.Errorf("v1 line %q, want PROXY TCP4 src dst sport dport", line)
	}
	sa, err1 := netip.ParseAddr(f[2])
	da, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return src, dst, fmt.Errorf("v1 line %q: %w", line, err)
	}
	return netip.AddrPortFrom(sa, uint16(sp)), netip.AddrPortFrom(da, uint16(dp)), nil
}

// TestL4Proxy runs one gateway with a listener per behaviour.
func TestL4Proxy(t *testing.T) {
	echo := l4EchoBackend(t, "")

	// upload/download: reads to EOF, then answers the SHA-256 of what it
	// got followed by 1 MiB of its own, and closes.
	download := l4Data(2, 1<<20)
	updown := newRawBackend(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		c.Write(h.Sum(nil))
		c.Write(download)
	})

	// Server speaks first, then half-closes, then reads the client's
	// bytes to EOF and reports their SHA-256.
	banner := append([]byte("220 rustygate-e2e ready\r\n"), l4Data(3, 64<<10)...)
	type upload struct {
		sum [32]byte
		n   int64
		err error
	}
	uploads := make(chan upload, 1)
	speaks := newRawBackend(t, func(c net.Conn) {
		if _, err := c.Write(banner); err != nil {
			uploads <- upload{err: err}
			return
		}
		c.(*net.TCPConn).CloseWrite()
		h := sha256.New()
		n, err := io.Copy(h, c)
		var u upload
		copy(u.sum[:], h.Sum(nil))
		u.n, u.err = n, err
		uploads <- u
	})

	pp2, pp2Seen := l4ProxyProtoBackend(t, "v2")
	pp1, pp1Seen := l4ProxyProtoBackend(t, "v1")
	dead := closedAddr(t)

	g := startGateway(t, "l4", l4Config(
		l4Listener("echo", []string{echo.addr()}, "datapath: splice"),
		l4Listener("kernel", []string{echo.addr()}, "datapath: kernel"),
		l4Listener("updown", []string{updown.addr()}),
		l4Listener("speaks", []string{speaks.addr()}),
		l4Listener("pp2", []string{pp2.addr()}, "proxy_protocol: v2"),
		l4Listener("pp1", []string{pp1.addr()}, "proxy_protocol: v1"),
		l4Listener("failover", []string{dead, echo.addr()}, "connect_timeout: 2s"),
		l4Listener("maxc", []string{echo.addr()}, "max_conns: 2"),
	))
	lines := g.lines
	admin := ""
	for _, l := range lines() {
		if l["msg"] == "RustyGate started" {
			admin, _ = l["admin"].(string)
		}
	}
	metrics := func(t *testing.T) string {
		t.Helper()
		_, body := get(t, newClient(t), "http://"+admin+"/metrics")
		return string(body)
	}

	// 1 MiB echoed: both directions at once, checksummed, on both
	// datapaths (kernel is splice(2) until kernel splicing lands).
	for _, name := range []string{"echo", "kernel"} {
		t.Run("echo 1 MiB "+name, func(t *testing.T) {
			addr := l4Addr(t, lines, name)
			c := dialRaw(t, addr, 10*time.Second)
			sent := l4Data(1, 1<<20)
			werr := make(chan error, 1)
			go func() {
				err := l4WriteChunks(c, sent, 1)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			got, err := io.ReadAll(c)
			if e := <-werr; e != nil {
				t.Fatalf("write: %v", e)
			}
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
			if len(got) != len(sent) || sha256.Sum256(got) != sha256.Sum256(sent) {
				t.Fatalf("echo of 1 MiB: got %d bytes, SHA-256 %x; sent %d, %x",
					len(got), sha256.Sum256(got), len(sent), sha256.Sum256(sent))
			}
			c.Close()
			l := l4ConnLine(t, lines, name, c)
			l4CheckConnLine(t, l, echo.addr(), 1<<20, 1<<20, "eof")
			t.Logf("relayed by datapath %v", l["datapath"])
		})
	}

	// The client sends 1 MiB and half-closes; the backend answers after
	// EOF: the SHA-256 of the upload, then 1 MiB of its own.
	t.Run("client half-closes then reads the rest", func(t *testing.T) {
		c := dialRaw(t, l4Addr(t, lines, "updown"), 10*time.Second)
		up := l4Data(4, 1<<20)
		if err := l4WriteChunks(c, up, 4); err != nil {
			t.Fatalf("write: %v", err)
		}
		l4CloseWrite(t, c)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		if len(got) != 32+len(download) {
			t.Fatalf("got %d bytes after the half-close, want %d (SHA-256 + 1 MiB)", len(got), 32+len(download))
		}
		if sum := sha256.Sum256(up); !bytes.Equal(got[:32], sum[:]) {
			t.Errorf("backend's SHA-256 of the upload %x, want %x", got[:32], sum)
		}
		if !bytes.Equal(got[32:], download) {
			t.Errorf("the 1 MiB download differs from what the backend sent")
		}
		c.Close()
		l4CheckConnLine(t, l4ConnLine(t, lines, "updown", c), updown.addr(), 1<<20, 32+1<<20, "eof")
	})

	// A server-speaks-first protocol whose server half-closes first: the
	// client gets the banner and EOF, and can still send.
	t.Run("server speaks first and half-closes first", func(t *testing.T) {
		c := dialRaw(t, l4Addr(t, lines, "speaks"), 10*time.Second)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the banner (%d bytes so far): %v", len(got), err)
		}
		if !bytes.Equal(got, banner) {
			t.Fatalf("banner: got %d bytes (%.25q...), want %d", len(got), got, len(banner))
		}
		up := l4Data(5, 256<<10)
		if err := l4WriteChunks(c, up, 5); err != nil {
			t.Fatalf("write after the server's EOF: %v", err)
		}
		l4CloseWrite(t, c)
		var u upload
		select {
		case u = <-uploads:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend did not get the client's EOF within 5s")
		}
		if u.err != nil || u.n != int64(len(up)) || u.sum != sha256.Sum256(up) {
			t.Fatalf("backend got %d bytes (err %v), SHA-256 %x; sent %d, %x", u.n, u.err, u.sum, len(up), sha256.Sum256(up))
		}
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Errorf("after both half-closes: %d more bytes, err %v; want EOF", len(rest), err)
		}
		c.Close()
		l4CheckConnLine(t, l4ConnLine(t, lines, "speaks", c), speaks.addr(), len(up), len(banner), "eof")
	})

	for _, pp := range []struct {
		name string
		seen <-chan ppResult
	}{{"pp2", pp2Seen}, {"pp1", pp1Seen}} {
		t.Run("PROXY protocol "+pp.name, func(t *testing.T) {
			addr := l4Addr(t, lines, pp.name)
			c := dialRaw(t, addr, 10*time.Second)
			io.WriteString(c, "payload after the header")
			l4CloseWrite(t, c)
			if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
				t.Fatalf("answer %q, err %v; want ok", b, err)
			}
			var r ppResult
			select {
			case r = <-pp.seen:
			case <-time.After(5 * time.Second):
				t.Fatal("the backend reported nothing within 5s")
			}
			if r.err != nil {
				t.Fatalf("backend: %v", r.err)
			}
			wantSrc := netip.MustParseAddrPort(c.LocalAddr().String())
			wantDst := netip.MustParseAddrPort(addr)
			if r.src != wantSrc || r.dst != wantDst {
				t.Errorf("header announces %s -> %s, want client %s -> listener %s", r.src, r.dst, wantSrc, wantDst)
			}
			if r.payload != "payload after the header" {
				t.Errorf("payload after the header %q", r.payload)
			}
		})
	}

	t.Run("failover when the first backend is dead", func(t *testing.T) {
		addr := l4Addr(t, lines, "failover")
		for i := range 4 {
			c := dialRaw(t, addr, 10*time.Second)
			l4RoundTrip(t, c, fmt.Sprintf("failover %d", i))
			l4CloseWrite(t, c)
			if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
				t.Fatalf("connection %d: after the half-close %q, %v; want EOF", i, rest, err)
			}
			c.Close()
			if l := l4ConnLine(t, lines, "failover", c); l["backend"] != echo.addr() {
				t.Errorf("connection %d went to %v, want the live backend %s", i, l["backend"], echo.addr())
			}
		}
		series := fmt.Sprintf(`rustygate_backend_failures_total{backend="tcp://%s",reason="connect_failure",route="failover"}`, dead)
		if !strings.Contains(metrics(t), series) {
			t.Errorf("no %s in /metrics: the dead backend was never tried", series)
		}
	})

	t.Run("max_conns", func(t *testing.T) {
		addr := l4Addr(t, lines, "maxc")
		c1 := dialRaw(t, addr, 10*time.Second)
		c2 := dialRaw(t, addr, 10*time.Second)
		l4RoundTrip(t, c1, "one")
		l4RoundTrip(t, c2, "two")

		c3 := dialRaw(t, addr, 5*time.Second)
		io.WriteString(c3, "three")
		got, closed, err := readAllRaw(c3)
		if !closed || len(got) != 0 {
			t.Fatalf("a connection over max_conns 2: got %q (closed %v, err %v); want it closed with nothing", got, closed, err)
		}

		c1.Close()
		// The slot frees once the gateway has seen c1 end: retry a bit.
		deadline := time.Now().Add(3 * time.Second)
		for {
			c4 := dialRaw(t, addr, 2*time.Second)
			_, err := io.WriteString(c4, "four")
			buf := make([]byte, 4)
			if err == nil {
				_, err = io.ReadFull(c4, buf)
			}
			c4.Close()
			if err == nil && string(buf) == "four" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no connection accepted within 3s of closing one of the two (last: %q, %v)", buf, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		l4RoundTrip(t, c2, "two again")
		if m := metrics(t); !strings.Contains(m, `rustygate_l4_connections_total{listener="maxc",result="rejected"}`) {
			t.Errorf("no rejected connection counted for listener maxc in /metrics")
		}
	})
}

// TestL4Reload: a SIGHUP reload that changes the backend of a listener
// and adds a second listener keeps an established connection working on
// its old backend, which the new configuration no longer lists at all;
// new connections get the new backend.
func TestL4Reload(t *testing.T) {
	b1 := l4EchoBackend(t, "B1\n")
	b2 := l4EchoBackend(t, "B2\n")
	cfg := func(version string, l4 ...string) hrCfg {
		return hrCfg{engine: hrEngine, version: version, routes: "  []\n", extra: "l4:\n" + strings.Join(l4, "")}
	}
	path := hrConfigFile(t, cfg("1", l4Listener("a", []string{b1.addr()})))
	p := hrStart(t, path)
	lines := func() []map[string]any { return p.lines(0) }
	addrA := l4Addr(t, lines, "a")

	tag := func(t *testing.T, c net.Conn) string {
		t.Helper()
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("reading the backend's tag: %v", err)
		}
		return string(b)
	}
	c1 := dialRaw(t, addrA, 15*time.Second)
	if got := tag(t, c1); got != "B1\n" {
		t.Fatalf("first connection reached %q, want B1", got)
	}
	l4RoundTrip(t, c1, "before the reload")

	hrWrite(t, path, cfg("2",
		l4Listener("a", []string{b2.addr()}),
		l4Listener("b", []string{b2.addr()}, "datapath: splice"),
	).yaml())
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("SIGHUP reload: %v", l)
	}

	// The established connection still relays, both ways, to B1.
	l4RoundTrip(t, c1, "after the reload")
	big := l4Data(6, 256<<10)
	done := make(chan error, 1)
	go func() { done <- l4WriteChunks(c1, big, 6) }()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c1, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("256 KiB echo on the established connection after the reload: %v (equal %v)", err, bytes.Equal(got, big))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	cA := dialRaw(t, addrA, 10*time.Second)
	if got := tag(t, cA); got != "B2\n" {
		t.Errorf("a new connection to listener a reached %q, want B2 (its new backend)", got)
	}
	l4RoundTrip(t, cA, "new a")
	cB := dialRaw(t, l4Addr(t, lines, "b"), 10*time.Second)
	if got := tag(t, cB); got != "B2\n" {
		t.Errorf("a connection to the added listener b reached %q, want B2", got)
	}
	l4RoundTrip(t, cB, "new b")

	l4CloseWrite(t, c1)
	if rest, err := io.ReadAll(c1); err != nil || len(rest) != 0 {
		t.Fatalf("closing the established connection: %q, %v; want EOF", rest, err)
	}
	c1.Close()
	n := len("before the reload") + len("after the reload") + len(big)
	l4CheckConnLine(t, l4ConnLine(t, lines, "a", c1), b1.addr(), n, n+3, "eof")
}

// l4Listen is a one-connection backend without the 10 s deadline of
// newRawBackend; handle runs in a goroutine waited for at cleanup.
func l4Listen(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(90 * time.Second))
		handle(c.(*net.TCPConn))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestL4HalfCloseKeepsActiveUpload: after the backend half-closes,
// relay() gives the client a fixed 30 s (halfCloseTimeout, an absolute
// read deadline, not an idle timeout) to finish. A client still sending
// steadily past that is cut off, and the backend gets a clean FIN: the
// truncated upload looks complete to it. Takes ~35 s.
func TestL4HalfCloseKeepsActiveUpload(t *testing.T) {
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	be := l4Listen(t, func(c *net.TCPConn) {
		c.CloseWrite() // nothing to say: it only receives
		n, err := io.Copy(io.Discard, c)
		res <- result{n, err}
	})
	g := startGateway(t, "l4", l4Config(l4Listener("up", []string{be})))
	c := dialRaw(t, l4Addr(t, g.lines, "up"), 60*time.Second)
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("expected the backend's half-close first: %q, %v", b, err)
	}
	// 1 KiB every 250 ms for 35 s: never idle for more than 250 ms.
	var sent int64
	chunk := make([]byte, 1024)
	start := time.Now()
	var werr error
	for time.Since(start) < 35*time.Second {
		if _, werr = c.Write(chunk); werr != nil {
			break
		}
		sent += int64(len(chunk))
		time.Sleep(250 * time.Millisecond)
	}
	if werr == nil {
		l4CloseWrite(t, c)
	}
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw no end of the upload")
	}
	if werr != nil {
		t.Errorf("client write failed after %s and %d bytes of a steady upload: %v", time.Since(start).Round(time.Second), sent, werr)
	}
	if r.n != sent || r.err != nil {
		t.Errorf("backend received %d of %d bytes, ending with err=%v (nil: a clean EOF, so the truncation is silent)", r.n, sent, r.err)
	}
}

// TestL4ClientResetReachesBackendAsReset: a client that aborts
// (SO_LINGER 0 close, a TCP reset) mid-upload is passed on to the backend
// as a clean FIN (relay() calls CloseWrite on the backend whatever ended
// the client side), so an EOF-delimited upload that was aborted looks
// complete. HAProxy in TCP mode passes most such aborts on as a reset.
func TestL4ClientResetReachesBackendAsReset(t *testing.T) {
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	be := l4Listen(t, func(c *net.TCPConn) {
		n, err := io.Copy(io.Discard, c)
		res <- result{n, err}
	})
	g := startGateway(t, "l4", l4Config(l4Listener("abort", []string{be})))
	c := dialRaw(t, l4Addr(t, g.lines, "abort"), 10*time.Second)
	if err := l4WriteChunks(c, l4Data(7, 64<<10), 7); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the bytes reach the backend
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	var r result
	select {
	case r = <-res:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend saw no end of the connection")
	}
	if r.err == nil {
		t.Errorf("backend read %d bytes then a clean EOF; want a reset (the client aborted)", r.n)
	}
}
