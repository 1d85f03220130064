package l4

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/rustygate/rustygate/loader"
)

// datapathKernel is the listener's `datapath: kernel`.
const datapathKernel = "kernel"

// Why a `datapath: kernel` listener relays without kernel splicing:
// stable values of the datapath_fallback field of the warning each
// listener logs once.
const (
	// fallbackNoSplicer: no splicer, or it failed its self-test; splice(2)
	// relays.
	fallbackNoSplicer = "no_splicer"
	// fallbackTLSTermination: the listener terminates TLS, so the bytes
	// it relays are decrypted in the process and can be spliced nowhere.
	fallbackTLSTermination = "tls_termination"
)

// SetSplicer gives the listeners with `datapath: kernel` a kernel
// splicer. It runs the splicer's self-test (once) and keeps the splicer
// only when it passes; with nil, or a failed test, those listeners relay
// with splice(2) and each logs why once. The caller still owns s and
// closes it after Shutdown.
func (m *Manager) SetSplicer(s *loader.Splicer) {
	if s != nil {
		if s.HalfCloseTimeout == 0 {
			s.HalfCloseTimeout = halfCloseTimeout
		}
		if err := s.SelfTest(); err != nil {
			m.log.Warn("l4: kernel splicing failed its self-test: datapath kernel listeners use splice(2)", "error", err.Error())
			s = nil
		} else {
			m.log.Info("l4: kernel splicing available (self-test passed)")
		}
	}
	m.splicer.Store(s)
	m.mu.Lock()
	for _, l := range m.listeners {
		l.kernelWarned.Store(false)
	}
	m.mu.Unlock()
}

// SpliceStats returns the kernel splicer's counters (zero without one).
func (m *Manager) SpliceStats() loader.SpliceStats {
	if s := m.splicer.Load(); s != nil {
		return s.Stats()
	}
	return loader.SpliceStats{}
}

// kernelRelay relays through the kernel splicer when the listener asks
// for it and one is available. ok=false means nothing moved and the
// caller relays with splice(2): no splicer, or the kernel refused this
// connection (MPTCP, a client that already sent FIN).
func (l *Listener) kernelRelay(st *listenerState, client, backend net.Conn) (toBackend, toClient int64, reason string, ok bool) {
	if st.cfg.Datapath != datapathKernel {
		return 0, 0, "", false
	}
	if _, terminated := client.(*tls.Conn); terminated {
		if !l.kernelWarned.Swap(true) {
			l.log.Warn("l4: datapath kernel requested, but the listener terminates TLS: its plaintext is relayed in userspace",
				"listener", l.name, "datapath_fallback", fallbackTLSTermination)
		}
		return 0, 0, "", false
	}
	s := l.splicer.Load()
	if s == nil {
		if !l.kernelWarned.Swap(true) {
			l.log.Warn("l4: datapath kernel requested, but kernel splicing is not available (not loaded, or its self-test failed): using splice(2)",
				"listener", l.name, "datapath_fallback", fallbackNoSplicer)
		}
		return 0, 0, "", false
	}
	c, ok1 := client.(*net.TCPConn)
	b, ok2 := backend.(*net.TCPConn)
	if !ok1 || !ok2 {
		return 0, 0, "", false
	}
	t, handled, err := s.Splice(c, b)
	if !handled {
		if err == nil {
			return 0, 0, "", false
		}
		// The pair was half set up and could not be handed back intact:
		// end it rather than risk reordered bytes.
		l.log.Warn("l4: kernel splice failed", "listener", l.name, "error", err.Error())
		client.Close()
		backend.Close()
		return 0, 0, "kernel_error", true
	}
	if errors.Is(t.AErr, loader.ErrSpliceIntegrity) || errors.Is(t.BErr, loader.ErrSpliceIntegrity) {
		// Reset both ends: a clean FIN would pass a cut stream off as
		// complete.
		c.SetLinger(0)
		b.SetLinger(0)
	}
	client.Close()
	backend.Close()
	// The direction that failed first names the reason; the other one
	// ends with ErrSpliceAborted.
	switch {
	case t.BErr != nil && !errors.Is(t.BErr, loader.ErrSpliceAborted):
		reason = "backend_error"
	case t.AErr != nil && !errors.Is(t.AErr, loader.ErrSpliceAborted):
		reason = "client_error"
	case t.BErr != nil || t.AErr != nil:
		reason = "backend_error"
	default:
		reason = "eof"
	}
	if t.AErr != nil || t.BErr != nil {
		l.log.Debug("l4 kernel splice ended with an error", "listener", l.name,
			"client_error", errString(t.AErr), "backend_error", errString(t.BErr))
	}
	if errors.Is(t.AErr, loader.ErrSpliceIntegrity) || errors.Is(t.BErr, loader.ErrSpliceIntegrity) {
		reason = "integrity_error"
		l.log.Error("l4: kernel splice integrity failure: connection reset", "listener", l.name,
			"client_error", errString(t.AErr), "backend_error", errString(t.BErr))
	}
	return t.AtoB, t.BtoA, reason, true
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
