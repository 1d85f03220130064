//go:build linux

package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/bpf"
	"github.com/rustygate/rustygate/config"
)

// kernel is a loaded and attached limiter: the programs of package bpf,
// their maps pinned under dir, and one link per interface.
type kernel struct {
	log     *slog.Logger
	dir     string
	persist bool
	// ns is the network namespace New ran in: the interfaces are looked
	// up and attached there, whichever thread later calls Update.
	ns     netns.NsHandle
	nl     *netlink.Handle
	objs   bpf.LimiterObjects
	progID map[string]ebpf.ProgramID // pinned program name -> our ID

	maxSources int
	// takeOverOK: this process is a binary upgrade, allowed to take the
	// links of the gateway it replaces. A gateway started on its own never
	// takes another's links.
	takeOverOK bool
	// createdDir is set when this datapath made its bpffs directory: a
	// failed start then removes whatever it pinned there.
	createdDir bool

	mu    sync.Mutex
	links map[string]*attachment // by interface name
}

// loadKernel probes, loads, pins and attaches the limiter. On failure it
// leaves nothing behind that it created.
func loadKernel(cfg config.Datapath, pol *policy, log *slog.Logger) (*kernel, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current network namespace: %w", err)
	}
	k := &kernel{
		log: log, dir: filepath.Clean(cfg.BPFFS), persist: cfg.Persist, ns: ns,
		maxSources: pol.maxSources, links: make(map[string]*attachment),
		takeOverOK: cfg.Upgrade,
	}
	if err := k.setUp(cfg, pol); err != nil {
		k.abort()
		return nil, err
	}
	return k, nil
}

func (k *kernel) setUp(cfg config.Datapath, pol *policy) error {
	// A handle made here, rather than with NewHandleAt, needs no setns:
	// New runs in the namespace it serves.
	var err error
	if k.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	ifaces, err := k.resolveInterfaces(cfg.Interfaces)
	if err != nil {
		return err
	}
	if err := probe(); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove the memlock limit: %w", err)
	}
	if _, err := os.Stat(k.dir); errors.Is(err, os.ErrNotExist) {
		k.createdDir = true
	}
	if err := ensureBPFFS(k.dir); err != nil {
		return err
	}
	if err := k.load(); err != nil {
		return err
	}
	if err := k.writePolicy(pol); err != nil {
		return err
	}
	for _, ifc := range ifaces {
		if err := k.attach(ifc); err != nil {
			return err
		}
	}
	return k.pinPrograms()
}

// probe checks that the kernel has what the limiter needs, so that an old
// kernel fails with ErrNotSupported rather than a verifier log.
func probe() error {
	for _, pt := range []ebpf.ProgramType{ebpf.XDP, ebpf.SchedCLS} {
		if err := features.HaveProgramType(pt); err != nil {
			return fmt.Errorf("probe %s programs: %w", pt, err)
		}
	}
	for _, mt := range []ebpf.MapType{ebpf.LRUHash, ebpf.LPMTrie, ebpf.PerCPUArray} {
		if err := features.HaveMapType(mt); err != nil {
			return fmt.Errorf("probe %s maps: %w", mt, err)
		}
	}
	if err := features.HaveProgramHelper(ebpf.XDP, asm.FnKtimeGetNs); err != nil {
		return fmt.Errorf("probe bpf_ktime_get_ns: %w", err)
	}
	return nil
}

// fallbackReason classifies why the kernel datapath did not load. EPERM
// comes before verifier errors (an unprivileged load is wrapped in one),
// EACCES after them (the verifier rejects with it).
func fallbackReason(err error) string {
	var verr *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.ENOSYS):
		return ReasonNoBPFSyscall
	case errors.Is(err, unix.EPERM):
		return ReasonNoPrivileges
	case errors.As(err, &verr):
		return ReasonVerifierRejected
	case errors.Is(err, os.ErrPermission):
		return ReasonNoPrivileges
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EOPNOTSUPP):
		return ReasonNotSupported
	}
	return ReasonLoadFailed
}

// load loads the collection with its maps pinned under k.dir, reusing the
// maps already pinned there (a restart with persist, or an upgrade). A
// pinned map whose definition changed (max_sources, a new program) is
// replaced by a fresh one, losing its state, with a warning.
func (k *kernel) load() error {
	spec, err := bpf.LoadLimiter()
	if err != nil {
		return err
	}
	spec.Maps[bpf.LimiterMapRgSources].MaxEntries = uint32(k.maxSources)
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: k.dir}}
	err = spec.LoadAndAssign(&k.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		for name, ms := range spec.Maps {
			path := filepath.Join(k.dir, name)
			m, perr := ebpf.LoadPinnedMap(path, nil)
			if perr != nil {
				continue
			}
			if ms.Compatible(m) != nil {
				k.log.Warn("datapath: pinned map does not match this build or config, starting it afresh", "map", path)
				_ = os.Remove(path)
			}
			m.Close()
		}
		err = spec.LoadAndAssign(&k.objs, opts)
	}
	if err != nil {
		return fmt.Errorf("load the limiter: %w", err)
	}
	k.progID = make(map[string]ebpf.ProgramID)
	for name, p := range k.programs() {
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
		id, _ := info.ID()
		k.progID[name] = id
	}
	return nil
}

// The pinned objects' names, as files under the bpffs directory.
var (
	progNames = []string{bpf.LimiterProgRgXdpLimit, bpf.LimiterProgRgTcLimit}
	mapNames  = []string{
		bpf.LimiterMapRgSources, bpf.LimiterMapRgBans, bpf.LimiterMapRgAllow, bpf.LimiterMapRgDeny,
		bpf.LimiterMapRgPorts, bpf.LimiterMapRgSettings, bpf.LimiterMapRgCounters, bpf.LimiterMapRgQuicSeen,
	}
)

func (k *kernel) programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		bpf.LimiterProgRgXdpLimit: k.objs.RgXdpLimit,
		bpf.LimiterProgRgTcLimit:  k.objs.RgTcLimit,
	}
}

// pinPrograms pins the programs next to the maps, replacing the pins of a
// previous process. The program pins mark which process owns the
// directory: Close removes pins only while they are still its own.
func (k *kernel) pinPrograms() error {
	for name, p := range k.programs() {
		path := filepath.Join(k.dir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace pin %s: %w", path, err)
		}
		if err := p.Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w", path, err)
		}
	}
	return nil
}

// ownsPins reports whether the programs pinned under k.dir are ours, or
// none are pinned at all.
func (k *kernel) ownsPins() bool {
	for _, name := range progNames {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(k.dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return false
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return false
		}
		pinned, _ := info.ID()
		if id, ok := k.progID[name]; !ok || pinned != id {
			return false
		}
	}
	return true
}

// writePolicy makes the maps say what pol says. New entries go in before
// stale ones go out, so a reload never opens a gap in the lists.
func (k *kernel) writePolicy(pol *policy) error {
	settings := bpf.LimiterRgSettings{IntervalNs: uint64(pol.interval), ToleranceNs: uint64(pol.tolerance)}
	if err := k.objs.RgSettings.Put(uint32(0), settings); err != nil {
		return fmt.Errorf("write %s: %w", bpf.LimiterMapRgSettings, err)
	}
	ports := make(map[uint16]bool, len(pol.ports))
	for p := range pol.ports {
		ports[p] = true
	}
	if err := syncSet(k.objs.RgPorts, ports); err != nil {
		return fmt.Errorf("write %s: %w", bpf.LimiterMapRgPorts, err)
	}
	for _, l := range []struct {
		m   *ebpf.Map
		set prefixSet
	}{{k.objs.RgAllow, pol.allow}, {k.objs.RgDeny, pol.deny}} {
		keys := make(map[bpf.LimiterRgLpmKey]bool, len(l.set.prefixes))
		for p := range l.set.prefixes {
			keys[lpmKey(p)] = true
		}
		if err := syncSet(l.m, keys); err != nil {
			return fmt.Errorf("write %s: %w", mapName(l.m), err)
		}
	}
	return nil
}

// syncSet makes the keys of m (values: a single byte) equal to want.
func syncSet[K comparable](m *ebpf.Map, want map[K]bool) error {
	have := make(map[K]bool)
	var key K
	var val uint8
	it := m.Iterate()
	for it.Next(&key, &val) {
		have[key] = true
	}
	if err := it.Err(); err != nil {
		return err
	}
	for key := range want {
		if !have[key] {
			if err := m.Put(key, uint8(1)); err != nil {
				return err
			}
		}
	}
	for key := range have {
		if !want[key] {
			if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
		}
	}
	return nil
}

func mapName(m *ebpf.Map) string {
	if info, err := m.Info(); err == nil {
		return info.Name
	}
	return "map"
}

// addrKey is the rg_sources/rg_bans key of a: IPv4 as IPv4-mapped IPv6.
func addrKey(a netip.Addr) bpf.LimiterRgAddr {
	return bpf.LimiterRgAddr{Addr: a.As16()}
}

func keyAddr(k bpf.LimiterRgAddr) netip.Addr {
	return netip.AddrFrom16(k.Addr).Unmap()
}

// lpmKey is the rg_allow/rg_deny key of p: the family byte and its
// padding (32 bits) then the address bits.
func lpmKey(p netip.Prefix) bpf.LimiterRgLpmKey {
	k := bpf.LimiterRgLpmKey{Prefixlen: uint32(32 + p.Bits())}
	if a := p.Addr(); a.Is4() {
		k.Family = 4
		b := a.As4()
		copy(k.Addr[:], b[:])
	} else {
		k.Family = 6
		k.Addr = a.As16()
	}
	return k
}

// ktimeNow is the clock of bpf_ktime_get_ns.
func ktimeNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

func (k *kernel) ban(a netip.Addr, ttl time.Duration) error {
	now, err := ktimeNow()
	if err != nil {
		return fmt.Errorf("ban %s: %w", a, err)
	}
	if err := k.objs.RgBans.Put(addrKey(a), uint64(now+ttl)); err != nil {
		return fmt.Errorf("ban %s: %w", a, err)
	}
	return nil
}

func (k *kernel) unban(a netip.Addr) error {
	err := k.objs.RgBans.Delete(addrKey(a))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unban %s: %w", a, err)
	}
	return nil
}

// listBans reads the bans in force from rg_bans.
func (k *kernel) listBans() ([]Ban, error) {
	now, err := ktimeNow()
	if err != nil {
		return nil, err
	}
	wall := time.Now()
	var out []Ban
	var key bpf.LimiterRgAddr
	var until uint64
	it := k.objs.RgBans.Iterate()
	for it.Next(&key, &until) {
		if left := time.Duration(until) - now; left > 0 {
			out = append(out, Ban{IP: keyAddr(key), Until: wall.Add(left)})
		}
	}
	sortBans(out)
	return out, it.Err()
}

// sweepBans deletes expired bans from rg_bans (the program ignores them
// already; this frees their slots).
func (k *kernel) sweepBans() error {
	now, err := ktimeNow()
	if err != nil {
		return err
	}
	var expired []bpf.LimiterRgAddr
	var key bpf.LimiterRgAddr
	var until uint64
	it := k.objs.RgBans.Iterate()
	for it.Next(&key, &until) {
		if time.Duration(until) <= now {
			expired = append(expired, key)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, key := range expired {
		if err := k.objs.RgBans.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// counters sums the per-CPU counters.
func (k *kernel) counters() (Counters, error) {
	c, err := sumCounters(k.objs.RgCounters)
	if err != nil {
		return Counters{}, fmt.Errorf("read %s: %w", bpf.LimiterMapRgCounters, err)
	}
	return c, nil
}

// update applies a reloaded configuration: the maps, then the interfaces.
// check reports what update would refuse before writing anything: an
// interface of cfg that does not exist.
func (k *kernel) check(cfg config.Datapath) error {
	_, err := k.resolveInterfaces(cfg.Interfaces)
	return err
}

func (k *kernel) update(cfg config.Datapath, pol *policy) error {
	ifaces, err := k.resolveInterfaces(cfg.Interfaces)
	if err != nil {
		return err
	}
	if pol.maxSources != k.maxSources {
		k.log.Warn("datapath: a max_sources change applies at the next start",
			"max_sources", k.maxSources, "new_max_sources", pol.maxSources)
	}
	if err := k.writePolicy(pol); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	want := make(map[string]bool)
	for _, ifc := range ifaces {
		want[ifc.name] = true
		if a, ok := k.links[ifc.name]; ok && a.ifindex == ifc.index {
			continue
		}
		if a, ok := k.links[ifc.name]; ok {
			// Same name, new device: the old link went with the old one.
			a.link.Close()
			delete(k.links, ifc.name)
		}
		if err := k.attachLocked(ifc); err != nil {
			return err
		}
	}
	for name, a := range k.links {
		if !want[name] {
			if err := a.link.Close(); err != nil {
				return fmt.Errorf("detach from %s: %w", name, err)
			}
			delete(k.links, name)
			k.log.Info("datapath: detached", "interface", name)
		}
	}
	return nil
}

// describe lists the attachments, e.g. "eth0 (xdp/native), lo (xdp/generic)".
func (k *kernel) describe() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var parts []string
	for name, a := range k.links {
		parts = append(parts, fmt.Sprintf("%s (%s)", name, a.how))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "no interface"
	}
	return strings.Join(parts, ", ")
}

// close detaches and, while the pins are still ours, unpins.
func (k *kernel) close() error {
	var errs []error
	k.mu.Lock()
	for name, a := range k.links {
		if err := a.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach from %s: %w", name, err))
		}
		delete(k.links, name)
	}
	k.mu.Unlock()
	if k.ownsPins() {
		errs = append(errs, k.unpin(!k.persist))
	} else {
		k.log.Info("datapath: another process took over the pins, leaving them", "bpffs", k.dir)
	}
	errs = append(errs, k.objs.Close())
	k.nl.Close()
	errs = append(errs, k.ns.Close())
	return errors.Join(errs...)
}

// unpin removes the program pins and, with maps, the map pins and the
// directory when it is left empty.
func (k *kernel) unpin(maps bool) error {
	names := progNames
	if maps {
		names = append(slices.Clone(progNames), mapNames...)
	}
	var errs []error
	for _, name := range names {
		if err := os.Remove(filepath.Join(k.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin: %w", err))
		}
	}
	if maps {
		if err := os.Remove(k.dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// abort undoes a failed loadKernel: links closed, and pins removed unless
// another process owns them or they are to persist.
func (k *kernel) abort() {
	for _, a := range k.links {
		a.link.Close()
	}
	// Pins are removed when this attempt made the directory, or once it
	// has loaded the objects: otherwise whatever is pinned (persisted
	// bans) is not ours to drop.
	if k.createdDir || (k.progID != nil && k.ownsPins()) {
		_ = k.unpin(!k.persist || k.createdDir)
	}
	_ = k.objs.Close()
	if k.nl != nil {
		k.nl.Close()
	}
	_ = k.ns.Close()
}
