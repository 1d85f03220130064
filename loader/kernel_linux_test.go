//go:build linux

package loader

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/bpf"
	"github.com/rustygate/rustygate/config"
)

// Client address roles in the scenarios (index into clientIP).
const (
	srcLimitedA = 0
	srcLimitedB = 1
	srcOther    = 2
	srcDenied   = 3
	srcAllowed  = 4
	srcBanned   = 5
	srcUnbanned = 6
	clients     = 7
)

// limiterConfig is the policy every scenario runs under: 1 new connection
// per second per source with a burst of 3, on the listening port.
func limiterConfig(mode, dir string) config.Datapath {
	return config.Datapath{
		Mode:       mode,
		BPFFS:      dir,
		Interfaces: []string{serverIf},
		KernelRateLimit: config.KernelRateLimit{
			Rate: 1, Burst: 3, Ports: []string{config.PortsAuto}, MaxSources: 1024,
			Allow: []string{clientIP(4, srcAllowed).String(), clientIP(6, srcAllowed).String() + "/128"},
			Deny:  []string{clientIP(4, srcDenied).String() + "/32", clientIP(6, srcDenied).String()},
		},
		Bans: config.Bans{Duration: config.Duration(10 * time.Minute)},
	}
}

// newDatapath builds a datapath in the server namespace, closed in
// t.Cleanup.
func (n *testNet) newDatapath(cfg config.Datapath, ports []int) *Datapath {
	n.t.Helper()
	dp, err := n.tryDatapath(cfg, ports)
	if err != nil {
		n.t.Fatalf("New: %v", err)
	}
	return dp
}

func (n *testNet) tryDatapath(cfg config.Datapath, ports []int) (*Datapath, error) {
	var dp *Datapath
	var err error
	n.in(n.server, func() error {
		dp, err = New(cfg, ports, testLogger(n.t))
		return nil
	})
	if err == nil {
		n.t.Cleanup(func() {
			if err := dp.Close(); err != nil {
				n.t.Errorf("Close: %v", err)
			}
		})
	}
	return dp, err
}

func counters(t *testing.T, dp *Datapath) Counters {
	t.Helper()
	c, err := dp.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sub(a, b Counters) Counters {
	return Counters{Passed: a.Passed - b.Passed, Limited: a.Limited - b.Limited, Denied: a.Denied - b.Denied, Banned: a.Banned - b.Banned}
}

// TestLimiter runs the same scenarios against the kernel datapath and the
// userspace twin: clients see the same results in both modes, and in
// kernel mode the server never accepts what the limiter drops.
func TestLimiter(t *testing.T) {
	requireBPF(t)
	for _, mode := range []string{ModeKernel, ModeUserspace} {
		t.Run(mode, func(t *testing.T) { limiterScenarios(t, mode) })
	}
}

func limiterScenarios(t *testing.T, mode string) {
	n := newTestNet(t, clients)
	dp := n.newDatapath(limiterConfig(mode, bpffsDir(t)), []int{serverPort})
	if dp.Mode() != mode {
		t.Fatalf("Mode = %s (%s: %s), want %s", dp.Mode(), dp.Reason(), dp.Detail(), mode)
	}
	srv := n.serve(serverPort, dp.WrapListener)
	other := n.serve(otherPort, dp.WrapListener)

	// step runs one scenario and reports the counters and accepts it caused.
	step := func(name string, fn func(t *testing.T), check func(t *testing.T, c Counters, accepted int64)) {
		t.Run(name, func(t *testing.T) {
			before, acc := counters(t, dp), srv.accepted.Load()
			fn(t)
			check(t, sub(counters(t, dp), before), srv.accepted.Load()-acc)
		})
	}

	step("burst passes and the rest is dropped", func(t *testing.T) {
		for _, src := range []netip.Addr{clientIP(4, srcLimitedA), clientIP(4, srcLimitedB), clientIP(6, srcLimitedA)} {
			for i := range 3 {
				if !n.try(src, serverPort) {
					t.Errorf("%s: attempt %d within the burst failed", src, i+1)
				}
			}
			if got := n.tryMany(src, serverPort, 3); got != 0 {
				t.Errorf("%s: %d of 3 attempts over the limit got through", src, got)
			}
		}
	}, func(t *testing.T, c Counters, accepted int64) {
		if accepted != 9 {
			t.Errorf("server accepted %d connections, want 9 (3 sources x burst 3)", accepted)
		}
		if c.Passed != 9 || c.Limited < 9 || c.Denied != 0 || c.Banned != 0 {
			t.Errorf("counters moved by %+v, want 9 passed and at least 9 limited", c)
		}
	})

	t.Run("other ports are not guarded", func(t *testing.T) {
		acc := other.accepted.Load()
		for i := range 5 {
			if !n.try(clientIP(4, srcLimitedA), otherPort) {
				t.Errorf("attempt %d to port %d failed", i+1, otherPort)
			}
		}
		if got := other.accepted.Load() - acc; got != 5 {
			t.Errorf("other server accepted %d, want 5", got)
		}
	})

	step("deny-listed sources cannot connect", func(t *testing.T) {
		for _, src := range []netip.Addr{clientIP(4, srcDenied), clientIP(6, srcDenied)} {
			if n.try(src, serverPort) {
				t.Errorf("%s got through", src)
			}
		}
	}, func(t *testing.T, c Counters, accepted int64) {
		if accepted != 0 || c.Denied < 2 || c.Passed != 0 {
			t.Errorf("accepted %d, counters moved by %+v; want none accepted, at least 2 denied", accepted, c)
		}
	})

	step("allow-listed sources are never limited", func(t *testing.T) {
		for _, src := range []netip.Addr{clientIP(4, srcAllowed), clientIP(6, srcAllowed)} {
			for i := range 8 {
				if !n.try(src, serverPort) {
					t.Errorf("%s: attempt %d failed", src, i+1)
				}
			}
		}
	}, func(t *testing.T, c Counters, accepted int64) {
		if accepted != 16 || c.Passed != 16 || c.Limited != 0 {
			t.Errorf("accepted %d, counters moved by %+v; want 16 passed", accepted, c)
		}
	})

	step("a ban takes effect at once and expires on time", func(t *testing.T) {
		src := clientIP(4, srcBanned)
		if !n.try(src, serverPort) {
			t.Fatalf("%s failed before the ban", src)
		}
		const ttl = 1500 * time.Millisecond
		start := time.Now()
		if err := dp.Ban(src, ttl); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("Ban took %v", took)
		}
		// The next SYN, sent right away, meets the ban.
		if n.try(src, serverPort) {
			t.Errorf("%s got through right after the ban", src)
		}
		var until time.Time
		for _, b := range dp.Bans() {
			if b.IP == src {
				until = b.Until
			}
		}
		if until.Before(start.Add(ttl-50*time.Millisecond)) || until.After(time.Now().Add(ttl+50*time.Millisecond)) {
			t.Fatalf("Bans() = %v, want %s until about %v", dp.Bans(), src, start.Add(ttl))
		}
		time.Sleep(time.Until(until.Add(-300 * time.Millisecond)))
		if n.try(src, serverPort) {
			t.Errorf("%s got through 300ms before the ban ends", src)
		}
		time.Sleep(time.Until(until.Add(100 * time.Millisecond)))
		if !n.try(src, serverPort) {
			t.Errorf("%s still blocked 100ms after the ban ended", src)
		}
		for _, b := range dp.Bans() {
			if b.IP == src {
				t.Errorf("Bans() still lists %v", b)
			}
		}
	}, func(t *testing.T, c Counters, accepted int64) {
		if accepted != 2 || c.Banned < 2 || c.Passed != 2 {
			t.Errorf("accepted %d, counters moved by %+v; want 2 accepted, at least 2 banned", accepted, c)
		}
	})

	step("unban lifts a ban", func(t *testing.T) {
		src := clientIP(6, srcUnbanned)
		if err := dp.Ban(src, 0); err != nil { // 0: datapath.bans.duration
			t.Fatal(err)
		}
		bans := dp.Bans()
		if len(bans) != 1 || bans[0].IP != src || time.Until(bans[0].Until) < 9*time.Minute {
			t.Fatalf("Bans() = %v, want %s for 10m", bans, src)
		}
		if n.try(src, serverPort) {
			t.Errorf("banned %s got through", src)
		}
		if err := dp.Unban(src); err != nil {
			t.Fatal(err)
		}
		if !n.try(src, serverPort) {
			t.Errorf("unbanned %s cannot connect", src)
		}
		if err := dp.Unban(src); err != nil {
			t.Errorf("second Unban: %v", err)
		}
		if bans := dp.Bans(); len(bans) != 0 {
			t.Errorf("Bans() = %v, want none", bans)
		}
	}, func(t *testing.T, c Counters, accepted int64) {
		if accepted != 1 || c.Banned < 1 {
			t.Errorf("accepted %d, counters moved by %+v", accepted, c)
		}
	})
}

// attached reports how anything is attached to the server veth: XDP (via
// netlink) and TCX ingress programs.
func (n *testNet) attached(ifname string) (xdp bool, tcx int) {
	n.t.Helper()
	n.in(n.server, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		xdp = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported) {
			return nil // no TCX before Linux 6.6: nothing can be attached there
		}
		if err != nil {
			return err
		}
		tcx = len(res.Programs)
		return nil
	})
	return xdp, tcx
}

// assertGone checks that nothing of dp stays in the kernel: no link on the
// veth, no pin, and its programs freed.
func assertGone(t *testing.T, n *testNet, dir string, progs map[string]ebpf.ProgramID) {
	t.Helper()
	if xdp, tcx := n.attached(serverIf); xdp || tcx != 0 {
		t.Errorf("after Close: xdp attached %v, %d tcx programs", xdp, tcx)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("after Close: %s still exists (%v, %d entries)", dir, err, len(entries))
	}
	deadline := time.Now().Add(3 * time.Second)
	for name, id := range progs {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				t.Errorf("after Close: program %s (id %d) still loaded", name, id)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestKernelAttachModes checks each way of attaching (native and generic
// XDP, TCX) limits, and that Close leaves nothing behind.
func TestKernelAttachModes(t *testing.T) {
	requireBPF(t)
	for _, how := range []string{attachXDPNative, attachXDPGeneric, attachTCX} {
		t.Run(strings.ReplaceAll(how, "/", "_"), func(t *testing.T) {
			saved := attachModes
			attachModes = []string{how}
			t.Cleanup(func() { attachModes = saved })

			n := newTestNet(t, 1)
			dir := bpffsDir(t)
			dp, err := n.tryDatapath(limiterConfig(config.DatapathKernel, dir), []int{serverPort})
			if how == attachTCX && errors.Is(err, ebpf.ErrNotSupported) {
				t.Skipf("this kernel has no TCX (Linux 6.6+): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dp.kern.links[serverIf].how; got != how {
				t.Fatalf("attached as %s, want %s", got, how)
			}
			if xdp, tcx := n.attached(serverIf); xdp != (how != attachTCX) || tcx != btoi(how == attachTCX) {
				t.Errorf("xdp attached %v, %d tcx programs", xdp, tcx)
			}
			srv := n.serve(serverPort, dp.WrapListener)
			src := clientIP(4, 0)
			for i := range 3 {
				if !n.try(src, serverPort) {
					t.Errorf("attempt %d within the burst failed", i+1)
				}
			}
			if n.try(src, serverPort) {
				t.Error("attempt over the limit got through")
			}
			if c := counters(t, dp); srv.accepted.Load() != 3 || c.Passed != 3 || c.Limited < 1 {
				t.Errorf("accepted %d, counters %+v", srv.accepted.Load(), c)
			}

			progs := dp.kern.progID
			if err := dp.Close(); err != nil {
				t.Fatal(err)
			}
			assertGone(t, n, dir, progs)
			// Nothing filters any more.
			if !n.try(src, serverPort) {
				t.Error("connection failed after Close")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestKernelPinsAndPersist checks the pinned objects, and that persist
// keeps the maps (and so the bans) across a restart while the programs go.
func TestKernelPinsAndPersist(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 2)
	dir := bpffsDir(t)
	cfg := limiterConfig(config.DatapathKernel, dir)
	cfg.Persist = true
	dp := n.newDatapath(cfg, []int{serverPort})
	for _, name := range append(append([]string(nil), mapNames...), progNames...) {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("pin %s: %v", name, err)
		}
	}
	banned := clientIP(4, 0)
	if err := dp.Ban(banned, time.Hour); err != nil {
		t.Fatal(err)
	}
	progs := dp.kern.progID
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	if xdp, tcx := n.attached(serverIf); xdp || tcx != 0 {
		t.Errorf("after Close: xdp %v, tcx %d", xdp, tcx)
	}
	for _, name := range mapNames {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("persisted map %s: %v", name, err)
		}
	}
	for _, name := range progNames {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("program pin %s survived Close (%v)", name, err)
		}
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.LimiterMapRgBans), nil)
	if err != nil {
		t.Fatal(err)
	}
	var until uint64
	if err := m.Lookup(addrKey(banned), &until); err != nil {
		t.Errorf("persisted ban: %v", err)
	}
	m.Close()

	// A restart picks the maps up: the ban holds. A changed max_sources
	// replaces that one map.
	cfg.Persist = false
	cfg.KernelRateLimit.MaxSources = 2048
	dp = n.newDatapath(cfg, []int{serverPort})
	if bans := dp.Bans(); len(bans) != 1 || bans[0].IP != banned {
		t.Errorf("Bans() after restart = %v, want %s", bans, banned)
	}
	n.serve(serverPort, dp.WrapListener)
	if n.try(banned, serverPort) {
		t.Error("banned source got through after restart")
	}
	if !n.try(clientIP(4, 1), serverPort) {
		t.Error("other source cannot connect")
	}
	progs2 := dp.kern.progID
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n, dir, progs)
	assertGone(t, n, dir, progs2)
}

// TestKernelUpdate checks a reload changes the maps and interfaces in
// place, keeping buckets and bans.
func TestKernelUpdate(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, clients)
	dir := bpffsDir(t)
	cfg := limiterConfig(config.DatapathKernel, dir)
	cfg.KernelRateLimit.Deny = nil
	dp := n.newDatapath(cfg, []int{serverPort})
	n.serve(serverPort, dp.WrapListener)
	n.serve(otherPort, dp.WrapListener)

	src := clientIP(4, srcDenied)
	if !n.try(src, serverPort) {
		t.Fatal("not yet denied source failed")
	}
	if err := dp.Ban(clientIP(4, 2), time.Hour); err != nil {
		t.Fatal(err)
	}

	// Deny it, guard the other port instead, and attach to lo as well.
	cfg.KernelRateLimit.Deny = []string{"10.77.1.12/30"}
	cfg.KernelRateLimit.Ports = []string{"9090"}
	cfg.Interfaces = []string{serverIf, "lo"}
	if err := dp.Update(cfg, []int{serverPort}); err != nil {
		t.Fatal(err)
	}
	if n.try(src, otherPort) {
		t.Error("newly denied source got through to the newly guarded port")
	}
	limited := clientIP(4, 1)
	for i := range 5 {
		if !n.try(limited, serverPort) {
			t.Errorf("attempt %d to the no longer guarded port failed", i+1)
		}
	}
	if got := dp.kern.describe(); got != "lo (xdp/generic), rgs0 (xdp/native)" {
		t.Errorf("attached to %s", got)
	}
	if bans := dp.Bans(); len(bans) != 1 {
		t.Errorf("Update lost the bans: %v", bans)
	}

	// Back to one interface: lo is detached.
	cfg.Interfaces = []string{serverIf}
	if err := dp.Update(cfg, []int{serverPort}); err != nil {
		t.Fatal(err)
	}
	if xdp, _ := n.attached("lo"); xdp {
		t.Error("lo still has the XDP program")
	}

	// A bad config changes nothing.
	bad := cfg
	bad.KernelRateLimit.Allow = []string{"10.0.0.0/33"}
	if err := dp.Update(bad, []int{serverPort}); err == nil || !strings.Contains(err.Error(), "allow[0]") {
		t.Errorf("Update(bad) = %v", err)
	}
	cfg.Interfaces = []string{"nope0"}
	if err := dp.Update(cfg, []int{serverPort}); err == nil || !strings.Contains(err.Error(), `no interface "nope0"`) {
		t.Errorf("Update(missing interface) = %v", err)
	}
	if n.try(src, otherPort) {
		t.Error("denied source got through after a failed update")
	}
}

// TestKernelTakeover checks the handover between two processes during an
// upgrade: the newcomer swaps its program into the running link, the old
// one's Close leaves the link and pins alone.
func TestKernelTakeover(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 2)
	dir := bpffsDir(t)
	cfg := limiterConfig(config.DatapathKernel, dir)
	old, err := n.tryDatapath(cfg, []int{serverPort})
	if err != nil {
		t.Fatal(err)
	}
	src := clientIP(4, 0)
	if err := old.Ban(src, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A gateway started on its own does not take the links: attaching
	// while the interface's XDP slot is taken fails.
	other := cfg
	other.BPFFS = cfg.BPFFS + "-other"
	if stranger, err := n.tryDatapath(other, []int{serverPort}); err == nil {
		if got := stranger.kern.links[serverIf].how; got == attachXDPNative+" (taken over)" {
			t.Errorf("a gateway that is not an upgrade took the links over")
		}
		stranger.Close()
	}
	up := cfg
	up.Upgrade = true
	next := n.newDatapath(up, []int{serverPort})
	if got := next.kern.links[serverIf].how; got != attachXDPNative+" (taken over)" {
		t.Errorf("newcomer attached as %q", got)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if xdp, tcx := n.attached(serverIf); !xdp || tcx != 0 {
		t.Errorf("after the old process closed: xdp %v, tcx %d", xdp, tcx)
	}
	n.serve(serverPort, next.WrapListener)
	if n.try(src, serverPort) {
		t.Error("ban lost in the handover")
	}
	if !n.try(clientIP(4, 1), serverPort) {
		t.Error("other source cannot connect")
	}
	progs := next.kern.progID
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n, dir, progs)
}

// TestKernelBadInterface checks a missing interface is a configuration
// error in kernel and auto mode, not a reason to fall back.
func TestKernelBadInterface(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 1)
	for _, mode := range []string{config.DatapathKernel, config.DatapathAuto} {
		dir := bpffsDir(t)
		cfg := limiterConfig(mode, dir)
		cfg.Interfaces = []string{serverIf, "nope0"}
		_, err := n.tryDatapath(cfg, []int{serverPort})
		if err == nil || err.Error() != `datapath.interfaces[1]: no interface "nope0"` {
			t.Errorf("%s: New = %v", mode, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s left behind", mode, dir)
		}
	}
	if xdp, tcx := n.attached(serverIf); xdp || tcx != 0 {
		t.Errorf("left attached: xdp %v, tcx %d", xdp, tcx)
	}
}

// TestKernelAllInterfaces checks that no interfaces configured means every
// interface that is up.
func TestKernelAllInterfaces(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 1)
	cfg := limiterConfig(config.DatapathAuto, bpffsDir(t))
	cfg.Interfaces = nil
	dp := n.newDatapath(cfg, []int{serverPort})
	if dp.Mode() != ModeKernel || dp.Reason() != ReasonAvailable {
		t.Fatalf("mode %s (%s)", dp.Mode(), dp.Reason())
	}
	if got := dp.kern.describe(); got != "lo (xdp/generic), rgs0 (xdp/native)" {
		t.Errorf("attached to %s", got)
	}
	// Loopback traffic inside the namespace is limited too.
	srv := n.serve(serverPort, dp.WrapListener)
	ok := 0
	n.in(n.server, func() error {
		for range 5 {
			if attempt(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddrPort("127.0.0.1:8080")) {
				ok++
			}
		}
		return nil
	})
	if ok != 3 || srv.accepted.Load() != 3 {
		t.Errorf("%d of 5 loopback attempts passed, server accepted %d; want 3 (the burst)", ok, srv.accepted.Load())
	}
}

// TestReadStatus checks what `rustygate bpf status` reports, from the
// gateway's namespace and from another one.
func TestReadStatus(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 1)
	dir := bpffsDir(t)
	st, err := ReadStatus(dir)
	if err != nil || st.Pinned || st.Mode != ModeUserspace {
		t.Errorf("before start: %+v, %v", st, err)
	}

	cfg := limiterConfig(config.DatapathKernel, dir)
	cfg.Interfaces = []string{serverIf, "lo"}
	dp := n.newDatapath(cfg, []int{serverPort})
	if err := dp.Ban(clientIP(4, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
	n.serve(serverPort, dp.WrapListener)
	n.try(clientIP(4, 0), serverPort)

	n.in(n.server, func() error {
		st, err = ReadStatus(dir)
		return err
	})
	if !st.Pinned || st.Mode != ModeKernel {
		t.Errorf("status = %+v", st)
	}
	var xdp *ProgramStatus
	for i, p := range st.Programs {
		if p.Name == bpf.LimiterProgRgXdpLimit {
			xdp = &st.Programs[i]
		}
	}
	if xdp == nil || xdp.Type != "XDP" || xdp.ID != uint32(dp.kern.progID[bpf.LimiterProgRgXdpLimit]) {
		t.Fatalf("programs = %+v", st.Programs)
	}
	var hooks []string
	for _, a := range xdp.Attached {
		hooks = append(hooks, a.Interface+" "+a.Hook)
	}
	if got := strings.Join(hooks, ", "); got != "lo xdp/generic, rgs0 xdp/native" {
		t.Errorf("xdp attached to %q", got)
	}
	entries := make(map[string]int)
	for _, m := range st.Maps {
		entries[m.Name] = m.Entries
	}
	want := map[string]int{"rg_allow": 2, "rg_deny": 2, "rg_bans": 1, "rg_ports": 1, "rg_settings": 1, "rg_sources": 0, "rg_counters": 1, "rg_quic_seen": 0}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("map entries = %v, want %v", entries, want)
	}
	if st.Counters == nil || st.Counters.Banned < 1 {
		t.Errorf("counters = %+v", st.Counters)
	}

	// From another namespace the ifindexes name nothing here: no name
	// rather than a wrong one.
	n.in(n.client, func() error {
		st, err = ReadStatus(dir)
		return err
	})
	for _, p := range st.Programs {
		for _, a := range p.Attached {
			if a.Interface != "" {
				t.Errorf("from the client namespace: %s attached to %q", p.Name, a.Interface)
			}
		}
	}
}

// kernelSettings reads the interval and tolerance in rg_settings and the
// guarded ports in rg_ports.
func kernelSettings(t *testing.T, dp *Datapath) (bpf.LimiterRgSettings, []uint16) {
	t.Helper()
	var s bpf.LimiterRgSettings
	if err := dp.kern.objs.RgSettings.Lookup(uint32(0), &s); err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	var port uint16
	var val uint8
	it := dp.kern.objs.RgPorts.Iterate()
	for it.Next(&port, &val) {
		ports = append(ports, port)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ports)
	return s, ports
}

// TestKernelChangeRevert: a prepared change writes nothing until Commit;
// Revert writes the previous rate, ports and interfaces back; a change
// prepared before another update committed is refused.
func TestKernelChangeRevert(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, 1)
	cfg := limiterConfig(config.DatapathKernel, bpffsDir(t))
	dp := n.newDatapath(cfg, []int{serverPort})
	s0, p0 := kernelSettings(t, dp)

	next := cfg
	next.KernelRateLimit.Rate, next.KernelRateLimit.Burst = 50, 100
	next.Interfaces = []string{serverIf, "lo"}
	c, err := dp.Prepare(next, []int{otherPort})
	if err != nil {
		t.Fatal(err)
	}
	if s, p := kernelSettings(t, dp); s != s0 || !slices.Equal(p, p0) {
		t.Fatalf("prepared, not committed: settings %+v ports %v, want %+v %v", s, p, s0, p0)
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if s, p := kernelSettings(t, dp); s.IntervalNs != uint64(20*time.Millisecond) || !slices.Equal(p, []uint16{otherPort}) {
		t.Fatalf("committed: settings %+v ports %v, want 20ms and [%d]", s, p, otherPort)
	}
	if xdp, _ := n.attached("lo"); !xdp {
		t.Fatal("committed: lo not attached")
	}
	if err := c.Revert(); err != nil {
		t.Fatal(err)
	}
	if s, p := kernelSettings(t, dp); s != s0 || !slices.Equal(p, p0) {
		t.Fatalf("reverted: settings %+v ports %v, want %+v %v", s, p, s0, p0)
	}
	if xdp, _ := n.attached("lo"); xdp {
		t.Error("reverted: lo still attached")
	}
	if err := c.Revert(); err != nil {
		t.Errorf("second Revert: %v", err)
	}

	missing := cfg
	missing.Interfaces = []string{"nope0"}
	if _, err := dp.Prepare(missing, []int{serverPort}); err == nil || !strings.Contains(err.Error(), `no interface "nope0"`) {
		t.Errorf("Prepare(missing interface) = %v", err)
	}
	stale, err := dp.Prepare(next, []int{otherPort})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Update(next, []int{serverPort}); err != nil {
		t.Fatal(err)
	}
	if err := stale.Commit(); !errors.Is(err, errStale) {
		t.Errorf("Commit of a change prepared before another update = %v, want %v", err, errStale)
	}
}
