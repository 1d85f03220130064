// Package l4 is RustyGate's TCP proxy: each `l4:` listener relays its
// connections byte for byte to a backend of an upstream pool. Bytes move
// with splice(2) (io.Copy between two *net.TCPConn), or, on a listener
// with `datapath: kernel`, in the kernel through a loader.Splicer (see
// kernel.go); half-closes are forwarded both ways, and an optional PROXY
// protocol header tells the backend who the client is.
//
// A listener with SNI routes reads the client's TLS ClientHello, and only
// that, to choose the backend group (sni.go, clienthello.go), then relays
// the hello's bytes and the rest of the stream unchanged; a listener with
// tls terminates TLS and relays the plaintext in userspace, its
// certificate served by a certs.Manager that watches the files, so a
// renewed pair is picked up without a reload (certs.go). Beyond the
// hello, l4 does not parse what it relays, and it does not touch BPF: the
// kernel datapath, when it splices sockets itself, is asked for through
// loader.
package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/upstream"
)

// listenerState is what a reload may replace for one listener.
type listenerState struct {
	cfg config.L4Listener
	// def is the group of the listener's own backends; nil on an SNI
	// listener without them.
	def *group
	// routes choose a group by server name; nil without `routes:`.
	routes *sniRoutes
	// tls terminates TLS with the certificates of certs; both nil
	// without `tls:`. certs may be the previous state's (see certs.go).
	tls   *tls.Config
	certs *certs.Manager
	// pools are every group's, for the registry.
	pools []*upstream.Pool
}

// Listener proxies the connections of one `l4:` entry. It accepts on one
// socket, or for a port range on one socket per port or on one socket the
// kernel steers the whole range to (see steer.go).
type Listener struct {
	name    string
	log     *slog.Logger
	metrics *observe.L4Metrics
	state   atomic.Pointer[listenerState]

	// listen, socks and steer are what the listener listens with (see
	// sockets); the manager sets them under its lock.
	listen string
	socks  []*socket
	steer  *loader.Steering

	active atomic.Int64
	mu     sync.Mutex
	conns  map[*conn]struct{}
	// wg counts the connections, accepting the accept loops.
	wg        sync.WaitGroup
	accepting sync.WaitGroup
	closed    atomic.Bool

	// splicer is the manager's, shared by its listeners.
	splicer *atomic.Pointer[loader.Splicer]
	// kernelWarned is set once this listener logged why it cannot use
	// kernel splicing.
	kernelWarned atomic.Bool
}

// conn is one proxied connection.
type conn struct {
	client, backend net.Conn
	// activity is when bytes last moved, as seen by the idle sweeper.
	lastSeen  time.Time
	lastBytes uint64
}

// Manager runs every `l4:` listener and applies reloads to them.
type Manager struct {
	log      *slog.Logger
	metrics  *observe.L4Metrics
	registry *upstream.Registry
	listen   func(addr string) (net.Listener, error)

	splicer atomic.Pointer[loader.Splicer]

	mu        sync.Mutex
	listeners map[string]*Listener
	// steerMode (datapath.mode) and bpffs say how port ranges are served
	// (SetSteering); steerNoted is set once the choice was logged.
	steerMode, bpffs string
	steerNoted       atomic.Bool
	shutdown         atomic.Bool
	stopSweep        chan struct{}
	sweepDone        chan struct{}
}

// NewManager returns a manager with no listeners. listen opens sockets
// (with Multipath TCP off, which kernel splicing needs).
func NewManager(log *slog.Logger, metrics *observe.Metrics, listen func(addr string) (net.Listener, error)) *Manager {
	m := &Manager{
		log:       log,
		metrics:   metrics.L4(),
		listen:    listen,
		listeners: map[string]*Listener{},
		steerMode: config.DatapathUserspace,
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	m.registry = upstream.NewRegistry(func(b *upstream.Backend, up bool, reason string) {
		metrics.BackendUp(b.Scope(), b.URL, up)
		if up {
			log.Info("backend up", "listener", b.Scope(), "backend", b.Addr, "reason", reason)
		} else {
			log.Warn("backend down", "listener", b.Scope(), "backend", b.Addr, "reason", reason)
		}
	})
	go m.sweep()
	return m
}

// Apply makes cfgs the running set of listeners: new ones are opened,
// removed ones stop accepting (their connections go on), and changed ones
// get their new pool and settings for new connections. A listener whose
// address (or port range) changed gets sockets for the new one, keeping
// those it has on addresses it still needs, then closes the others; its
// connections go on. On error nothing changed. Apply is Prepare then
// Commit.
func (m *Manager) Apply(cfgs []config.L4Listener) error {
	p, err := m.Prepare(cfgs)
	if err != nil {
		return err
	}
	return p.Commit()
}

// listensOn reports whether the listener already serves addr as it
// should: the same configured address, or for one port the address its
// socket was actually bound to.
func (l *Listener) listensOn(addr string) bool {
	if l.listen == addr {
		return true
	}
	if config.IsListenRange(addr) || config.IsListenRange(l.listen) || len(l.socks) != 1 {
		return false
	}
	return l.socks[0].serves(addr)
}

// current returns the state of the listener named name, nil when there
// is none. m.mu is held.
func (m *Manager) current(name string) *listenerState {
	if l := m.listeners[name]; l != nil {
		return l.state.Load()
	}
	return nil
}

// build builds the state of listener c; prev is its state now (nil for a
// new listener), whose certificate manager it keeps when its tls did not
// change. The TLS part comes last: a state that fails holds no manager.
func (m *Manager) build(c config.L4Listener, prev *listenerState) (*listenerState, error) {
	st := &listenerState{cfg: c}
	var err error
	if st.routes, st.pools, err = m.buildRoutes(c); err != nil {
		return nil, err
	}
	if len(c.Backends) > 0 {
		pool, err := m.buildPool(c.Name, c.Backends, c.Strategy, c.HealthCheck)
		if err != nil {
			return nil, err
		}
		st.def = &group{name: config.DefaultL4Route, pool: pool}
		st.pools = append(st.pools, pool)
	}
	if err := m.buildTLS(st, prev); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return st, nil
}

// buildPool builds the pool of one backend group, its backends known to
// the registry under scope.
func (m *Manager) buildPool(scope string, list []config.L4Backend, strategy string, hc config.L4HealthCheck) (*upstream.Pool, error) {
	var backends []*upstream.Backend
	for _, b := range list {
		be, err := m.registry.Backend(scope, "tcp://"+b.Addr, b.Weight)
		if err != nil {
			return nil, err
		}
		backends = append(backends, be)
	}
	opt := upstream.PoolOptions{Strategy: strategy}
	if hc.Interval > 0 {
		opt.Health = &upstream.HealthOptions{
			Prober:             upstream.TCPProber{},
			Interval:           hc.Interval.D(),
			Timeout:            hc.Timeout.D(),
			HealthyThreshold:   hc.HealthyThreshold,
			UnhealthyThreshold: hc.UnhealthyThreshold,
		}
	}
	return upstream.NewPool(backends, opt)
}

// Sockets returns the listening sockets by the address each was opened
// for (a listener's configured address; for a port range, HOST:PORT of
// each port with a socket), for a binary upgrade to hand them to the new
// process, which asks for them by the same addresses.
func (m *Manager) Sockets() map[string]net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]net.Listener, len(m.listeners))
	for _, l := range m.listeners {
		for _, s := range l.socks {
			out[s.addr] = s.ln
		}
	}
	return out
}

// Addr returns the bound address of a listener by name (for tests and
// logs; for a port range, its first socket's), or nil.
func (m *Manager) Addr(name string) net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.listeners[name]; l != nil && len(l.socks) > 0 {
		return l.socks[0].ln.Addr()
	}
	return nil
}

// Shutdown stops accepting everywhere, waits for connections to end until
// ctx is done, then closes the rest. Calls after the first return at once.
func (m *Manager) Shutdown(ctx context.Context) error {
	if m.shutdown.Swap(true) {
		return nil
	}
	m.mu.Lock()
	ls := make([]*Listener, 0, len(m.listeners))
	for _, l := range m.listeners {
		ls = append(ls, l)
		l.stopAccepting()
		releaseCerts(l.state.Load(), nil)
	}
	m.listeners = map[string]*Listener{}
	m.mu.Unlock()
	var err error
	for _, l := range ls {
		if e := l.wait(ctx); e != nil {
			err = e
		}
	}
	close(m.stopSweep)
	<-m.sweepDone
	m.registry.Close()
	return err
}

// stopAccepting detaches the listener's steering and closes its sockets;
// its connections go on.
func (l *Listener) stopAccepting() {
	if l.closed.CompareAndSwap(false, true) {
		closeSteering(l.log, l.name, l.steer)
		for _, s := range l.socks {
			s.close()
		}
	}
}

// wait waits for the listener's connections, closing them when ctx ends.
func (l *Listener) wait(ctx context.Context) error {
	l.accepting.Wait()
	all := make(chan struct{})
	go func() { l.wg.Wait(); close(all) }()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for c := range l.conns {
			c.client.Close()
			if c.backend != nil {
				c.backend.Close()
			}
		}
		l.mu.Unlock()
		<-all
		return ctx.Err()
	}
}

// serve accepts on one of the listener's sockets until it is closed.
func (l *Listener) serve(s *socket) {
	defer l.accepting.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = max(5*time.Millisecond, min(2*delay, time.Second))
			l.log.Warn("l4 accept failed, retrying", "listener", l.name, "error", err.Error())
			time.Sleep(delay)
			continue
		}
		delay = 0
		st := l.state.Load()
		if st.cfg.MaxConns > 0 && l.active.Load() >= int64(st.cfg.MaxConns) {
			c.Close()
			l.metrics.ConnClosed(l.name, "rejected", 0, 0, false)
			continue
		}
		l.active.Add(1)
		cn := &conn{client: c, lastSeen: time.Now()}
		l.mu.Lock()
		l.conns[cn] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.handle(cn, st)
	}
}

// handle reads what the listener needs of the client (its ClientHello on
// an SNI listener, the handshake on a TLS one), connects it to a backend
// of the group chosen and relays until both sides are done.
func (l *Listener) handle(cn *conn, st *listenerState) {
	start := time.Now()
	defer func() {
		l.mu.Lock()
		delete(l.conns, cn)
		l.mu.Unlock()
		l.active.Add(-1)
		l.wg.Done()
	}()
	client := cn.client
	clientAddr := addrPort(client.RemoteAddr())
	f, ok := l.front(st, client, clientAddr, start)
	if !ok {
		return
	}
	backend, b, err := l.connect(st, f.group.pool, clientAddr)
	if err != nil {
		f.conn.Close()
		l.metrics.ConnClosed(l.name, "backend_failed", 0, 0, false)
		l.log.Warn("l4 connection", append(l.logArgs(st, clientAddr, f), "result", "backend_failed",
			"error", err.Error(), "duration_ms", msSince(start))...)
		return
	}
	defer b.Release()
	l.mu.Lock()
	cn.backend = backend
	l.mu.Unlock()
	l.metrics.ConnOpened(l.name)
	if err := sendFirst(st, f, backend, clientAddr, addrPort(client.LocalAddr())); err != nil {
		f.conn.Close()
		backend.Close()
		l.metrics.ConnClosed(l.name, "backend_failed", 0, 0, true)
		return
	}
	datapath := "splice"
	if f.tls {
		datapath = "userspace" // crypto/tls reads and writes the client's bytes
	}
	toBackend, toClient, reason, ok := l.kernelRelay(st, f.conn, backend)
	if ok {
		datapath = "kernel"
	} else {
		toBackend, toClient, reason = relay(f.conn, backend)
	}
	toBackend += int64(len(f.peeked))
	b.ReportSuccess()
	l.metrics.ConnClosed(l.name, "proxied", toBackend, toClient, true)
	l.log.Info("l4 connection", append(l.logArgs(st, clientAddr, f), "backend", b.Addr,
		"duration_ms", msSince(start), "bytes_to_backend", toBackend, "bytes_to_client", toClient,
		"close", reason, "datapath", datapath)...)
}

// front reads the ClientHello or the TLS handshake and picks the group.
// false means the connection ended there: a failed hello, or no route for
// its server name.
func (l *Listener) front(st *listenerState, client net.Conn, clientAddr netip.AddrPort, start time.Time) (front, bool) {
	f, failed, err := st.accept(client)
	switch {
	case failed != "":
		client.Close()
		l.metrics.HelloFailure(l.name, failed)
		l.metrics.ConnClosed(l.name, resultHelloFailed, 0, 0, false)
		l.log.Info("l4 connection", "listener", l.name, "client", clientAddr.String(), "result", resultHelloFailed,
			"reason", failed, "error", err.Error(), "duration_ms", msSince(start))
		return f, false
	case f.group == nil:
		f.conn.Close()
		l.metrics.ConnClosed(l.name, resultNoRoute, 0, 0, false)
		l.log.Info("l4 connection", append(l.logArgs(st, clientAddr, f), "result", resultNoRoute, "duration_ms", msSince(start))...)
		return f, false
	}
	if st.routes != nil {
		l.metrics.RouteConnection(l.name, f.group.name)
	}
	return f, true
}

// sendFirst writes to the backend what precedes the client's bytes: the
// PROXY protocol header, then the ClientHello read to choose the route.
// Written before any relay starts, they are ahead of every other byte
// whichever datapath relays.
func sendFirst(st *listenerState, f front, backend net.Conn, src, dst netip.AddrPort) error {
	first := f.peeked
	if st.cfg.ProxyProtocol != "" {
		first = append(proxyHeader(st.cfg.ProxyProtocol, src, dst), f.peeked...)
	}
	if len(first) == 0 {
		return nil
	}
	backend.SetWriteDeadline(time.Now().Add(st.cfg.ConnectTimeout.D()))
	defer backend.SetWriteDeadline(time.Time{})
	_, err := backend.Write(first)
	return err
}

// logArgs are the leading fields of a connection's log line.
func (l *Listener) logArgs(st *listenerState, client netip.AddrPort, f front) []any {
	args := []any{"listener", l.name, "client", client.String()}
	if st.routes != nil {
		route := ""
		if f.group != nil {
			route = f.group.name
		}
		args = append(args, "route", route, "sni", loggedSNI(f.sni))
	}
	if f.tls {
		args = append(args, "tls", true)
	}
	return args
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// connect dials a backend, trying others on failure.
func (l *Listener) connect(st *listenerState, pool *upstream.Pool, client netip.AddrPort) (net.Conn, *upstream.Backend, error) {
	var hash uint64
	if pool.NeedsHash() {
		hash = upstream.HashString(client.Addr().String())
	}
	var tried []*upstream.Backend
	var lastErr error
	for attempt := 0; attempt <= *st.cfg.Retries; attempt++ {
		var b *upstream.Backend
		if attempt == 0 {
			b = pool.Pick(hash)
		} else {
			b = pool.PickExcluding(hash, tried)
		}
		if b == nil {
			if lastErr == nil {
				lastErr = errors.New("no healthy backend")
			}
			break
		}
		tried = append(tried, b)
		if err := b.TryAcquire(context.Background()); err != nil {
			lastErr = err
			continue
		}
		d := net.Dialer{Timeout: st.cfg.ConnectTimeout.D(), KeepAlive: 30 * time.Second}
		// Kernel splicing cannot take MPTCP sockets.
		d.SetMultipathTCP(false)
		c, err := d.Dial("tcp", b.Addr)
		if err == nil {
			return c, b, nil
		}
		b.Release()
		reason := "connect_failure"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "timeout"
		}
		l.metrics.BackendFailure(l.name, b.URL, reason)
		if d := b.ReportFailure(reason, time.Now()); d > 0 {
			l.log.Warn("backend ejected", "listener", l.name, "backend", b.Addr, "for", d.String())
		}
		lastErr = fmt.Errorf("%s: %w", b.Addr, err)
	}
	return nil, nil, lastErr
}

// halfCloseTimeout bounds how long the kernel splicer waits for the other
// direction once one side half-closed (splice(2) relays rely on the
// listener's idle timeout instead).
const halfCloseTimeout = 5 * time.Minute

// relay copies both ways until both directions end, forwarding each
// half-close, and reports the bytes moved and why it ended. An error on one
// side (a reset, a timeout) is passed on as a reset, never as a clean end
// of stream: a truncated upload must not look complete to the backend. A
// half-closed connection stays until the other side ends too, or until no
// byte moves for the listener's idle_timeout (the sweeper closes it).
func relay(client, backend net.Conn) (toBackend, toClient int64, reason string) {
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		toBackend, upErr = io.Copy(backend, client)
		if upErr != nil {
			abort(backend)
			return
		}
		closeWrite(backend)
	}()
	var downErr error
	toClient, downErr = io.Copy(client, backend)
	if downErr != nil {
		abort(client)
	} else {
		closeWrite(client)
	}
	wg.Wait()
	client.Close()
	backend.Close()
	switch {
	case downErr != nil:
		reason = "backend_error"
	case upErr != nil:
		reason = "client_error"
	default:
		reason = "eof"
	}
	return toBackend, toClient, reason
}

// abort closes c with a reset (SO_LINGER 0), so its peer sees the
// transfer fail instead of end.
func abort(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
