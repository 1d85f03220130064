package e2e_test

// End-to-end test of kernel splicing (`datapath: kernel` on an l4
// listener) through the real binary: integrity both ways, half-close in
// both orders, and the per-connection log line, which says which
// datapath moved the bytes. The relay must be correct whichever it was;
// the test then requires "kernel" when the host can splice in the kernel
// (root), and skips that last check with the reason otherwise, or when
// the binary does not hand l4 a splicer.

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestL4KernelSplice(t *testing.T) {
	echo := l4EchoBackend(t, "")
	banner := l4Data(7, 256<<10)
	uploads := make(chan [32]byte, 1)
	speaks := newRawBackend(t, func(c net.Conn) {
		if _, err := c.Write(banner); err != nil {
			return
		}
		c.(*net.TCPConn).CloseWrite()
		h := sha256.New()
		io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		uploads <- s
	})
	g := startGateway(t, "l4", l4Config(
		l4Listener("kecho", []string{echo.addr()}, "datapath: kernel"),
		l4Listener("kspeaks", []string{speaks.addr()}, "datapath: kernel"),
	))
	lines := g.lines

	// Echo, client half-closes first.
	payload := l4Data(11, 32<<20)
	c, err := net.Dial("tcp", l4Addr(t, lines, "kecho"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	l4RoundTrip(t, c, "hello") // the proxy splices an open connection
	werr := make(chan error, 1)
	go func() {
		err := l4WriteChunks(c, payload, 11)
		c.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, want the %d sent, intact", len(got), len(payload))
	}
	line := l4ConnLine(t, lines, "kecho", c)
	l4CheckConnLine(t, line, echo.addr(), len(payload)+5, len(payload)+5, "eof")

	// The backend speaks first and half-closes first; the client uploads after.
	c2, err := net.Dial("tcp", l4Addr(t, lines, "kspeaks"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(c2)
	if err != nil || !bytes.Equal(b, banner) {
		t.Fatalf("banner: %d bytes (%v), want %d", len(b), err, len(banner))
	}
	up := l4Data(12, 8<<20)
	if err := l4WriteChunks(c2, up, 12); err != nil {
		t.Fatalf("upload after the backend's half-close: %v", err)
	}
	l4CloseWrite(t, c2)
	select {
	case s := <-uploads:
		if s != sha256.Sum256(up) {
			t.Fatal("the backend got a different upload")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the backend never saw the upload's end")
	}
	line2 := l4ConnLine(t, lines, "kspeaks", c2)
	l4CheckConnLine(t, line2, speaks.addr(), len(up), len(banner), "eof")

	for _, l := range []map[string]any{line, line2} {
		if l["datapath"] == "kernel" {
			continue
		}
		switch {
		case os.Geteuid() != 0:
			t.Skipf("relayed correctly with datapath %v; kernel splicing needs root", l["datapath"])
		case os.Getenv("RUSTYGATE_REQUIRE_KERNEL_SPLICE") == "1":
			t.Fatalf("RUSTYGATE_REQUIRE_KERNEL_SPLICE=1, but the connection used datapath %v: %v", l["datapath"], l)
		default:
			t.Skipf("relayed correctly with datapath %v, not kernel: the binary does not hand l4 a loader.Splicer (cmd: l4.Manager.SetSplicer), or its self-test failed", l["datapath"])
		}
	}
}
