//go:build linux

package e2e_test

// End-to-end tests of an l4 port range listener (`listen:
// "127.0.0.1:LO-HI"`) through the real binary, with connection steering
// (one socket, an sk_lookup program; needs root) and with its userspace
// twin (one socket per port): a reload turns a single port into the
// range without cutting its connection, every port of the range reaches the
// backend, a connection opened before `rustygate upgrade` keeps working
// while no new connection is refused during the upgrade, every port works
// after it, and once the gateway stops no steering pin or link is left.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/rustygate/rustygate/internal/testnet"
	"github.com/rustygate/rustygate/loader"
)

// rangePorts is the size of the tested range.
const rangePorts = 50

// freePortRange returns the first of n free consecutive ports at
// 127.0.0.1.
func freePortRange(t *testing.T, n int) int {
	return testnet.FreePortRange(t, "127.0.0.1", n)
}

// rangeEcho dials 127.0.0.1:port and checks a round trip through the
// gateway to the echo backend.
func rangeEcho(port int) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "port " + strconv.Itoa(port)
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// checkRange checks every port of the range.
func checkRange(t *testing.T, lo int) {
	t.Helper()
	for p := lo; p < lo+rangePorts; p++ {
		if err := rangeEcho(p); err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
	}
}

// rangeLoad dials the ports of the range in turn until stopped and counts
// the connections that fail.
type rangeLoad struct {
	stopc    chan struct{}
	done     chan struct{}
	ok, bad  atomic.Int64
	mu       sync.Mutex
	failures []string
}

func startRangeLoad(t *testing.T, lo int) *rangeLoad {
	l := &rangeLoad{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopc:
				return
			default:
			}
			p := lo + i%rangePorts
			if err := rangeEcho(p); err != nil {
				l.bad.Add(1)
				l.mu.Lock()
				if len(l.failures) < 10 {
					l.failures = append(l.failures, fmt.Sprintf("port %d: %v", p, err))
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *rangeLoad) stop() {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	<-l.done
}

func (l *rangeLoad) check(t *testing.T) {
	t.Helper()
	l.stop()
	t.Logf("connections during the upgrade: %d proxied, %d failed", l.ok.Load(), l.bad.Load())
	if l.bad.Load() > 0 {
		t.Errorf("%d connections failed during the upgrade: %v", l.bad.Load(), l.failures)
	}
	if l.ok.Load() < 20 {
		t.Errorf("only %d connections during the upgrade", l.ok.Load())
	}
}

// steeringLinks returns the links of the steering programs pinned under
// bpffs.
func steeringLinks(t *testing.T, bpffs string) []link.ID {
	t.Helper()
	st, err := loader.ReadStatus(bpffs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []link.ID
	for _, s := range st.Steering {
		if s.Program != nil {
			for _, a := range s.Program.Attached {
				ids = append(ids, link.ID(a.LinkID))
			}
		}
	}
	return ids
}

func TestL4PortRange(t *testing.T) {
	t.Run("steering", func(t *testing.T) { testL4PortRange(t, true) })
	t.Run("userspace", func(t *testing.T) { testL4PortRange(t, false) })
}

func testL4PortRange(t *testing.T, steer bool) {
	mode, want := "userspace", "userspace"
	if steer {
		if os.Geteuid() != 0 {
			if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
				t.Fatal("RUSTYGATE_REQUIRE_BPF=1, but connection steering needs root")
			}
			t.Skip("connection steering needs sk_lookup programs (root)")
		}
		mode, want = "auto", "kernel"
	}
	bpffs := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-e2e-range-%d", os.Getpid()))
	// Registered first, so it runs after the gateways are stopped.
	t.Cleanup(func() { os.RemoveAll(bpffs) })
	echo := l4EchoBackend(t, "")
	lo := freePortRange(t, rangePorts)
	listen := fmt.Sprintf("127.0.0.1:%d-%d", lo, lo+rangePorts-1)
	cfg := func(version, addr string) hrCfg {
		extra := fmt.Sprintf("datapath:\n  mode: %s\n  bpffs: %q\nl4:\n  - name: games\n    listen: %q\n    backends:\n      - addr: %q\n",
			mode, bpffs, addr, echo.addr())
		return hrCfg{engine: hrEngine, version: version, routes: "  []\n", extra: extra}
	}
	isStarted := func(l map[string]any) bool { return l["msg"] == "l4 listener started" && l["listener"] == "games" }

	// First one port, then a reload turns it into the range.
	path := hrConfigFile(t, cfg("1", "127.0.0.1:"+strconv.Itoa(lo)))
	p := hrStart(t, path)
	p.killUpgradedLater(t)
	p.waitLine(t, 0, 3*time.Second, "l4 listener started games", isStarted)
	first := dialRaw(t, "127.0.0.1:"+strconv.Itoa(lo), 30*time.Second)
	l4RoundTrip(t, first, "before the reload")
	from := p.lineCount()
	hrWrite(t, path, cfg("2", listen).yaml())
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("SIGHUP reload to the range: %v", l)
	}
	started := p.waitLine(t, from, 3*time.Second, "l4 listener started games (the range)", isStarted)
	l4RoundTrip(t, first, "after the reload")
	first.Close()
	if started["steering"] != want {
		if steer && os.Getenv("RUSTYGATE_REQUIRE_BPF") != "1" {
			t.Skipf("connection steering unavailable here: %v", started)
		}
		t.Fatalf("started line %v: want steering %s", started, want)
	}
	ports, err := listeningPorts(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	inRange := slices.DeleteFunc(slices.Clone(ports), func(port int) bool { return port < lo || port >= lo+rangePorts })
	slices.Sort(inRange)
	wantSockets := rangePorts
	if steer {
		wantSockets = 1
	}
	if len(inRange) != wantSockets || inRange[0] != lo || hrInt(started["sockets"]) != wantSockets {
		t.Errorf("listening sockets in the range: %v (logged %v), want %d from port %d", inRange, started["sockets"], wantSockets, lo)
	}
	checkRange(t, lo)
	var oldLinks []link.ID
	if steer {
		if oldLinks = steeringLinks(t, bpffs); len(oldLinks) != 1 {
			t.Fatalf("steering links %v, want one", oldLinks)
		}
	}

	// Upgrade, with a connection open and new ones arriving all along.
	kept := dialRaw(t, "127.0.0.1:"+strconv.Itoa(lo+17), 30*time.Second)
	l4RoundTrip(t, kept, "before the upgrade")
	load := startRangeLoad(t, lo)
	time.Sleep(200 * time.Millisecond)
	from = p.lineCount()
	out, err := exec.Command(gatewayBin, "upgrade", "-p", strconv.Itoa(p.pid)).CombinedOutput()
	if err != nil {
		t.Fatalf("rustygate upgrade -p %d: %v: %s", p.pid, err, out)
	}
	l := p.waitLine(t, from, 15*time.Second, "binary upgrade: new process serving", func(l map[string]any) bool {
		return l["msg"] == "binary upgrade: new process serving; draining this one"
	})
	newPid := hrInt(l["new_pid"])
	time.Sleep(300 * time.Millisecond)
	load.check(t)
	l4RoundTrip(t, kept, "after the upgrade")
	kept.Close()
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("old process exit code %d, want 0", code)
	}
	restarted := p.waitLine(t, from, time.Second, "l4 listener started games (new process)", isStarted)
	if restarted["steering"] != want {
		t.Errorf("the new process serves the range with steering %v, want %s", restarted["steering"], want)
	}
	if ports, err := listeningPorts(newPid); err != nil || !slices.Contains(ports, lo) {
		t.Errorf("the new process listens on %v (%v), want port %d among them", ports, err, lo)
	}
	checkRange(t, lo)
	var newLinks []link.ID
	if steer {
		// The old process's exit left the pins to the new one.
		mapPin := filepath.Join(loader.SteerPinDir(bpffs, "games"), loader.SteerMapName)
		if _, err := os.Stat(mapPin); err != nil {
			t.Errorf("the old process's exit removed the SOCKMAP pin the new one uses: %v", err)
		}
		newLinks = steeringLinks(t, bpffs)
		if len(newLinks) != 1 || newLinks[0] == oldLinks[0] {
			t.Errorf("steering links after the upgrade %v, want the new process's own (the old one's was %v)", newLinks, oldLinks)
		}
	}

	// Stopping the new process leaves nothing behind.
	if err := syscall.Kill(newPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !hrWaitGone(newPid, 10*time.Second) {
		t.Fatalf("the new process %d did not exit", newPid)
	}
	if _, err := os.Stat(filepath.Join(bpffs, loader.SteerSubdir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("steering pins left under %s after the gateway stopped (%v)", bpffs, err)
	}
	for _, id := range append(oldLinks, newLinks...) {
		if lk, err := link.NewFromID(id); err == nil {
			lk.Close()
			t.Errorf("sk_lookup link %d still attached after the gateway stopped", id)
		}
	}
	if err := rangeEcho(lo + 3); err == nil {
		t.Errorf("port %d still answers after the gateway stopped", lo+3)
	}
}
