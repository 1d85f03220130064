package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
)

// The HTTPS listener (server.tls): a certs.Manager serves its
// certificates, l7.Server.ServeTLS its connections.

// alpnProtos are offered on the HTTPS listener, HTTP/2 first.
var alpnProtos = []string{"h2", "http/1.1"}

// envTickets names the inherited pipe that carries the session ticket
// keys to the new process in a binary upgrade (never the command line or
// the environment: the keys decrypt recorded sessions).
const envTickets = "RUSTYGATE_TLS_TICKETS_FD"

// certOptions are the Manager options of cfg's server.tls section. The
// ACME challenge ports are the listeners' own: the gateway answers
// http-01 on the plain listener and tls-alpn-01 on the HTTPS one, so the
// ACME client never binds a port of its own for them (behind a port
// forward from 80 and 443, too).
func (g *gateway) certOptions(cfg *config.Config) (certs.Options, error) {
	opts, err := certs.OptionsFromConfig(cfg.Server.TLS)
	if err != nil {
		return opts, err
	}
	opts.Logger = g.log
	if opts.ACME != nil {
		opts.ACME.HTTPPort = portOf(cfg.Server.Listen)
		opts.ACME.TLSALPNPort = portOf(cfg.Server.TLS.Listen)
	}
	return opts, nil
}

// newCertManager builds the Manager of cfg's server.tls section.
func (g *gateway) newCertManager(cfg *config.Config) (*certs.Manager, error) {
	opts, err := g.certOptions(cfg)
	if err != nil {
		return nil, err
	}
	return certs.New(opts)
}

// useCertManager makes m (nil: none) the manager of the HTTPS listener
// and the answerer of http-01 challenges on the plain one.
func (g *gateway) useCertManager(m *certs.Manager) {
	g.tlsMgr.Store(m)
	if m == nil {
		g.srv.SetHTTPChallenge(nil)
		return
	}
	g.srv.SetHTTPChallenge(m.HandleHTTPChallenge)
}

// startTLS opens the HTTPS listener at start, when server.tls is set.
func (g *gateway) startTLS(cfg *config.Config) error {
	t := cfg.Server.TLS
	if t == nil {
		return nil
	}
	m, err := g.newCertManager(cfg)
	if err != nil {
		return fmt.Errorf("server.tls: %w", err)
	}
	if keys := g.inherit.ticketKeys; len(keys) > 0 {
		if err := m.ImportTicketKeys(keys); err != nil {
			g.log.Warn("session ticket keys of the previous process not imported; its clients make full handshakes", "error", err.Error())
		}
		g.inherit.ticketKeys = nil
	}
	ln, err := g.inherit.listen("tls", t.Listen)
	if err != nil {
		m.Close()
		return fmt.Errorf("server.tls.listen %s: %w", t.Listen, err)
	}
	if err := g.startHTTP3(t, m, ln); err != nil {
		ln.Close()
		m.Close()
		return err
	}
	g.useCertManager(m)
	g.tlsLn, g.tlsAddr = g.dp.WrapListener(ln), t.Listen
	go g.serveTLS(g.tlsLn, m)
	return nil
}

func (g *gateway) serveTLS(ln net.Listener, m *certs.Manager) {
	if err := g.srv.ServeTLS(ln, m.TLSConfig(alpnProtos)); err != nil {
		g.serveErr <- err
	}
}

// certExpiry lists the served certificates, of the HTTPS listener and
// of the l4 listeners that terminate TLS, for the expiry gauge.
func (g *gateway) certExpiry() []observe.CertExpiry {
	var list []certs.CertInfo
	if m := g.tlsMgr.Load(); m != nil {
		list = m.Certificates()
	}
	if g.l4 != nil {
		list = append(list, g.l4.Certificates()...)
	}
	out := make([]observe.CertExpiry, 0, len(list))
	for _, c := range list {
		out = append(out, observe.CertExpiry{Name: c.Name, File: c.CertFile, NotAfter: c.NotAfter})
	}
	return out
}

// tlsChange is what a reload does to the HTTPS listener, prepared before
// anything is committed.
type tlsChange struct {
	cfg   *config.TLSConfig
	newM  *certs.Manager // a manager for a section that was absent
	newLn net.Listener   // a listener for a new or moved address
	newPC net.PacketConn // the HTTP/3 socket, turned on or moved
	// update is what the running manager serves once committed: the
	// certificates loaded and checked.
	update *certs.Prepared
}

// prepareTLS loads what a reload to cfg needs for server.tls: the new
// certificates are loaded and checked (a new manager, or the running
// one's next settings, served from commit on), a new listen address is
// bound. The running listener and certificates are left alone.
func (g *gateway) prepareTLS(cfg *config.Config) (*tlsChange, error) {
	t := cfg.Server.TLS
	ch := &tlsChange{cfg: t}
	if t == nil {
		return ch, nil
	}
	opts, err := g.certOptions(cfg)
	if err == nil && g.tlsMgr.Load() == nil {
		ch.newM, err = certs.New(opts)
	} else if err == nil {
		ch.update, err = certs.Prepare(opts)
	}
	if err != nil {
		return nil, fmt.Errorf("server.tls: %w", err)
	}
	if g.tlsLn == nil || t.Listen != g.tlsAddr {
		ln, err := listen(t.Listen)
		if err != nil {
			ch.abort()
			return nil, fmt.Errorf("server.tls.listen: %w", err)
		}
		ch.newLn = g.dp.WrapListener(ln)
	}
	if err := g.prepareHTTP3(t, ch); err != nil {
		ch.abort()
		return nil, err
	}
	return ch, nil
}

// abort releases what prepareTLS opened.
func (ch *tlsChange) abort() {
	if ch.newM != nil {
		ch.newM.Close()
	}
	if ch.newLn != nil {
		ch.newLn.Close()
	}
	if ch.newPC != nil {
		ch.newPC.Close()
	}
}

// listener is the HTTPS listener once the change is committed, given
// the current one.
func (ch *tlsChange) listener(current net.Listener) net.Listener {
	switch {
	case ch.cfg == nil:
		return nil
	case ch.newLn != nil:
		return ch.newLn
	}
	return current
}

// commit applies a prepared change: the running manager takes the new
// certificates and policy, a new listener starts and the old one stops,
// a removed section closes the listener (its connections go on). It
// fails, changing nothing, only when the running manager was closed (the
// gateway is stopping); the caller then aborts the change.
func (g *gateway) commit(ch *tlsChange) error {
	m := g.tlsMgr.Load()
	if ch.cfg == nil {
		g.commitHTTP3(ch, m)
		if g.tlsLn != nil {
			g.srv.StopListener(g.tlsLn)
			g.tlsLn, g.tlsAddr = nil, ""
		}
		if m != nil {
			g.useCertManager(nil)
			m.Close()
		}
		return nil
	}
	if ch.newM != nil {
		m = ch.newM
		g.useCertManager(m)
	} else if err := m.Apply(ch.update); err != nil {
		return fmt.Errorf("server.tls: %w", err)
	}
	if ch.newLn != nil {
		go g.serveTLS(ch.newLn, m)
		if g.tlsLn != nil {
			g.srv.StopListener(g.tlsLn)
		}
		g.tlsLn, g.tlsAddr = ch.newLn, ch.cfg.Listen
	}
	g.commitHTTP3(ch, m)
	return nil
}

// closeTLS stops the certificate manager's background work at exit.
func (g *gateway) closeTLS() {
	if m := g.tlsMgr.Load(); m != nil {
		m.Close()
	}
}

// ticketPipe returns a pipe whose read end carries the session ticket
// keys to the new process of an upgrade (nil without TLS). The keys are
// written before it starts; they fit in the pipe's buffer.
func (g *gateway) ticketPipe() (*os.File, error) {
	m := g.tlsMgr.Load()
	if m == nil {
		return nil, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = pw.Write(m.ExportTicketKeys())
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	return pr, nil
}

// readTicketKeys reads the session ticket keys a parent process passed
// on the descriptor named by RUSTYGATE_TLS_TICKETS_FD.
func readTicketKeys() []byte {
	n, err := strconv.Atoi(os.Getenv(envTickets))
	os.Unsetenv(envTickets)
	if err != nil || n <= 2 {
		return nil
	}
	f := os.NewFile(uintptr(n), "tls-tickets")
	defer f.Close()
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return b
}
