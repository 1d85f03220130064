//go:build linux

package l4

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

// steerDir returns a bpffs directory of the test's own, removed at
// cleanup; it skips without root (fails with RUSTYGATE_REQUIRE_BPF=1).
func steerDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
			t.Fatal("RUSTYGATE_REQUIRE_BPF=1, but connection steering needs root")
		}
		t.Skip("connection steering needs sk_lookup programs (root)")
	}
	dir := filepath.Join("/sys/fs/bpf", "rg-l4-steer-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// applySteered applies ls with datapath mode kernel, skipping (failing
// with RUSTYGATE_REQUIRE_BPF=1) when the steering cannot load here.
func applySteered(t *testing.T, m *Manager, ls ...config.L4Listener) {
	t.Helper()
	if err := m.Apply(l4Configs(ls...)); err != nil {
		if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
			t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but: %v", err)
		}
		t.Skipf("connection steering unavailable: %v", err)
	}
}

func shutdown(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func pinned(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestPortRangeSteered: with steering, one socket serves every port of the
// range; a reload widening the range keeps that socket and the
// connections; a second manager (a binary upgrade's new process) handed
// the socket takes the pinned map over, the first one's shutdown leaves
// it, and the last shutdown removes every pin.
func TestPortRangeSteered(t *testing.T) {
	dir := steerDir(t)
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 60)
	cfg := rangeCfg("r", "127.0.0.1", lo, lo+49, be)
	m, logs := startRangeManager(t, config.DatapathKernel, dir, noMPTCPListen)
	applySteered(t, m, cfg)

	checkPorts(t, "127.0.0.1", lo, lo+49)
	socks := m.Sockets()
	sock := socks["127.0.0.1:"+strconv.Itoa(lo)]
	if len(socks) != 1 || sock == nil {
		t.Fatalf("sockets %v: want one, on the range's first port", socks)
	}
	if l := startedLine(t, logs, "r"); l["steering"] != steeringKernel || l["sockets"] != float64(1) {
		t.Errorf("started line %v: want steering kernel on one socket", l)
	}
	mapPin := filepath.Join(loader.SteerPinDir(dir, "r"), loader.SteerMapName)
	if !pinned(mapPin) {
		t.Fatalf("no pinned SOCKMAP at %s", mapPin)
	}
	kept := echoOn(t, "127.0.0.1", lo+33)

	// Widen the range: the same socket, a new program on the same map.
	cfg = rangeCfg("r", "127.0.0.1", lo, lo+59, be)
	if err := m.Apply(l4Configs(cfg)); err != nil {
		t.Fatal(err)
	}
	checkPorts(t, "127.0.0.1", lo, lo+59)
	if socks := m.Sockets(); len(socks) != 1 || socks["127.0.0.1:"+strconv.Itoa(lo)] != sock {
		t.Errorf("sockets after widening the range: %v, want the first one kept", socks)
	}
	roundTrip(t, kept, "after the reload")

	// The upgrade's new process inherits the socket (a dup of it here).
	inherit := func(addr string) (net.Listener, error) {
		ln := m.Sockets()[addr]
		if ln == nil {
			return nil, errors.New("not handed over: " + addr)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return net.FileListener(f)
	}
	m2, _ := startRangeManager(t, config.DatapathKernel, dir, inherit)
	applySteered(t, m2, cfg)
	kept.Close()
	shutdown(t, m)
	if !pinned(mapPin) {
		t.Fatal("the old manager's shutdown removed the pins the new one uses")
	}
	checkPorts(t, "127.0.0.1", lo, lo+59)

	shutdown(t, m2)
	if pinned(mapPin) || pinned(dir) {
		t.Errorf("pins left after the last shutdown: %s exists: %v", dir, pinned(dir))
	}
	for _, p := range []int{lo, lo + 1, lo + 59} {
		refused(t, "127.0.0.1", p)
	}
}

// TestPortRangeSteeredWildcard: a range on every address is steered for
// both families to one dual-stack socket.
func TestPortRangeSteeredWildcard(t *testing.T) {
	dir := steerDir(t)
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 10)
	m, _ := startRangeManager(t, config.DatapathKernel, dir, noMPTCPListen)
	applySteered(t, m, rangeCfg("w", "", lo, lo+9, be))
	if n := len(m.Sockets()); n != 1 {
		t.Errorf("%d sockets, want one", n)
	}
	checkPorts(t, "127.0.0.1", lo, lo+9)
	checkPorts(t, "::1", lo, lo+9)
}

// TestPortRangeSteeringFallsBack: in mode auto a range whose steering
// cannot load (here: its socket is Multipath TCP, which a SOCKMAP refuses)
// gets one socket per port, and says why.
func TestPortRangeSteeringFallsBack(t *testing.T) {
	dir := steerDir(t)
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 5)
	mptcp := func(addr string) (net.Listener, error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		return lc.Listen(context.Background(), "tcp", addr)
	}
	m, logs := startRangeManager(t, config.DatapathAuto, dir, mptcp, rangeCfg("f", "127.0.0.1", lo, lo+4, be))
	checkPorts(t, "127.0.0.1", lo, lo+4)
	l := startedLine(t, logs, "f")
	if l["steering"] != steeringUserspace {
		t.Skipf("the kernel steered an MPTCP listener (%v): nothing to fall back from", l)
	}
	if n := len(m.Sockets()); n != 5 {
		t.Errorf("%d sockets, want one per port", n)
	}
	if w := logs.lines("l4: connection steering unavailable; port range listeners use one socket per port"); len(w) != 1 {
		t.Errorf("want one warning saying why, got %v", w)
	}
	if pinned(loader.SteerPinDir(dir, "f")) {
		t.Errorf("the failed steering left %s", loader.SteerPinDir(dir, "f"))
	}
}

// TestPortRangeSteeredFailedReload: a reload that fails after the range's
// new steering took over the shared SOCKMAP (another listener cannot
// open) leaves the running steering serving the whole range.
func TestPortRangeSteeredFailedReload(t *testing.T) {
	dir := steerDir(t)
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 21)
	m, _ := startRangeManager(t, config.DatapathKernel, dir, noMPTCPListen)
	cfg := rangeCfg("r", "127.0.0.1", lo, lo+9, be)
	applySteered(t, m, cfg)
	taken, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lo+20))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	blocked := l4cfg("blocked", be)
	blocked.Listen = taken.Addr().String()
	// The moved range needs a socket of its own, on lo+1.
	if err := m.Apply(l4Configs(rangeCfg("r", "127.0.0.1", lo+1, lo+19, be), blocked)); err == nil {
		t.Fatal("Apply succeeded with a listener on a taken port")
	}
	checkPorts(t, "127.0.0.1", lo, lo+9)
	refused(t, "127.0.0.1", lo+15)

	// Without the blocked listener the moved range applies.
	if err := m.Apply(l4Configs(rangeCfg("r", "127.0.0.1", lo+1, lo+19, be))); err != nil {
		t.Fatal(err)
	}
	checkPorts(t, "127.0.0.1", lo+1, lo+19)
	refused(t, "127.0.0.1", lo)
	if socks := m.Sockets(); len(socks) != 1 || socks["127.0.0.1:"+strconv.Itoa(lo+1)] == nil {
		t.Errorf("sockets %v, want one on port %d", socks, lo+1)
	}
}

// TestPortRangeSteeredKeepsPort: a steered connection keeps the port the
// client dialled, as the PROXY protocol header shows the backend.
func TestPortRangeSteeredKeepsPort(t *testing.T) {
	dir := steerDir(t)
	be := tcpBackend(t, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, line)
	})
	lo := freePortRange(t, "127.0.0.1", 10)
	cfg := rangeCfg("pp", "127.0.0.1", lo, lo+9, be)
	cfg.ProxyProtocol = "v1"
	m, _ := startRangeManager(t, config.DatapathKernel, dir, noMPTCPListen)
	applySteered(t, m, cfg)
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lo+7), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if want := " " + strconv.Itoa(lo+7) + "\r\n"; err != nil || !strings.HasSuffix(line, want) {
		t.Fatalf("PROXY header %q (%v): want the destination port %d", line, err, lo+7)
	}
}

// TestPortRangeAutoWithoutPrivileges: unprivileged, mode auto serves a
// range with one socket per port and says why (as root the steering
// loads; TestPortRangeSteeringFallsBack covers the fallback there).
func TestPortRangeAutoWithoutPrivileges(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs unprivileged: as root the steering loads")
	}
	be := tcpBackend(t, echo)
	lo := freePortRange(t, "127.0.0.1", 5)
	dir := filepath.Join(t.TempDir(), "bpffs")
	m, logs := startRangeManager(t, config.DatapathAuto, dir, noMPTCPListen, rangeCfg("u", "127.0.0.1", lo, lo+4, be))
	checkPorts(t, "127.0.0.1", lo, lo+4)
	if n := len(m.Sockets()); n != 5 {
		t.Errorf("%d sockets, want one per port", n)
	}
	if l := startedLine(t, logs, "u"); l["steering"] != steeringUserspace || l["steering_reason"] != loader.ReasonNoPrivileges {
		t.Errorf("started line %v: want steering userspace, reason %s", l, loader.ReasonNoPrivileges)
	}
}
