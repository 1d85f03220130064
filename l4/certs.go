package l4

import (
	"fmt"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
)

// A listener with `tls:` serves its pair through a certs.Manager, as the
// HTTPS listener does: the files are watched, a renewed pair serves new
// handshakes within two seconds without a reload, and a broken, mismatched
// or expired replacement is refused with a log line while the previous
// pair keeps serving. The manager lives as long as the listener's tls
// block is unchanged: a reload that keeps it only has the files read
// again; one that changes it builds a new manager, which takes the old
// one's session ticket keys, and closes the old one once the new state
// is in place. A removed listener, a failed reload and Shutdown close
// the managers nothing uses any more.

// buildTLS gives st the TLS termination of its `tls:`: prev's manager
// when prev (the listener's state now, nil for a new listener) has the
// same tls block, else a new one.
func (m *Manager) buildTLS(st, prev *listenerState) error {
	t := st.cfg.TLS
	if t == nil {
		return nil
	}
	if prev != nil && prev.certs != nil && *prev.cfg.TLS == *t {
		st.certs, st.tls = prev.certs, prev.tls
		return nil
	}
	opts, err := certOptions(t)
	if err != nil {
		return err
	}
	opts.Logger = m.log.With("listener", st.cfg.Name)
	cm, err := certs.New(opts)
	if err != nil {
		return err
	}
	if prev != nil && prev.certs != nil {
		// Clients resume their sessions across the change.
		if err := cm.ImportTicketKeys(prev.certs.ExportTicketKeys()); err != nil {
			m.log.Warn("l4: session ticket keys not carried over", "listener", st.cfg.Name, "error", err.Error())
		}
	}
	st.certs, st.tls = cm, cm.TLSConfig(nil)
	return nil
}

// certOptions are the certs.Manager options of an l4 listener's tls: one
// pair, watched, served whatever the server name.
func certOptions(t *config.L4TLS) (certs.Options, error) {
	var v uint16 // certs' default, TLS 1.2
	if t.MinVersion != "" {
		var err error
		if v, err = certs.ParseVersion(t.MinVersion); err != nil {
			return certs.Options{}, fmt.Errorf("min_version: %w", err)
		}
	}
	return certs.Options{
		Certificates: []certs.PairFiles{{CertFile: t.CertFile, KeyFile: t.KeyFile}},
		MinVersion:   v,
		Watch:        true,
	}, nil
}

// commitCerts finishes the replacement of old, the listener's state (nil
// for a new listener), by next: a kept manager reads its files again (a
// reload picks up renewed files even where file events are missed), a
// manager no longer used is closed.
func commitCerts(old, next *listenerState) {
	if next.certs != nil && old != nil && old.certs == next.certs {
		next.certs.Reload() // it logs what it refuses
		return
	}
	releaseCerts(old, next)
}

// releaseCerts closes the certificate manager of old, a state being
// dropped, unless next (the state replacing it, nil for none) keeps it.
func releaseCerts(old, next *listenerState) {
	if old == nil || old.certs == nil || (next != nil && next.certs == old.certs) {
		return
	}
	old.certs.Close()
}

// discard closes the certificate managers states built for themselves,
// for an Apply that fails before it stores them. m.mu is held.
func (m *Manager) discard(states []*listenerState) {
	for _, st := range states {
		if st == nil {
			continue
		}
		var cur *listenerState
		if l := m.listeners[st.cfg.Name]; l != nil {
			cur = l.state.Load()
		}
		if cur == nil || cur.certs != st.certs {
			releaseCerts(st, nil)
		}
	}
}

// Certificates lists the certificates the listeners that terminate TLS
// serve, for the expiry gauge, each named by its listener.
func (m *Manager) Certificates() []certs.CertInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []certs.CertInfo
	for _, l := range m.listeners {
		if st := l.state.Load(); st != nil && st.certs != nil {
			out = append(out, st.certs.Certificates()...)
		}
	}
	return out
}
