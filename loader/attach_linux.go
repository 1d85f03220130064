//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/rustygate/rustygate/bpf"
)

// How the limiter is attached to an interface, in the order tried: native
// XDP drops before the kernel allocates anything; generic XDP works on any
// device (lo, drivers without XDP); TCX works where XDP is taken.
const (
	attachXDPNative  = "xdp/native"
	attachXDPGeneric = "xdp/generic"
	attachTCX        = "tcx"
)

// attachModes is the order attach tries. Tests narrow it to one mode.
var attachModes = []string{attachXDPNative, attachXDPGeneric, attachTCX}

// attachment is the limiter on one interface.
type attachment struct {
	ifindex int
	how     string
	link    link.Link
}

type iface struct {
	name  string
	index int
}

// resolveInterfaces looks the configured interfaces up in the datapath's
// namespace; none configured means every interface that is up.
func (k *kernel) resolveInterfaces(names []string) ([]iface, error) {
	if len(names) == 0 {
		links, err := k.nl.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var out []iface
		for _, l := range links {
			if a := l.Attrs(); a.Flags&net.FlagUp != 0 {
				out = append(out, iface{name: a.Name, index: a.Index})
			}
		}
		slices.SortFunc(out, func(a, b iface) int { return a.index - b.index })
		return out, nil
	}
	out := make([]iface, 0, len(names))
	for i, name := range names {
		l, err := k.nl.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil, &configError{fmt.Errorf("datapath.interfaces[%d]: no interface %q", i, name)}
			}
			return nil, fmt.Errorf("interface %q: %w", name, err)
		}
		out = append(out, iface{name: name, index: l.Attrs().Index})
	}
	return out, nil
}

func (k *kernel) attach(ifc iface) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.attachLocked(ifc)
}

// attachLocked attaches the limiter to ifc, in the datapath's namespace.
func (k *kernel) attachLocked(ifc iface) error {
	var a *attachment
	err := inNetns(k.ns, func() error {
		var err error
		a, err = k.attachHere(ifc)
		return err
	})
	if err != nil {
		return err
	}
	k.links[ifc.name] = a
	k.log.Info("datapath: attached", "interface", ifc.name, "how", a.how)
	return nil
}

// attachHere runs on a thread in the datapath's namespace.
func (k *kernel) attachHere(ifc iface) (*attachment, error) {
	if k.takeOverOK {
		if a := k.takeOver(ifc); a != nil {
			return a, nil
		}
	}
	var errs []error
	for _, how := range attachModes {
		var l link.Link
		var err error
		switch how {
		case attachXDPNative:
			l, err = link.AttachXDP(link.XDPOptions{Program: k.objs.RgXdpLimit, Interface: ifc.index, Flags: link.XDPDriverMode})
		case attachXDPGeneric:
			l, err = link.AttachXDP(link.XDPOptions{Program: k.objs.RgXdpLimit, Interface: ifc.index, Flags: link.XDPGenericMode})
		case attachTCX:
			l, err = link.AttachTCX(link.TCXOptions{Program: k.objs.RgTcLimit, Interface: ifc.index, Attach: ebpf.AttachTCXIngress})
		}
		if err == nil {
			return &attachment{ifindex: ifc.index, how: how, link: l}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", how, err))
	}
	return nil, fmt.Errorf("attach to %s: %w", ifc.name, errors.Join(errs...))
}

// takeOver finds a limiter link that another RustyGate process (the one
// being upgraded) holds on ifc and swaps our program into it, so the
// interface is never unguarded and never guarded twice. When that process
// exits, its Close drops only its own reference to the link.
func (k *kernel) takeOver(ifc iface) *attachment {
	if nl, err := k.nl.LinkByIndex(ifc.index); err == nil {
		x := nl.Attrs().Xdp
		if x != nil && x.Attached && x.ProgId != 0 && programNamed(ebpf.ProgramID(x.ProgId), bpf.LimiterProgRgXdpLimit) {
			if l := linkOfProgram(ebpf.ProgramID(x.ProgId)); l != nil {
				if err := l.Update(k.objs.RgXdpLimit); err == nil {
					how := attachXDPNative
					if x.AttachMode == 2 { // XDP_ATTACHED_SKB
						how = attachXDPGeneric
					}
					return &attachment{ifindex: ifc.index, how: how + " (taken over)", link: l}
				}
				l.Close()
			}
		}
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.index, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil
	}
	for _, p := range res.Programs {
		id, ok := p.LinkID()
		if !ok || !programNamed(p.ID, bpf.LimiterProgRgTcLimit) {
			continue
		}
		l, err := link.NewFromID(id)
		if err != nil {
			continue
		}
		if err := l.Update(k.objs.RgTcLimit); err == nil {
			return &attachment{ifindex: ifc.index, how: attachTCX + " (taken over)", link: l}
		}
		l.Close()
	}
	return nil
}

// programNamed reports whether program id is called name.
func programNamed(id ebpf.ProgramID, name string) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer p.Close()
	info, err := p.Info()
	return err == nil && info.Name == name
}

// linkOfProgram finds the link that holds program id, or nil.
func linkOfProgram(id ebpf.ProgramID) link.Link {
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && info.Program == id {
			return it.Take()
		}
	}
	return nil
}

// inNetns runs fn on an OS thread switched into ns. The thread goes back to
// its own namespace afterwards, or, if that fails, ends with fn's goroutine
// instead of serving other goroutines from the wrong namespace.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if orig.Equal(ns) {
			// Already there: setns(2) would need CAP_SYS_ADMIN for nothing.
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
