//go:build linux

package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/bpf"
)

// SteerMapName is the SOCKMAP pinned in the bpffs directory: the
// listening socket every steered connection goes to. A process taking
// over puts its listener there (SetListener); the old one keeps the
// connections it accepted.
const SteerMapName = "rg_steer_sock"

// SteerProgName is the program pinned beside the SOCKMAP. The pin marks
// which Steering owns the directory: the last one made there, which
// Unpin leaves it to.
const SteerProgName = bpf.SteerProgRgSteer

// Steering is an sk_lookup program attached to a network namespace: new
// TCP connections to an address in prefix and a port in [portLo, portHi]
// go to the listening socket in the pinned SOCKMAP, so one socket serves
// every port of the range. Connections to other addresses and ports are
// untouched.
type Steering struct {
	log    *slog.Logger
	dir    string
	objs   bpf.SteerObjects
	link   *link.NetNsLink
	progID ebpf.ProgramID

	mu     sync.Mutex
	closed bool
}

// NewSteering loads the program, pins (or reuses) the SOCKMAP under
// bpffs, attaches to the calling thread's network namespace and pins the
// program beside the map, replacing the pin of an earlier Steering (a
// process being upgraded). Until SetListener, connections to the range
// find no socket there and get the usual lookup (a reset when nothing
// listens). A prefix of ::/0 steers both families: every IPv6 address,
// and every IPv4 one as a dual-stack socket sees it (IPv4-mapped). On
// failure it returns a *SpliceError with the reason and leaves nothing
// attached.
func NewSteering(bpffs string, prefix netip.Prefix, portLo, portHi uint16, log *slog.Logger) (*Steering, error) {
	if err := steerRange(prefix, portLo, portHi); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Steering{log: log, dir: filepath.Clean(bpffs)}
	if err := s.load(prefix.Masked(), portLo, portHi); err != nil {
		s.objs.Close()
		if s.link != nil {
			s.link.Close()
		}
		var cerr *configError
		if errors.As(err, &cerr) {
			return nil, err
		}
		return nil, &SpliceError{Reason: fallbackReason(err), Err: err}
	}
	log.Info("connection steering attached", "prefix", prefix.String(), "ports", fmt.Sprintf("%d-%d", portLo, portHi),
		"map", filepath.Join(s.dir, SteerMapName))
	return s, nil
}

func (s *Steering) load(prefix netip.Prefix, lo, hi uint16) error {
	if err := features.HaveProgramType(ebpf.SkLookup); err != nil {
		return fmt.Errorf("probe sk_lookup programs: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove the memlock limit: %w", err)
	}
	if err := ensureBPFFS(s.dir); err != nil {
		return err
	}
	spec, err := bpf.LoadSteer()
	if err != nil {
		return err
	}
	cfg := bpf.SteerRgSteerCfg{PortLo: lo, PortHi: hi}
	addr := prefix.Addr()
	var a, m [16]byte
	bits := prefix.Bits()
	if addr.Is4() {
		cfg.Family = unix.AF_INET
		b := addr.As4()
		copy(a[:], b[:])
	} else if bits > 0 {
		cfg.Family = unix.AF_INET6
		a = addr.As16()
	}
	// ::/0 leaves Family 0: both families, no address check.
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	for i := range 4 {
		cfg.Addr[i] = binary.NativeEndian.Uint32(a[4*i:])
		cfg.Mask[i] = binary.NativeEndian.Uint32(m[4*i:])
	}
	if err := spec.Variables["rg_steer_cfg"].Set(cfg); err != nil {
		return fmt.Errorf("steering config: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: s.dir}}); err != nil {
		return fmt.Errorf("load steering program: %w", err)
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer ns.Close()
	if s.link, err = link.AttachNetNs(int(ns), s.objs.RgSteer); err != nil {
		return fmt.Errorf("attach sk_lookup: %w", err)
	}
	info, err := s.objs.RgSteer.Info()
	if err != nil {
		return fmt.Errorf("steering program: %w", err)
	}
	s.progID, _ = info.ID()
	path := filepath.Join(s.dir, SteerProgName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace pin %s: %w", path, err)
	}
	if err := s.objs.RgSteer.Pin(path); err != nil {
		return fmt.Errorf("pin %s: %w", path, err)
	}
	return nil
}

// SetListener makes ln the socket new connections of the range go to,
// replacing the one there; connections the old socket accepted go on.
// ln must listen on TCP with Multipath TCP off.
func (s *Steering) SetListener(ln *net.TCPListener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		uerr = s.objs.RgSteerSock.Update(uint32(0), uint64(fd), ebpf.UpdateAny)
	}); err != nil {
		return err
	}
	if uerr != nil {
		return fmt.Errorf("steering: set listener %s: %w", ln.Addr(), uerr)
	}
	return nil
}

// Close detaches the program: new connections get the usual lookup
// again. The pins stay for a process taking over; Unpin removes them.
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.link != nil {
		err = s.link.Close()
	}
	return errors.Join(err, s.objs.Close())
}

// Unpin removes the pins (the SOCKMAP and the program) and then the
// directory and those above it, up to the bpffs mount, that are left
// empty; call it after Close when no process takes over. It leaves the
// pins alone when another Steering has pinned its program there since
// (the process that took over in a binary upgrade, or a reload's new
// range): they are that one's now.
func (s *Steering) Unpin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ownsPins() {
		s.log.Info("connection steering: another steering took over the pins, leaving them", "dir", s.dir)
		return nil
	}
	var errs []error
	for _, name := range []string{SteerProgName, SteerMapName} {
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin: %w", err))
		}
	}
	for dir := s.dir; dir != bpffsRoot && dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if ok, err := isBPFFS(dir); err != nil || !ok {
			break
		}
		// Stops at the first directory that is not empty, or is a mount
		// point (EBUSY).
		if err := os.Remove(dir); err != nil {
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
				errs = append(errs, err)
			}
			if !errors.Is(err, os.ErrNotExist) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// ownsPins reports whether the program pinned in s.dir is this one's,
// or none is pinned.
func (s *Steering) ownsPins() bool {
	p, err := ebpf.LoadPinnedProgram(filepath.Join(s.dir, SteerProgName), nil)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return false
	}
	id, _ := info.ID()
	return id == s.progID
}
