package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpBackend runs a TCP server whose handler gets each connection.
func tcpBackend(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echo copies what it reads back, then half-closes after the client did.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

func plainListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func startManager(t *testing.T, ls ...config.L4Listener) (*Manager, *observe.Metrics) {
	t.Helper()
	cfg := &config.Config{L4: ls}
	cfg.ApplyDefaults()
	metrics := observe.NewMetrics()
	m := NewManager(slog.New(slog.DiscardHandler), metrics, plainListen)
	if err := m.Apply(cfg.L4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m, metrics
}

func l4cfg(name string, backends ...string) config.L4Listener {
	l := config.L4Listener{Name: name, Listen: "127.0.0.1:0"}
	for _, b := range backends {
		l.Backends = append(l.Backends, config.L4Backend{Addr: b})
	}
	return l
}

func dial(t *testing.T, m *Manager, name string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", m.Addr(name).String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestRelayIntegrityAndHalfClose(t *testing.T) {
	be := tcpBackend(t, echo)
	m, _ := startManager(t, l4cfg("echo", be))
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	c := dial(t, m, "echo")
	go func() {
		c.Write(payload)
		c.CloseWrite() // the client's half-close reaches the backend
	}()
	got, err := io.ReadAll(c) // the backend's half-close reaches the client
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echoed %d bytes, checksum differs from the %d sent", len(got), len(payload))
	}
}

func TestServerSpeaksFirstAndClosesFirst(t *testing.T) {
	be := tcpBackend(t, func(c net.Conn) {
		io.WriteString(c, "220 hello\r\n")
		c.(*net.TCPConn).CloseWrite()
		// The client may still send after the server's half-close.
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line != "QUIT\r\n" {
			io.WriteString(c, "bad")
		}
	})
	m, _ := startManager(t, l4cfg("smtp", be))
	c := dial(t, m, "smtp")
	greet, err := io.ReadAll(c)
	if err != nil || string(greet) != "220 hello\r\n" {
		t.Fatalf("greeting %q, %v", greet, err)
	}
	if _, err := io.WriteString(c, "QUIT\r\n"); err != nil {
		t.Fatalf("write after the backend's half-close: %v", err)
	}
}

func TestProxyProtocol(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			hdr := make(chan []byte, 1)
			be := tcpBackend(t, func(c net.Conn) {
				buf := make([]byte, 256)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _ := c.Read(buf)
				hdr <- buf[:n]
			})
			l := l4cfg("pp", be)
			l.ProxyProtocol = v
			m, _ := startManager(t, l)
			c := dial(t, m, "pp")
			local := c.LocalAddr().(*net.TCPAddr)
			got := <-hdr
			switch v {
			case "v1":
				want := "PROXY TCP4 127.0.0.1 127.0.0.1 " + itoa(local.Port) + " " + itoa(m.Addr("pp").(*net.TCPAddr).Port) + "\r\n"
				if string(got) != want {
					t.Fatalf("header %q, want %q", got, want)
				}
			case "v2":
				if !bytes.HasPrefix(got, []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")) || len(got) != 28 {
					t.Fatalf("header % x", got)
				}
				if sport := int(got[24])<<8 | int(got[25]); sport != local.Port {
					t.Fatalf("source port %d, want %d", sport, local.Port)
				}
			}
		})
	}
}

func itoa(n int) string {
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func TestFailoverToLiveBackend(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	live := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "live") })
	m, metrics := startManager(t, l4cfg("fo", deadAddr, live))
	for range 4 {
		c := dial(t, m, "fo")
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != "live" {
			t.Fatalf("got %q", got)
		}
	}
	// Connections are counted when they end, just after the client saw EOF.
	var out string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out = scrape(t, metrics)
		if strings.Contains(out, `rustygate_l4_connections_total{listener="fo",result="proxied"} 4`) {
			break
		}
	}
	if !strings.Contains(out, `rustygate_backend_failures_total{backend="tcp://`+deadAddr+`",reason="connect_failure",route="fo"}`) {
		t.Fatalf("no connect failure counted:\n%s", out)
	}
	if !strings.Contains(out, `rustygate_l4_connections_total{listener="fo",result="proxied"} 4`) {
		t.Fatalf("proxied connections not counted:\n%s", out)
	}
}

func TestMaxConns(t *testing.T) {
	release := make(chan struct{})
	be := tcpBackend(t, func(c net.Conn) { <-release })
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	l := l4cfg("max", be)
	l.MaxConns = 1
	m, _ := startManager(t, l)
	first := dial(t, m, "max")
	first.Write([]byte("x"))
	time.Sleep(100 * time.Millisecond)
	second := dial(t, m, "max")
	second.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("second connection over max_conns: %v, want EOF", err)
	}
	once.Do(func() { close(release) })
}

func TestIdleTimeout(t *testing.T) {
	be := tcpBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	l := l4cfg("idle", be)
	l.IdleTimeout = config.Duration(1500 * time.Millisecond)
	m, _ := startManager(t, l)
	c := dial(t, m, "idle")
	// Activity keeps it open...
	for range 3 {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
	}
	// ...silence closes it.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 4*time.Second {
		t.Fatalf("idle connection: %v after %s", err, time.Since(start))
	}
}

func TestApplyReload(t *testing.T) {
	a := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "a") })
	b := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "b") })
	hold := make(chan struct{})
	long := tcpBackend(t, func(c net.Conn) { io.WriteString(c, "long"); <-hold })
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // runs before the backend's cleanup, even on failure
	m, _ := startManager(t, l4cfg("x", a), l4cfg("keep", long))
	kept := dial(t, m, "keep")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(kept, buf); err != nil {
		t.Fatal(err)
	}
	addr := m.Addr("x").String()
	next := &config.Config{L4: []config.L4Listener{{Name: "x", Listen: addr, Backends: []config.L4Backend{{Addr: b}}}, l4cfg("keep", long)}}
	next.L4[1].Listen = m.Addr("keep").String()
	next.ApplyDefaults()
	if err := m.Apply(next.L4); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "b" {
		t.Fatalf("after reload got %q, want the new backend", got)
	}
	// The long-lived connection was not cut by the reload.
	kept.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := kept.Read(buf); err == io.EOF {
		t.Fatal("reload closed a proxied connection")
	}
	release()
}

func scrape(t *testing.T, m *observe.Metrics) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, lp := range mt.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			sb.WriteString(mf.GetName() + "{" + strings.Join(labels, ",") + "} " + strings.TrimSuffix(strings.TrimSuffix(ftoa(v), ".0"), ".") + "\n")
		}
	}
	return sb.String()
}

func ftoa(v float64) string {
	if v == float64(int64(v)) {
		return itoa0(int64(v))
	}
	return "x"
}

func itoa0(n int64) string {
	if n == 0 {
		return "0"
	}
	return itoa(int(n))
}
