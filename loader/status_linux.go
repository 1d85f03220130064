//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/rustygate/rustygate/bpf"
)

// ReadStatus reads the objects pinned under dir and finds the links of
// its programs among the kernel's links. It needs the privileges to open
// pinned objects (root, or CAP_BPF and access to dir).
func ReadStatus(dir string) (Status, error) {
	st := Status{Dir: dir, Mode: ModeUserspace}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	st.Pinned = true
	byProg := make(map[ebpf.ProgramID]*ProgramStatus)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if e.Name() == SteerSubdir {
				if st.Steering, err = readSteering(path); err != nil {
					return st, err
				}
			}
			continue
		}
		if m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
			ms, err := mapStatus(e.Name(), path, m)
			if err == nil && e.Name() == bpf.LimiterMapRgCounters {
				if c, err := sumCounters(m); err == nil {
					st.Counters = &c
				}
			}
			m.Close()
			if err != nil {
				return st, err
			}
			st.Maps = append(st.Maps, ms)
			continue
		}
		// Programs pins open read-write only; nothing is written.
		p, err := ebpf.LoadPinnedProgram(path, nil)
		if err != nil {
			return st, fmt.Errorf("%s: neither a map nor a program: %w", path, err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
		id, _ := info.ID()
		st.Programs = append(st.Programs, ProgramStatus{Name: e.Name(), Path: path, ID: uint32(id), Type: info.Type.String()})
	}
	for i := range st.Programs {
		byProg[ebpf.ProgramID(st.Programs[i].ID)] = &st.Programs[i]
	}
	for _, s := range st.Steering {
		if s.Program != nil {
			byProg[ebpf.ProgramID(s.Program.ID)] = s.Program
		}
	}
	if len(byProg) > 0 {
		if err := findLinks(byProg); err != nil {
			return st, err
		}
	}
	for _, p := range st.Programs {
		if len(p.Attached) > 0 {
			st.Mode = ModeKernel
		}
	}
	return st, nil
}

// readSteering reads the steering pins of each listener under dir
// (bpffs/steer/NAME).
func readSteering(dir string) ([]SteerStatus, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SteerStatus
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name, err := url.PathUnescape(e.Name())
		if err != nil {
			name = e.Name()
		}
		s := SteerStatus{Listener: name, Dir: filepath.Join(dir, e.Name())}
		if m, err := ebpf.LoadPinnedMap(filepath.Join(s.Dir, SteerMapName), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
			var cookie uint64
			if m.Lookup(uint32(0), &cookie) == nil {
				s.Socket = cookie
			}
			m.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		path := filepath.Join(s.Dir, SteerProgName)
		if p, err := ebpf.LoadPinnedProgram(path, nil); err == nil {
			info, err := p.Info()
			p.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			id, _ := info.ID()
			s.Program = &ProgramStatus{Name: SteerProgName, Path: path, ID: uint32(id), Type: info.Type.String()}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func mapStatus(name, path string, m *ebpf.Map) (MapStatus, error) {
	info, err := m.Info()
	if err != nil {
		return MapStatus{}, fmt.Errorf("%s: %w", path, err)
	}
	id, _ := info.ID()
	ms := MapStatus{Name: name, Path: path, ID: uint32(id), Type: m.Type().String(), MaxEntries: m.MaxEntries()}
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		ms.Entries = int(m.MaxEntries())
	default:
		var key any // nil: the first key
		for {
			next, err := m.NextKeyBytes(key)
			if err != nil {
				return ms, fmt.Errorf("%s: count entries: %w", path, err)
			}
			if next == nil {
				break
			}
			ms.Entries++
			key = next
		}
	}
	return ms, nil
}

func sumCounters(m *ebpf.Map) (Counters, error) {
	var perCPU []bpf.LimiterRgCounters
	if err := m.Lookup(uint32(0), &perCPU); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, pc := range perCPU {
		c.Passed += pc.Passed
		c.Limited += pc.Limited
		c.Denied += pc.Denied
		c.Banned += pc.Banned
	}
	return c, nil
}

// findLinks adds to each program the kernel links that run it.
func findLinks(progs map[ebpf.ProgramID]*ProgramStatus) error {
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		p, ok := progs[info.Program]
		if !ok {
			continue
		}
		a := AttachStatus{LinkID: uint32(info.ID)}
		switch {
		case info.XDP() != nil:
			a.Ifindex = int(info.XDP().Ifindex)
			a.Hook = "xdp"
		case info.TCX() != nil:
			a.Ifindex = int(info.TCX().Ifindex)
			a.Hook = "tcx/ingress"
			if ebpf.AttachType(info.TCX().AttachType) == ebpf.AttachTCXEgress {
				a.Hook = "tcx/egress"
			}
		case info.NetNs() != nil:
			a.Hook = "sk_lookup"
		default:
			a.Hook = fmt.Sprint(info.Type)
		}
		a.Interface, a.Hook = localInterface(a, info.Program)
		p.Attached = append(p.Attached, a)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, p := range progs {
		slices.SortFunc(p.Attached, func(a, b AttachStatus) int { return a.Ifindex - b.Ifindex })
	}
	return nil
}

// localInterface names the interface of a link when it is in this network
// namespace (the program is attached to the device with that ifindex
// here: an ifindex alone may name another device in another namespace),
// and refines the XDP hook with the attach mode.
func localInterface(a AttachStatus, prog ebpf.ProgramID) (string, string) {
	if a.Ifindex <= 0 {
		return "", a.Hook
	}
	l, err := netlink.LinkByIndex(a.Ifindex)
	if err != nil {
		return "", a.Hook
	}
	switch a.Hook {
	case "xdp":
		x := l.Attrs().Xdp
		if x == nil || x.ProgId != uint32(prog) {
			return "", a.Hook
		}
		switch x.AttachMode {
		case 1: // XDP_ATTACHED_DRV
			return l.Attrs().Name, "xdp/native"
		case 2: // XDP_ATTACHED_SKB
			return l.Attrs().Name, "xdp/generic"
		}
		return l.Attrs().Name, a.Hook
	case "tcx/ingress", "tcx/egress":
		attach := ebpf.AttachTCXIngress
		if a.Hook == "tcx/egress" {
			attach = ebpf.AttachTCXEgress
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: a.Ifindex, Attach: attach})
		if err != nil {
			return "", a.Hook
		}
		for _, p := range res.Programs {
			if p.ID == prog {
				return l.Attrs().Name, a.Hook
			}
		}
	}
	return "", a.Hook
}
