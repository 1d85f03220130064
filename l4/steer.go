package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

// A port range listener (`listen: "HOST:LO-HI"`) serves every port of its
// range in one of two ways:
//
//   - steering "kernel": one socket, on HOST:LO, and an sk_lookup program
//     (loader.Steering) that hands it the new connections to every port of
//     the range. Its SOCKMAP is pinned under bpffs/steer/NAME, so that the
//     process a binary upgrade starts, inheriting the socket, attaches its
//     own program to the same map: the range is never without a socket.
//   - steering "userspace", the twin: one socket per port, all accepting
//     into the same Listener.
//
// datapath.mode decides (SetSteering): auto steers in the kernel when the
// program loads and falls back to the twin otherwise, kernel fails when it
// cannot load, userspace never touches BPF. Connections are proxied,
// logged and counted alike either way.

// Values of the "steering" field of the "l4 listener started" line.
const (
	steeringKernel    = "kernel"
	steeringUserspace = "userspace"
)

// socket is one listening socket of a Listener.
type socket struct {
	// addr is the address it was opened for, the key a binary upgrade
	// hands it over by.
	addr   string
	ln     net.Listener
	closed atomic.Bool
}

func (s *socket) close() {
	if s.closed.CompareAndSwap(false, true) {
		s.ln.Close()
	}
}

// serves reports whether the socket listens on addr: the address it was
// opened for, or one that binds the same (port 0's actual port, another
// spelling of the host or of the wildcard).
func (s *socket) serves(addr string) bool {
	if s.addr == addr {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	bound := addrPort(s.ln.Addr())
	if n, err := strconv.Atoi(port); err != nil || n != int(bound.Port()) {
		return false
	}
	if host == "" {
		return bound.Addr().IsUnspecified()
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	if a.IsUnspecified() {
		return bound.Addr().IsUnspecified()
	}
	return a.Unmap() == bound.Addr()
}

// sockets is what a listener listens with: its sockets and, for a port
// range served by one socket, the steering that sends the range to it.
type sockets struct {
	name   string
	listen string
	socks  []*socket
	// addrs are the addresses socks serve, as now configured: a kept
	// socket is handed over by it from now on.
	addrs []string
	steer *loader.Steering
	// fresh are the sockets opened for this set; the others are the
	// listener's own already.
	fresh []*socket
	// twinReason says why a port range has one socket per port.
	twinReason string
	// old is the listener being changed, nil for a new one.
	old *Listener
}

// SetSteering says how port range listeners are served: with datapath
// mode auto or kernel by one socket the kernel steers the range to,
// pinning under bpffs (auto falls back to one socket per port when the
// steering cannot load, kernel fails); with userspace, as without
// SetSteering, by one socket per port. Call it before Apply.
func (m *Manager) SetSteering(mode, bpffs string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.steerMode, m.bpffs = mode, bpffs
}

// open gets the sockets c needs: the listener's own where it has them
// already (old may be nil), new ones otherwise, and for a port range the
// steering when it can. On error it closes what it opened.
func (m *Manager) open(c config.L4Listener, old *Listener) (*sockets, error) {
	p := &sockets{name: c.Name, listen: c.Listen, old: old}
	if !config.IsListenRange(c.Listen) {
		if err := m.addSocket(p, old, c.Listen); err != nil {
			return nil, err
		}
		return p, nil
	}
	r, err := config.ParseListenRange(c.Listen)
	if err == nil {
		err = m.addSocket(p, old, r.Addr(r.Lo))
	}
	if err == nil {
		err = m.steerRange(c.Name, r, p)
	}
	for port := int(r.Lo) + 1; err == nil && p.steer == nil && port <= int(r.Hi); port++ {
		err = m.addSocket(p, old, r.Addr(uint16(port)))
	}
	if err != nil {
		m.abort(p)
		return nil, err
	}
	return p, nil
}

// addSocket adds to p the listener's socket on addr, or a new one.
func (m *Manager) addSocket(p *sockets, old *Listener, addr string) error {
	if old != nil {
		for _, s := range old.socks {
			if s.serves(addr) {
				p.socks, p.addrs = append(p.socks, s), append(p.addrs, addr)
				return nil
			}
		}
	}
	ln, err := m.listen(addr)
	if err != nil {
		return err
	}
	s := &socket{addr: addr, ln: ln}
	p.socks, p.addrs = append(p.socks, s), append(p.addrs, addr)
	p.fresh = append(p.fresh, s)
	return nil
}

// steerRange attaches the steering of r to p's one socket when the
// datapath mode allows it and the kernel can; otherwise p.steer stays nil
// and the range gets one socket per port. Only with mode kernel is a
// failure an error.
func (m *Manager) steerRange(name string, r config.ListenRange, p *sockets) error {
	if m.steerMode != config.DatapathAuto && m.steerMode != config.DatapathKernel {
		p.twinReason = loader.ReasonConfigured
		if !m.steerNoted.Swap(true) {
			m.log.Info("l4: port range listeners use one socket per port (datapath.mode is userspace)")
		}
		return nil
	}
	st, err := loader.NewSteering(loader.SteerPinDir(m.bpffs, name), steerPrefix(r), r.Lo, r.Hi, m.log)
	if err == nil {
		var tl *net.TCPListener
		if tl, err = tcpListener(p.socks[0].ln); err == nil {
			err = st.SetListener(tl)
		}
		if err != nil {
			closeSteering(m.log, name, st)
		}
	}
	if err == nil {
		p.steer = st
		return nil
	}
	reason := loader.ReasonLoadFailed
	var serr *loader.SpliceError
	if errors.As(err, &serr) {
		reason, err = serr.Reason, serr.Err
	}
	if m.steerMode == config.DatapathKernel {
		return fmt.Errorf("datapath.mode is kernel, but the connection steering of ports %d-%d cannot load (%s): %w", r.Lo, r.Hi, reason, err)
	}
	p.twinReason = reason
	if !m.steerNoted.Swap(true) {
		m.log.Warn("l4: connection steering unavailable; port range listeners use one socket per port",
			"listener", name, "reason", reason, "error", err.Error())
	}
	return nil
}

// steerPrefix is the addresses a range is steered for: its host's, or
// for a wildcard host both families (Go listens dual-stack there).
func steerPrefix(r config.ListenRange) netip.Prefix {
	if r.Wildcard() {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	a := netip.MustParseAddr(r.Host).Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// tcpListener returns the TCP socket under ln (which the datapath may
// have wrapped).
func tcpListener(ln net.Listener) (*net.TCPListener, error) {
	if u, ok := ln.(interface{ Unwrap() net.Listener }); ok {
		ln = u.Unwrap()
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("listener %s is a %T, not a TCP socket", ln.Addr(), ln)
	}
	return tl, nil
}

// abort undoes an open whose Apply failed: the new sockets are closed and
// the new steering detached. A new steering shares its SOCKMAP with the
// listener's running one (same directory), so that one gets its socket
// back.
func (m *Manager) abort(p *sockets) {
	for _, s := range p.fresh {
		s.close()
	}
	if p.steer == nil {
		return
	}
	closeSteering(m.log, p.name, p.steer)
	if old := p.old; old != nil && old.steer != nil && len(old.socks) > 0 {
		tl, err := tcpListener(old.socks[0].ln)
		if err == nil {
			err = old.steer.SetListener(tl)
		}
		if err != nil {
			m.log.Warn("l4: restoring the connection steering after a failed reload", "listener", p.name, "error", err.Error())
		}
	}
}

// use makes l listen with p: it accepts on p's new sockets, closes those
// p does not keep and swaps the steering. The new steering is attached
// already, so the range has a socket throughout.
func (m *Manager) use(l *Listener, p *sockets) {
	for _, s := range p.fresh {
		l.accepting.Add(1)
		go l.serve(s)
	}
	if l.steer != p.steer {
		closeSteering(m.log, l.name, l.steer)
	}
	keep := make(map[*socket]bool, len(p.socks))
	for i, s := range p.socks {
		keep[s] = true
		s.addr = p.addrs[i]
	}
	for _, s := range l.socks {
		if !keep[s] {
			s.close()
		}
	}
	l.listen, l.socks, l.steer = p.listen, p.socks, p.steer
}

// rekey names the one socket of a listener kept as it was (its address
// written another way, or its port 0 resolved) by the address now
// configured: the process a binary upgrade starts reads the same
// configuration and asks for the socket by that address.
func (l *Listener) rekey(listen string) {
	if !config.IsListenRange(listen) && len(l.socks) == 1 {
		l.listen, l.socks[0].addr = listen, listen
	}
}

// closeSteering detaches st and removes its pins, unless a newer steering
// (a reload's, or the process a binary upgrade started) took them over.
func closeSteering(log *slog.Logger, listener string, st *loader.Steering) {
	if st == nil {
		return
	}
	if err := errors.Join(st.Close(), st.Unpin()); err != nil {
		log.Warn("l4: closing the connection steering", "listener", listener, "error", err.Error())
	}
}

// logArgs are the fields of the "l4 listener started" line.
func (p *sockets) logArgs(c config.L4Listener) []any {
	args := []any{"listener", c.Name, "listen", p.socks[0].ln.Addr().String(), "backends", len(c.Backends)}
	if len(c.Routes) > 0 {
		args = append(args, "sni_routes", len(c.Routes))
	}
	if c.TLS != nil {
		args = append(args, "tls", true)
	}
	if !config.IsListenRange(c.Listen) {
		return args
	}
	args = append(args, "range", c.Listen, "sockets", len(p.socks))
	if p.steer != nil {
		return append(args, "steering", steeringKernel)
	}
	return append(args, "steering", steeringUserspace, "steering_reason", p.twinReason)
}
