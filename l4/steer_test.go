package l4

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testnet"
	"github.com/rustygate/rustygate/observe"
)

// freePortRange returns the first of n free consecutive ports at host.
func freePortRange(t *testing.T, host string, n int) int {
	return testnet.FreePortRange(t, host, n)
}

// logBuffer collects JSON log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines whose msg is msg.
func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// startRangeManager runs a manager with steering set as mode and bpffs
// say ("" leaves it unset), logging into the returned buffer.
func startRangeManager(t *testing.T, mode, bpffs string, listen func(string) (net.Listener, error), ls ...config.L4Listener) (*Manager, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m := NewManager(slog.New(slog.NewJSONHandler(logs, nil)), observe.NewMetrics(), listen)
	if mode != "" {
		m.SetSteering(mode, bpffs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.buf.String())
		}
	})
	if err := m.Apply(l4Configs(ls...)); err != nil {
		t.Fatal(err)
	}
	return m, logs
}

func l4Configs(ls ...config.L4Listener) []config.L4Listener {
	cfg := &config.Config{L4: ls}
	cfg.ApplyDefaults()
	return cfg.L4
}

func rangeCfg(name, host string, lo, hi int, backends ...string) config.L4Listener {
	l := l4cfg(name, backends...)
	l.Listen = fmt.Sprintf("%s:%d-%d", host, lo, hi)
	return l
}

// echoOn opens a connection to host:port through the proxy and checks a
// round trip; the connection is closed at cleanup.
func echoOn(t *testing.T, host string, port int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 3*time.Second)
	if err != nil {
		t.Fatalf("port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	roundTrip(t, c, "port "+strconv.Itoa(port))
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("%s: write: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("%s: echo %q, %v", msg, got, err)
	}
}

// checkPorts checks that every port from lo to hi reaches the backend.
func checkPorts(t *testing.T, host string, lo, hi int) {
	t.Helper()
	for p := lo; p <= hi; p++ {
		echoOn(t, host, p).Close()
	}
}

// refused checks that nothing accepts on host:port any more.
func refused(t *testing.T, host string, port int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second)
	if err == nil {
		c.Close()
		t.Errorf("port %d still accepts", port)
	}
}

// startedLine returns the last "l4 listener started" line of listener.
func startedLine(t *testing.T, logs *logBuffer, listener string) map[string]any {
	t.Helper()
	var last map[string]any
	for _, l := range logs.lines("l4 listener started") {
		if l["listener"] == listener {
			last = l
		}
	}
	if last == nil {
		t.Fatalf("no \"l4 listener started\" line for %s", listener)
	}
	return last
}

// TestPortRangeUserspace: without steering a port range gets one socket
// per port, all feeding one listener; a reload that moves the range keeps
// the sockets of the ports still in it and the established connections.
func TestPortRangeUserspace(t *testing.T) {
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 30)
	m, logs := startRangeManager(t, "", "", plainListen, rangeCfg("r", "127.0.0.1", lo, lo+19, be))
	checkPorts(t, "127.0.0.1", lo, lo+19)
	if n := len(m.Sockets()); n != 20 {
		t.Errorf("%d sockets for 20 ports, want one per port", n)
	}
	l := startedLine(t, logs, "r")
	if l["steering"] != steeringUserspace || l["steering_reason"] != "configured" || l["sockets"] != float64(20) {
		t.Errorf("started line %v: want steering userspace (configured) on 20 sockets", l)
	}
	kept := echoOn(t, "127.0.0.1", lo+15)
	before := m.Sockets()

	// Move the range up by ten ports.
	if err := m.Apply(l4Configs(rangeCfg("r", "127.0.0.1", lo+10, lo+29, be))); err != nil {
		t.Fatal(err)
	}
	checkPorts(t, "127.0.0.1", lo+10, lo+29)
	for p := lo; p < lo+10; p++ {
		refused(t, "127.0.0.1", p)
	}
	after := m.Sockets()
	for p := lo + 10; p < lo+20; p++ {
		a := "127.0.0.1:" + strconv.Itoa(p)
		if after[a] != before[a] {
			t.Errorf("the socket of port %d, still in the range, was replaced", p)
		}
	}
	roundTrip(t, kept, "after the reload")
}

// TestPortRangeFromSinglePort: a single port listener turned into a port
// range keeps its socket (opening it again would fail: it is bound) and
// its connections, and back.
func TestPortRangeFromSinglePort(t *testing.T) {
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 5)
	single := l4cfg("s", be)
	single.Listen = "127.0.0.1:" + strconv.Itoa(lo)
	m, _ := startRangeManager(t, "", "", plainListen, single)
	kept := echoOn(t, "127.0.0.1", lo)
	sock := m.Sockets()[single.Listen]

	if err := m.Apply(l4Configs(rangeCfg("s", "127.0.0.1", lo, lo+4, be))); err != nil {
		t.Fatal(err)
	}
	checkPorts(t, "127.0.0.1", lo, lo+4)
	roundTrip(t, kept, "range")
	if m.Sockets()[single.Listen] != sock {
		t.Errorf("the single port's socket was not kept for the range")
	}

	if err := m.Apply(l4Configs(single)); err != nil {
		t.Fatal(err)
	}
	checkPorts(t, "127.0.0.1", lo, lo)
	refused(t, "127.0.0.1", lo+1)
	roundTrip(t, kept, "single again")
	if n := len(m.Sockets()); n != 1 {
		t.Errorf("%d sockets after going back to one port", n)
	}
}

// TestPortRangeApplyFailsCleanly: a range whose ports are partly taken
// fails to apply and leaves nothing open.
func TestPortRangeApplyFailsCleanly(t *testing.T) {
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 5)
	taken, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lo+3))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	m, _ := startRangeManager(t, "", "", plainListen)
	if err := m.Apply(l4Configs(rangeCfg("r", "127.0.0.1", lo, lo+4, be))); err == nil {
		t.Fatal("Apply succeeded with a port of the range taken")
	}
	if n := len(m.Sockets()); n != 0 {
		t.Errorf("%d sockets after a failed Apply", n)
	}
	refused(t, "127.0.0.1", lo)
}

// TestSocketsFollowTheConfiguredAddress: a socket kept across a reload
// that writes its address another way is handed over (Sockets) by the
// address now configured, which a binary upgrade's new process asks for.
func TestSocketsFollowTheConfiguredAddress(t *testing.T) {
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 3)
	a := l4cfg("a", be)
	a.Listen = "0.0.0.0:" + strconv.Itoa(lo)
	m, _ := startRangeManager(t, "", "", plainListen, a)
	sock := m.Sockets()[a.Listen]
	if sock == nil {
		t.Fatalf("sockets %v: want one by %q", m.Sockets(), a.Listen)
	}
	for _, listen := range []string{":" + strconv.Itoa(lo), "[::]:" + strconv.Itoa(lo)} {
		a.Listen = listen
		if err := m.Apply(l4Configs(a)); err != nil {
			t.Fatal(err)
		}
		if got := m.Sockets(); len(got) != 1 || got[listen] != sock {
			t.Errorf("after the reload to %q: sockets %v, want the same socket by the new address", listen, got)
		}
	}
	// A range from the same port keeps the socket too, keyed by its port.
	a.Listen = fmt.Sprintf(":%d-%d", lo, lo+2)
	if err := m.Apply(l4Configs(a)); err != nil {
		t.Fatal(err)
	}
	if got := m.Sockets(); len(got) != 3 || got[":"+strconv.Itoa(lo)] != sock {
		t.Errorf("after the reload to a range: sockets %v", got)
	}
	checkPorts(t, "127.0.0.1", lo, lo+2)
}
