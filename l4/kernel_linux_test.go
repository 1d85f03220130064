//go:build linux

package l4

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
	"github.com/rustygate/rustygate/observe"
)

func noMPTCPListen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

// kernelSplicer returns a loaded splicer, or skips (fails with
// RUSTYGATE_REQUIRE_BPF=1) when this host cannot splice in the kernel.
func kernelSplicer(t *testing.T) *loader.Splicer {
	t.Helper()
	s, err := loader.NewSplicer(nil)
	if err != nil {
		// Kernel splicing needs 6.2 (bpf_cast_to_kern_ctx): older kernels
		// report not_supported, even where BPF is required.
		var serr *loader.SpliceError
		old := errors.As(err, &serr) && serr.Reason == loader.ReasonNotSupported || kernelBefore(6, 2)
		if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" && !old {
			t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but kernel splicing cannot load: %v", err)
		}
		t.Skipf("needs kernel splicing (sk_skb, SOCKHASH; root): %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startKernelManager(t *testing.T, s *loader.Splicer, ls ...config.L4Listener) *Manager {
	t.Helper()
	cfg := &config.Config{L4: ls}
	cfg.ApplyDefaults()
	m := NewManager(slog.New(slog.DiscardHandler), observe.NewMetrics(), noMPTCPListen)
	m.SetSplicer(s)
	if err := m.Apply(cfg.L4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m
}

func kernelCfg(name string, backends ...string) config.L4Listener {
	l := l4cfg(name, backends...)
	l.Datapath = datapathKernel
	return l
}

func TestKernelRelayIntegrityAndHalfClose(t *testing.T) {
	s := kernelSplicer(t)
	be := tcpBackend(t, echo)
	m := startKernelManager(t, s, kernelCfg("echo", be))
	before := m.SpliceStats()
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	c := dial(t, m, "echo")
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		// One byte first, so the proxy splices an open connection.
		c.Write(payload[:1])
		time.Sleep(20 * time.Millisecond)
		c.Write(payload[1:])
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echoed %d bytes, checksum differs from the %d sent", len(got), len(payload))
	}
	after := m.SpliceStats()
	if after.Connections-before.Connections != 1 || after.RedirectedBytes-before.RedirectedBytes < 2*uint64(len(payload)) {
		t.Fatalf("the connection was not spliced in the kernel: before %+v, after %+v", before, after)
	}
}

func TestKernelServerSpeaksFirstAndClosesFirst(t *testing.T) {
	s := kernelSplicer(t)
	be := tcpBackend(t, func(c net.Conn) {
		io.WriteString(c, "220 hello\r\n")
		c.(*net.TCPConn).CloseWrite()
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line != "QUIT\r\n" {
			io.WriteString(c, "bad")
		}
	})
	m := startKernelManager(t, s, kernelCfg("smtp", be))
	c := dial(t, m, "smtp")
	greet, err := io.ReadAll(c)
	if err != nil || string(greet) != "220 hello\r\n" {
		t.Fatalf("greeting %q, %v", greet, err)
	}
	if _, err := io.WriteString(c, "QUIT\r\n"); err != nil {
		t.Fatalf("write after the backend's half-close: %v", err)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after QUIT: %q %v", rest, err)
	}
	if st := m.SpliceStats(); st.Connections == 0 {
		t.Fatalf("not spliced in the kernel: %+v", st)
	}
}

// TestKernelFallsBackWithoutSplicer: datapath kernel without a splicer
// relays with splice(2).
func TestKernelFallsBackWithoutSplicer(t *testing.T) {
	be := tcpBackend(t, echo)
	m := startKernelManager(t, nil, kernelCfg("echo", be))
	c := dial(t, m, "echo")
	io.WriteString(c, "hello")
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "hello" {
		t.Fatalf("echo %q %v", got, err)
	}
}

// TestKernelFallsBackOnMPTCPClient: an MPTCP client socket cannot be
// spliced in the kernel; that connection uses splice(2).
func TestKernelFallsBackOnMPTCPClient(t *testing.T) {
	s := kernelSplicer(t)
	be := tcpBackend(t, echo)
	cfg := &config.Config{L4: []config.L4Listener{kernelCfg("echo", be)}}
	cfg.ApplyDefaults()
	m := NewManager(slog.New(slog.DiscardHandler), observe.NewMetrics(), plainListen) // MPTCP on
	m.SetSplicer(s)
	if err := m.Apply(cfg.L4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", m.Addr("echo").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "x")
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	io.ReadAll(c)
	if mp, _ := c.(*net.TCPConn).MultipathTCP(); mp {
		if st := s.Stats(); st.Fallbacks == 0 {
			t.Fatalf("MPTCP connection did not fall back: %+v", st)
		}
	}
}

// kernelBefore reports whether the running kernel is older than
// major.minor.
func kernelBefore(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma < major || ma == major && mi < minor
}

func TestKernelSNIPassthrough(t *testing.T) {
	s := kernelSplicer(t)
	ca := newTestCA(t)
	cert := ca.issue(t, "db.example.com")
	headers := make(chan []byte, 1)
	db := tlsEcho(t, "db", cert, func(c net.Conn) {
		h := make([]byte, 28) // PROXY v2 over IPv4
		io.ReadFull(c, h)
		headers <- h
	})
	l := sniCfg("edge", route("db", []string{"db.example.com"}, db))
	l.Datapath, l.ProxyProtocol = datapathKernel, "v2"
	m := startKernelManager(t, s, l)
	before := m.SpliceStats()
	payload := randomPayload(4 << 20)
	// The hello read to route is sent ahead of the bytes the kernel
	// splices: the session is intact end to end.
	if tag, _ := tlsExchange(t, m.Addr("edge").String(), "db.example.com", ca.pool, payload, nil); tag != "db" {
		t.Fatalf("reached %q", tag)
	}
	if h := <-headers; string(h[:12]) != "\r\n\r\n\x00\r\nQUIT\n" {
		t.Fatalf("PROXY header %q", h)
	}
	// The splice ends once the gateway saw the client close; its bytes
	// are counted then.
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := m.SpliceStats()
		if after.Connections-before.Connections == 1 && after.RedirectedBytes-before.RedirectedBytes >= 2*uint64(len(payload)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connection was not spliced in the kernel: before %+v, after %+v", before, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
