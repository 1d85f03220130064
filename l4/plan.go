package l4

import (
	"errors"
	"fmt"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/upstream"
)

// Plan is a prepared Apply: the listeners' new states are built and the
// sockets of new or moved addresses are bound, while the running
// listeners go on as they were. Commit makes it the running set; Abort
// releases what it holds. A configuration reload prepares every part
// first and commits only when all have prepared.
//
// Between Prepare and Commit or Abort no other Apply or Prepare may run
// on the manager (the gateway serialises its reloads).
type Plan struct {
	m      *Manager
	cfgs   []config.L4Listener
	states []*listenerState
	pools  []*upstream.Pool
	// opened are the socket sets of the listeners whose address changed
	// or that are new, by name.
	opened map[string]*sockets
	done   bool
}

// errPlanDone is returned by Commit on a plan committed or aborted.
var errPlanDone = errors.New("l4: plan already committed or aborted")

// Prepare builds what Apply(cfgs) needs without changing the running
// listeners: every listener's pools, routes and certificates, and the
// sockets of the new and moved addresses. On error nothing is held.
// (Binding a port range with connection steering points the range's
// steering at the new socket; Abort points it back.)
func (m *Manager) Prepare(cfgs []config.L4Listener) (*Plan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &Plan{m: m, cfgs: cfgs, states: make([]*listenerState, len(cfgs)), opened: map[string]*sockets{}}
	for i, c := range cfgs {
		st, err := m.build(c, m.current(c.Name))
		if err != nil {
			m.discard(p.states)
			return nil, fmt.Errorf("l4[%d] (%s): %w", i, c.Name, err)
		}
		p.states[i] = st
		p.pools = append(p.pools, st.pools...)
	}
	for _, c := range cfgs {
		old := m.listeners[c.Name]
		if old != nil && old.listensOn(c.Listen) {
			continue
		}
		s, err := m.open(c, old)
		if err != nil {
			p.release()
			return nil, fmt.Errorf("l4 %s: listen %s: %w", c.Name, c.Listen, err)
		}
		p.opened[c.Name] = s
	}
	return p, nil
}

// Ports are the ports the listeners listen on once the plan is
// committed: those of the sockets it opened and of the running sockets
// it keeps (a port range with connection steering counts its one
// socket's port; the range itself is in the configuration).
func (p *Plan) Ports() []int {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	var ports []int
	for _, c := range p.cfgs {
		socks := p.m.listeners[c.Name].sockets()
		if s := p.opened[c.Name]; s != nil {
			socks = s.socks
		}
		for _, s := range socks {
			if a := addrPort(s.ln.Addr()); a.Port() != 0 {
				ports = append(ports, int(a.Port()))
			}
		}
	}
	return ports
}

// sockets are the listener's sockets; none for a nil listener.
func (l *Listener) sockets() []*socket {
	if l == nil {
		return nil
	}
	return l.socks
}

// Commit makes the plan's listeners the running set: new ones start,
// removed ones stop accepting (their connections go on), changed ones
// take their new state for new connections. It fails only when the
// manager was shut down meanwhile, or the plan was already used; the plan
// is then released.
func (p *Plan) Commit() error {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.done {
		return errPlanDone
	}
	if m.shutdown.Load() {
		p.release()
		return errors.New("l4: shutting down")
	}
	p.done = true
	keep := map[string]bool{}
	for i, c := range p.cfgs {
		keep[c.Name] = true
		l := m.listeners[c.Name]
		if l == nil {
			l = &Listener{name: c.Name, log: m.log, metrics: m.metrics, conns: map[*conn]struct{}{}, splicer: &m.splicer}
			m.listeners[c.Name] = l
		}
		commitCerts(l.state.Swap(p.states[i]), p.states[i])
		if s := p.opened[c.Name]; s != nil {
			m.use(l, s)
			m.log.Info("l4 listener started", s.logArgs(c)...)
		} else {
			l.rekey(c.Listen)
		}
	}
	for name, l := range m.listeners {
		if !keep[name] {
			l.stopAccepting()
			releaseCerts(l.state.Load(), nil)
			delete(m.listeners, name)
			m.log.Info("l4 listener removed", "listener", name)
		}
	}
	m.registry.Sync(p.pools...)
	return nil
}

// Abort releases what the plan holds: its new sockets close, the running
// listeners' steering is restored, built states and certificate managers
// not shared with the running listeners are closed. Aborting a committed
// or aborted plan does nothing.
func (p *Plan) Abort() {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if !p.done {
		p.release()
	}
}

// release aborts the opened sockets and discards the states. m.mu is
// held.
func (p *Plan) release() {
	p.done = true
	for _, s := range p.opened {
		p.m.abort(s)
	}
	p.m.discard(p.states)
}
