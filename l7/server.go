package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/observe"
)

// Server is the public HTTP listener: it accepts connections and serves
// them with the engine the configuration selects, reading the current
// snapshot at the start of each request.
type Server struct {
	snap      atomic.Pointer[Snapshot]
	log       *observe.Logger
	metrics   *observe.Metrics
	noRoute   *observe.RouteMetrics
	slog      *slog.Logger
	ids       *observe.RequestIDs
	transport *Transport
	tracer    *observe.Tracer // nil: tracing off

	h2  *http2.Server
	std *http.Server
	// h2base carries the HTTP/2 server's graceful-shutdown hook for
	// connections the fast engine hands over.
	h2base *http.Server
	// h3 serves HTTP/3 on the QUIC listeners h3lns (by UDP socket);
	// h3Port is the port Alt-Svc advertises (0: HTTP/3 off).
	h3     *http3.Server
	h3lns  map[net.PacketConn]*quic.EarlyListener
	h3Port atomic.Int32

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	stopping  atomic.Bool
	// acceptWG counts accept loops; wg counts connections. Shutdown
	// waits for the first before the second, so a connection accepted
	// just before the listener closed is still served.
	acceptWG sync.WaitGroup
	wg       sync.WaitGroup
	// h2Conns counts connections handed to the HTTP/2 server.
	h2wg sync.WaitGroup
	// h2conns are the connections of the HTTP/2 server of the fast
	// engine (h2conn.go), told to go away on Shutdown.
	h2conns map[*h2Conn]struct{}

	// loops are the event loops of the fast engine (nil: a goroutine per
	// connection); loopsOnce starts them with the first listener.
	loops     []*loop
	loopsOnce sync.Once
	loopNext  atomic.Uint32
	loopStats loopStats

	// httpsPort is the port of the TLS listener, for redirect_https (0:
	// none yet).
	httpsPort atomic.Int32
	// challenge answers ACME HTTP-01 challenges on the plain listener
	// (see SetHTTPChallenge).
	challenge atomic.Pointer[ChallengeFunc]
}

// loopStats counts what the event loops did.
type loopStats struct {
	// conns were handed to a loop; detaches and rejoins count moves off
	// and back onto one; turns, connections that let the others go first.
	conns, detaches, rejoins, turns atomic.Int64
	// parks and unparks count idle connections leaving their coroutine
	// and getting a new one; burstParks, the parks at the first wait
	// because the loop had liveIdleMax coroutines already.
	parks, unparks, burstParks atomic.Int64
	// moves counts backend connections taken from one loop's epoll set
	// to another's.
	moves atomic.Int64
}

// NewServer builds a server around an initial snapshot. metrics may be
// nil.
func NewServer(snap *Snapshot, tr *Transport, lg *observe.Logger, metrics *observe.Metrics) *Server {
	s := &Server{
		log:       lg,
		metrics:   metrics,
		noRoute:   metrics.Route(""),
		slog:      lg.Slog(),
		ids:       observe.NewRequestIDs(),
		transport: tr,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*clientConn]struct{}{},
		h3lns:     map[net.PacketConn]*quic.EarlyListener{},
	}
	s.snap.Store(snap)
	s.h3 = s.newHTTP3Server()
	sc := snap.Config.Server
	s.h2 = &http2.Server{IdleTimeout: sc.IdleTimeout.D()}
	s.h2base = &http.Server{Handler: http.HandlerFunc(s.serveStd)}
	if err := http2.ConfigureServer(s.h2base, s.h2); err != nil {
		s.slog.Warn("http2 setup", "error", err.Error())
	}
	s.std = &http.Server{
		Handler:           http.HandlerFunc(s.serveStd),
		ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
		IdleTimeout:       sc.IdleTimeout.D(),
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.slog.Handler(), slog.LevelDebug),
		ConnContext:       connTLSContext,
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	if sc.H2CEnabled() {
		protos.SetUnencryptedHTTP2(true)
	}
	s.std.Protocols = &protos
	return s
}

// SetTracer turns tracing on with t (nil turns it off). Call it before
// Serve.
func (s *Server) SetTracer(t *observe.Tracer) { s.tracer = t }

// Snapshot returns the snapshot new requests use.
func (s *Server) Snapshot() *Snapshot { return s.snap.Load() }

// SetSnapshot publishes a new snapshot; requests in flight keep theirs.
func (s *Server) SetSnapshot(snap *Snapshot) { s.snap.Store(snap) }

// Serve accepts plain HTTP connections on ln until Shutdown. It returns
// nil after a shutdown, or the accept error.
func (s *Server) Serve(ln net.Listener) error {
	if !s.addListener(ln) {
		return nil
	}
	defer s.acceptWG.Done()
	if s.snap.Load().Config.Server.Engine == "standard" {
		sc := s.snap.Load().Config.Server
		err := s.std.Serve(strictListener{Listener: ln, maxHead: sc.MaxHeaderBytes, headTimeout: sc.ReadHeaderTimeout.D()})
		if errors.Is(err, http.ErrServerClosed) || !s.serving(ln) {
			return nil
		}
		return err
	}
	return s.acceptLoop(ln, func(c net.Conn) {
		cc := s.newClientConn(c)
		if !s.toLoop(cc) {
			go cc.serve()
		}
	})
}

// addListener registers ln; false when the server is stopping. On true
// the caller owns one count of acceptWG.
func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	s.acceptWG.Add(1)
	return true
}

// acceptLoop accepts on ln and hands each connection to handle, until
// the listener is stopped (nil) or fails (the error).
func (s *Server) acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() || !s.serving(ln) {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE, ECONNABORTED and the like: back off and go on.
			tempDelay = max(5*time.Millisecond, min(2*tempDelay, time.Second))
			s.slog.Warn("accept failed, retrying", "error", err.Error(), "delay", tempDelay.String())
			time.Sleep(tempDelay)
			continue
		}
		tempDelay = 0
		handle(c)
	}
}

// startLoops starts the event loops the configuration asks for.
func (s *Server) startLoops() {
	s.loopsOnce.Do(func() {
		if n := s.snap.Load().Config.Server.EventLoopCount(); n > 0 {
			s.loops = newLoops(s, n)
		}
	})
}

// toLoop hands a new connection to an event loop. It reports false when
// the connection gets its own goroutine instead.
func (s *Server) toLoop(cc *clientConn) bool {
	s.startLoops()
	if len(s.loops) == 0 {
		return false
	}
	lp := s.loops[int(s.loopNext.Add(1))%len(s.loops)]
	cc.bc = newBufConn(cc.c, &clientBufPool, s.snap.Load().Config.Server.MaxHeaderBytes)
	if lp.add(cc) {
		return true
	}
	cc.bc.release()
	cc.bc, cc.wt = nil, nil
	return false
}

func (s *Server) serving(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.listeners[ln]
	return ok
}

// StopListener stops accepting on ln (after a reload moved the listen
// address); its connections go on.
func (s *Server) StopListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	ln.Close()
}

// newClientConn registers an accepted connection.
func (s *Server) newClientConn(c net.Conn) *clientConn {
	cc := &clientConn{srv: s, c: c, accepted: time.Now()}
	if ap, err := netipAddrPort(c.RemoteAddr()); err == nil {
		cc.clientIP = ap
		cc.peer, _ = netip.ParseAddr(ap)
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			cc.peerPort = uint16(ta.Port)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	return cc
}

func netipAddrPort(a net.Addr) (string, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().String(), nil
	}
	host, _, err := net.SplitHostPort(a.String())
	return host, err
}

// Shutdown stops accepting, lets requests in flight finish, and closes
// idle connections. When ctx ends first, remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	stdDone := make(chan error, 1)
	go func() {
		// net/http closes the listeners its Serve still tracks, which
		// were closed above: that second close is not a failure.
		err := s.std.Shutdown(ctx)
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		stdDone <- err
	}()
	go s.h2base.Shutdown(ctx)
	s.goAwayH2()
	h3Done := make(chan struct{})
	go func() {
		s.shutdownHTTP3(ctx)
		close(h3Done)
	}()

	done := make(chan struct{})
	go func() {
		<-h3Done
		s.acceptWG.Wait()
		s.wg.Wait()
		s.h2wg.Wait()
		close(done)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for cc := range s.conns {
			cc.wakeIfIdle()
		}
		s.mu.Unlock()
		select {
		case <-done:
			s.stopLoops()
			return <-stdDone
		case <-ctx.Done():
			s.mu.Lock()
			for cc := range s.conns {
				cc.c.Close()
			}
			s.mu.Unlock()
			for _, lp := range s.loops {
				lp.closeAll()
			}
			s.std.Close()
			<-done
			s.stopLoops()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stopLoops ends the event loops once no connection is left on them.
func (s *Server) stopLoops() {
	s.loopsOnce.Do(func() {}) // no loop starts after this
	for _, lp := range s.loops {
		lp.shutdown()
	}
}

// clientConn is one client connection on the fast engine.
type clientConn struct {
	srv      *Server
	c        net.Conn
	bc       *bufConn
	clientIP string
	peer     netip.Addr
	peerPort uint16
	// accepted is when the connection was accepted (over TLS: when the
	// handshake ended): its first request head must be complete
	// read_header_timeout later.
	accepted time.Time
	// tls is the connection's TLS state (nil: plain HTTP).
	tls *tls.ConnectionState

	// busy is 1 while an exchange runs; an idle connection is woken by
	// Shutdown.
	busy atomic.Int32
	// wt is the connection's event loop handle (nil: its own goroutine).
	wt *waiter

	// connWork is held only while the connection reads or serves a
	// request: an idle connection on an event loop gives it back.
	*connWork
	// parking is set when the connection leaves its loop's coroutine to
	// wait, idle, without one (see loop_linux.go).
	parking bool
	// served counts requests; read by Shutdown.
	served   atomic.Int64
	graceSet atomic.Bool
	// linger: the connection closes with a request body left unread
	// (see lingerClose).
	linger bool
}

// connWork is the state of a connection's current request.
type connWork struct {
	req        request
	x          exchange
	reqBody    bodyReader
	chunkedOut bool
	// replay holds a request body read ahead so it can be resent.
	replay []byte
	// reqHead is the current request's head in the read buffer; headCopy
	// keeps it while a streamed body reuses that buffer (pinHead).
	reqHead, headCopy []byte
}

var connWorkPool = sync.Pool{New: func() any { return new(connWork) }}

// maxPooledReplay bounds the replay buffer a pooled connWork keeps.
const maxPooledReplay = 64 << 10

// takeWork gives the connection its request state.
func (cc *clientConn) takeWork() {
	if cc.connWork == nil {
		cc.connWork = connWorkPool.Get().(*connWork)
	}
}

// releaseWork returns the request state to its pool, keeping its slices'
// storage but nothing that points into the connection's buffers, its
// snapshot or its route.
func (cc *clientConn) releaseWork() {
	w := cc.connWork
	if w == nil {
		return
	}
	cc.connWork = nil
	w.x.reset()
	w.reqBody.init(nil, bodyNone, 0)
	w.reqBody.conn = nil
	w.reqHead = nil
	if cap(w.replay) > maxPooledReplay {
		w.replay = nil
	}
	connWorkPool.Put(w)
}

// pinHead moves the request head out of the read buffer, which reading a
// streamed body overwrites, and points the request's fields at the copy.
func (cc *clientConn) pinHead() {
	cc.headCopy = append(cc.headCopy[:0], cc.reqHead...)
	old, nb := cc.reqHead, cc.headCopy
	base := uintptr(unsafe.Pointer(unsafe.SliceData(old)))
	move := func(p *[]byte) {
		if len(*p) == 0 {
			return
		}
		at := uintptr(unsafe.Pointer(unsafe.SliceData(*p)))
		if at < base || at-base+uintptr(len(*p)) > uintptr(len(old)) {
			return // not in the head (set by the proxy)
		}
		off := int(at - base)
		*p = nb[off : off+len(*p)]
	}
	r := &cc.req
	for _, p := range []*[]byte{&r.method, &r.target, &r.path, &r.query, &r.host, &r.upgrade, &r.xff, &r.via, &r.requestID, &r.userAgent} {
		move(p)
	}
	for i := range r.fields {
		move(&r.fields[i].name)
		move(&r.fields[i].value)
	}
	cc.reqHead = nb
}

// wakeIfIdle closes a keep-alive connection waiting between requests. A
// connection that has not sent its first request yet gets a moment to do
// so (it may have been accepted just before the listener closed).
func (cc *clientConn) wakeIfIdle() {
	if cc.busy.Load() != 0 {
		return
	}
	if cc.served.Load() > 0 {
		cc.c.SetReadDeadline(time.Unix(1, 0))
	} else if cc.graceSet.CompareAndSwap(false, true) {
		cc.c.SetReadDeadline(time.Now().Add(time.Second))
	}
}

func (cc *clientConn) serve() {
	s := cc.srv
	cc.parking = false
	defer func() {
		if v := recover(); v != nil {
			cc.parking = false
			s.slog.Error("panic serving connection", "client_ip", cc.clientIP, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
		if !cc.parking {
			cc.forget()
		}
	}()
	if cc.bc == nil {
		cc.bc = newBufConn(cc.c, &clientBufPool, s.snap.Load().Config.Server.MaxHeaderBytes)
	} else if cc.bc.rbuf == nil {
		cc.bc.acquire()
	}
	cc.takeWork()
	handedOff := false
	defer func() {
		switch {
		case handedOff || cc.parking:
		case cc.linger:
			lingerClose(cc.c)
		default:
			cc.c.Close()
		}
		cc.bc.release()
		cc.releaseWork()
	}()
	for {
		cc.wt.rejoin()
		ok, h2 := cc.readRequest()
		if h2 {
			handedOff = true
			cc.wt.detach()
			cc.serveH2()
			return
		}
		if !ok {
			return
		}
		cc.busy.Store(1)
		keep := cc.exchange()
		cc.busy.Store(0)
		if !keep || s.stopping.Load() {
			return
		}
		cc.wt.turn()
	}
}

// forget removes a connection that has ended from the server.
func (cc *clientConn) forget() {
	s := cc.srv
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	s.wg.Done()
}

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// readRequest reads and parses the next request head into cc.req. It
// answers parse errors itself and reports whether an exchange follows, or
// that the connection speaks HTTP/2.
func (cc *clientConn) readRequest() (ok, h2 bool) {
	s := cc.srv
	sc := s.snap.Load().Config.Server
	bc := cc.bc
	// headStart is when the head's first byte was seen (zero: not yet).
	var headStart time.Time
	for {
		if buf := bc.buffered(); len(buf) > 0 {
			if cc.served.Load() == 0 && sc.H2CEnabled() && bytes.HasPrefix(buf, h2Preface[:min(len(buf), len(h2Preface))]) {
				if len(buf) >= len(h2Preface) {
					return false, true
				}
			} else {
				n, err := parseRequest(buf, &cc.req)
				if err == nil {
					cc.reqHead = buf[:n]
					bc.consume(n)
					return true, false
				}
				if err != errNeedMore {
					if cc.served.Load() == 0 && sc.H2CEnabled() && err == errBadRequestLine && notHTTP1Line(buf) {
						// Three words with neither a request-target nor
						// an HTTP-version: an invalid HTTP/2 preface,
						// which ends the connection unanswered (RFC 9113
						// 3.4).
						return false, false
					}
					cc.badRequest(err)
					return false, false
				}
			}
		}
		if s.stopping.Load() && len(bc.buffered()) == 0 && cc.served.Load() > 0 {
			return false, false
		}
		now := time.Now()
		if len(bc.buffered()) > 0 && headStart.IsZero() {
			headStart = now
		}
		cc.armHeadDeadline(sc.ReadHeaderTimeout.D(), sc.IdleTimeout.D(), headStart, now)
		var err error
		if len(bc.buffered()) == 0 {
			// Waiting for a head's first byte, nothing is lost by
			// waiting without buffers or a coroutine.
			err = bc.fillIdle()
		} else {
			err = bc.fill()
		}
		if err == errPark {
			cc.parking = true
			return false, false
		}
		if err != nil {
			switch {
			case err == errHeadTooLarge:
				cc.badRequest(errHeadTooLarge)
			case isTimeout(err) && len(bc.buffered()) > 0 && !s.stopping.Load():
				cc.writeSimpleError(408, "request timeout")
			}
			return false, false
		}
	}
}

// notHTTP1Line reports whether the first line of buf has three words,
// none of them a request-target or an HTTP-version ("INVALID CONNECTION
// PREFACE"); other malformed lines are answered with a 400.
func notHTTP1Line(buf []byte) bool {
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = bytes.TrimSuffix(buf[:i], []byte{'\r'})
	}
	f := bytes.Split(buf, []byte{' '})
	if len(f) != 3 || len(f[1]) == 0 {
		return false
	}
	target, version := f[1], f[2]
	return target[0] != '/' && target[0] != '*' && !bytes.Contains(target, []byte("://")) &&
		!bytes.HasPrefix(version, []byte("HTTP/"))
}

// armHeadDeadline sets the read deadline while a request head is read.
// read_header_timeout bounds a new connection's first head from the
// accept, and a keep-alive connection's next head from its first byte
// (nginx's client_header_timeout and net/http's ReadHeaderTimeout do the
// same), so a head dripped a byte at a time is cut; before that first
// byte, idle_timeout applies.
func (cc *clientConn) armHeadDeadline(rht, idle time.Duration, headStart, now time.Time) {
	switch {
	case cc.served.Load() == 0:
		cc.bc.rdl.ensureRead(cc.c, cc.accepted.Add(rht), deadlineSlack(rht))
	case !headStart.IsZero():
		cc.bc.rdl.ensureRead(cc.c, headStart.Add(rht), deadlineSlack(rht))
	default:
		cc.bc.rdl.ensureRead(cc.c, now.Add(idle), deadlineSlack(idle))
	}
}

// badRequest answers a malformed request and marks the connection for
// closing: after a framing error nothing more on it can be trusted.
func (cc *clientConn) badRequest(err error) {
	status := 400
	switch err {
	case errHeadTooLarge:
		status = 431
	case errBadVersion:
		status = 505
	case errBadTE:
		status = 501
		if cc.req.proto == 10 {
			status = 400
		}
	}
	cc.writeSimpleError(status, err.Error())
	x := &cc.x
	*x = exchange{srv: cc.srv, req: &cc.req, start: time.Now(), clientIP: cc.clientIP, proto: "HTTP/1.1", status: status, errMsg: err.Error()}
	cc.req.reset()
	x.done()
}

func (cc *clientConn) writeSimpleError(status int, msg string) {
	body := `{"error":"` + msg + `","status":` + strconv.Itoa(status) + "}\n"
	w := cc.bc.wbuf[:0]
	w = append(w, "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(status), 10)
	w = append(w, ' ')
	w = append(w, statusText(status)...)
	w = append(w, '\r', '\n')
	w = appendDate(w)
	w = append(w, "Content-Type: application/json\r\nConnection: close\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	cc.bc.wbuf = w
	cc.bc.wdl.cur = time.Now().Add(time.Second)
	cc.c.SetWriteDeadline(cc.bc.wdl.cur)
	cc.bc.flush()
}

// reset zeroes x, keeping the storage of its slices for reuse.
func (x *exchange) reset() {
	trailers, respFields := x.br.trailers, x.resp.fields
	addReq, addResp, delResp, values := x.addReq[:0], x.addResp[:0], x.delResp[:0], x.values[:0]
	clear(x.values)
	pending, filterers, headBuf := x.phase.pending, x.phase.filterers, x.phase.headBuf[:0]
	clear(pending[:cap(pending)])
	clear(filterers[:cap(filterers)])
	spanMem := x.spanMem
	*x = exchange{}
	x.spanMem = spanMem
	x.br.trailers = trailers
	x.resp.fields = respFields
	x.addReq, x.addResp, x.delResp, x.values = addReq, addResp, delResp, values
	x.phase.pending, x.phase.filterers, x.phase.headBuf = pending[:0], filterers[:0], headBuf
}

// exchange runs one request; it reports whether the connection stays open.
func (cc *clientConn) exchange() bool {
	s := cc.srv
	req := &cc.req
	x := &cc.x
	x.reset()
	x.srv, x.snap, x.req = s, s.snap.Load(), req
	x.start, x.clientIP, x.scheme, x.sink = time.Now(), cc.clientIP, "http", cc
	if cc.tls != nil {
		x.scheme, x.tls = "https", cc.tls
	}
	x.peer, x.peerPort = cc.peer, cc.peerPort
	x.wt = cc.wt
	if req.proto == 10 {
		x.proto = "HTTP/1.0"
	} else {
		x.proto = "HTTP/1.1"
	}
	cc.served.Add(1)
	cc.chunkedOut = false
	if req.hasBody() {
		buffered := cc.bc.buffered()
		if !req.chunked && req.contentLength <= int64(len(buffered)) {
			x.bodyBuffered = buffered[:req.contentLength]
			cc.bc.consume(int(req.contentLength))
		} else {
			kind := bodyLength
			if req.chunked {
				kind = bodyChunked
			}
			// The body streams while the response is read: not on a loop.
			// Reading it reuses the buffer the head is in.
			cc.wt.detach()
			cc.pinHead()
			cc.reqBody.init(cc.bc, kind, req.contentLength)
			cc.reqBody.inactivity = x.snap.Config.Server.IdleTimeout.D()
			cc.reqBody.conn = cc.c
			x.body = &cc.reqBody
		}
	}
	if req.upgrade != nil {
		cc.wt.detach()
	}
	x.serve()
	x.done()
	if req.closeConn || x.closeClient {
		// A body still streaming in (a request refused with 413, say)
		// is off the loop already (see above).
		cc.linger = req.hasBody() && !x.bodyDone && x.bodyBuffered == nil
		return false
	}
	return true
}

// lingerTime bounds how long a connection closing with an unread request
// body reads and drops what the client still sends.
const lingerTime = 2 * time.Second

// lingerClose closes a connection whose client may still be sending a
// body, as nginx's lingering close does: closing with unread data would
// make the kernel send a reset, which can destroy the response at the
// client before it reads it. The write side is shut first, then the
// rest is read and dropped until the client closes or lingerTime passes.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, c)
	}
	c.Close()
}

// The fast engine's responseSink.

func (cc *clientConn) ensureWriteDeadline() {
	sc := cc.x.snap.Config.Server
	cc.bc.wdl.ensureWrite(cc.c, time.Now().Add(sc.WriteTimeout.D()), deadlineSlack(sc.WriteTimeout.D()))
}

func (cc *clientConn) informational(resp *response) error {
	if cc.req.proto < 11 {
		return nil
	}
	w := appendStatusLine(cc.bc.wbuf, resp)
	if resp != &continueResponse {
		w = appendFields(w, resp.fields)
	}
	cc.bc.wbuf = append(w, '\r', '\n')
	cc.ensureWriteDeadline()
	return cc.bc.flush()
}

func appendStatusLine(w []byte, resp *response) []byte {
	w = append(w, "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(resp.status), 10)
	w = append(w, ' ')
	if len(resp.reason) > 0 {
		w = append(w, resp.reason...)
	} else {
		w = append(w, statusText(resp.status)...)
	}
	return append(w, '\r', '\n')
}

func appendFields(w []byte, fields []hfield) []byte {
	for i := range fields {
		f := &fields[i]
		if f.skip {
			continue
		}
		w = append(w, f.name...)
		w = append(w, ':', ' ')
		w = append(w, f.value...)
		w = append(w, '\r', '\n')
	}
	return w
}

func (cc *clientConn) head(x *exchange, resp *response) error {
	req := &cc.req
	w := appendStatusLine(cc.bc.wbuf, resp)
	w = appendFields(w, resp.fields)
	if !resp.hasDate {
		w = appendDate(w)
	}
	if resp.kind == bodyChunked || resp.kind == bodyUntilClose {
		if req.proto >= 11 {
			w = append(w, "Transfer-Encoding: chunked\r\n"...)
			cc.chunkedOut = true
		} else {
			x.closeClient = true
		}
	}
	w = append(w, "X-Request-Id: "...)
	w = append(w, x.reqID...)
	w = append(w, '\r', '\n')
	w = appendStrHeaders(w, x.addResp)
	if v := cc.srv.altSvc(x); v != "" {
		w = append(append(append(w, "Alt-Svc: "...), v...), '\r', '\n')
	}
	w = cc.appendConnection(w, x)
	cc.bc.wbuf = append(w, '\r', '\n')
	return nil
}

func (cc *clientConn) appendConnection(w []byte, x *exchange) []byte {
	if x.closeClient || cc.req.closeConn || cc.srv.stopping.Load() {
		x.closeClient = true
		return append(w, "Connection: close\r\n"...)
	}
	if cc.req.proto == 10 {
		return append(w, "Connection: keep-alive\r\n"...)
	}
	return w
}

func (cc *clientConn) body(p []byte) error {
	if !cc.bc.buffers(len(p) + chunkOverhead) {
		cc.ensureWriteDeadline()
	}
	if cc.chunkedOut {
		cc.bc.wbuf = appendChunkHeader(cc.bc.wbuf, len(p))
		if err := cc.bc.write(p); err != nil {
			return err
		}
		return cc.bc.write(crlf)
	}
	return cc.bc.write(p)
}

// The write deadline is armed before the writes that reach the socket;
// bytes only appended to the write buffer need none, and a small
// response's head and body are written at once, with one reading of
// the clock.

func (cc *clientConn) flush() error {
	if len(cc.bc.wbuf) == 0 {
		return nil
	}
	cc.ensureWriteDeadline()
	return cc.bc.flush()
}

func (cc *clientConn) finish(trailers []hfield) error {
	if cc.chunkedOut {
		w := append(cc.bc.wbuf, '0', '\r', '\n')
		w = appendFields(w, trailers)
		cc.bc.wbuf = append(w, '\r', '\n')
	}
	return cc.flush()
}

func (cc *clientConn) local(x *exchange, r *localReply) error {
	w := cc.bc.wbuf
	w = append(w, "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(r.status), 10)
	w = append(w, ' ')
	w = append(w, statusText(r.status)...)
	w = append(w, '\r', '\n')
	w = appendDate(w)
	hw := wireHeaders{w}
	x.localHeaders(&hw, r)
	if v := cc.srv.altSvc(x); v != "" {
		hw.add("Alt-Svc", v)
	}
	w = cc.appendConnection(hw.b, x)
	w = append(w, '\r', '\n')
	if r.sendBody {
		w = append(w, r.body...)
	}
	cc.bc.wbuf = w
	cc.ensureWriteDeadline()
	return cc.bc.flush()
}

// wireHeaders appends header fields in HTTP/1.1 form.
type wireHeaders struct{ b []byte }

func (h *wireHeaders) add(name, value string) {
	h.b = append(append(append(append(h.b, name...), ": "...), value...), '\r', '\n')
}

func (h *wireHeaders) addBytes(name string, value []byte) {
	h.b = append(append(append(append(h.b, name...), ": "...), value...), '\r', '\n')
}

func (h *wireHeaders) addInt(name string, v int64) {
	h.b = append(strconv.AppendInt(append(append(h.b, name...), ": "...), v, 10), '\r', '\n')
}

func (cc *clientConn) abortRead() {
	cc.reqBody.abort(cc.c)
}

// context never ends: the fast engine notices a gone client when it
// writes to it.
func (cc *clientConn) context() context.Context { return context.Background() }

// appendUpgradeHead writes a 101 response head: the backend's fields plus
// the hop-by-hop Connection and Upgrade it switched with.
func appendUpgradeHead(w []byte, resp *response) []byte {
	w = appendStatusLine(w, resp)
	w = appendFields(w, resp.fields)
	if !resp.hasDate {
		w = appendDate(w)
	}
	w = append(w, "Connection: Upgrade\r\n"...)
	for i := range resp.fields {
		if classify(resp.fields[i].name) == hUpgrade {
			w = append(w, "Upgrade: "...)
			w = append(w, resp.fields[i].value...)
			w = append(w, '\r', '\n')
		}
	}
	return append(w, '\r', '\n')
}

func (cc *clientConn) tunnel(x *exchange, resp *response, bc *backendConn) error {
	cc.bc.wbuf = appendUpgradeHead(cc.bc.wbuf, resp)
	if err := cc.bc.flush(); err != nil {
		bc.close()
		return err
	}
	cc.busy.Store(2)
	pipe(cc.c, cc.bc.buffered(), bc.c, bc.buffered(), &x.bytesIn, &x.bytesOut)
	cc.bc.r, cc.bc.w = 0, 0
	bc.close()
	return nil
}

// pipe copies both ways between two connections until both directions
// end, forwarding half-closes. pending bytes already read from each side
// go first.
func pipe(client net.Conn, clientPending []byte, backend net.Conn, backendPending []byte, in, out *int64) {
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, _ := copyWithPending(backend, client, clientPending)
		atomic.AddInt64(in, n)
		closeWrite(backend)
	}()
	n, _ := copyWithPending(client, backend, backendPending)
	atomic.AddInt64(out, n)
	closeWrite(client)
	// The backend ended its side: give the client side a moment to finish,
	// then close both so nothing lingers.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		client.Close()
		backend.Close()
		<-done
	}
	client.Close()
	backend.Close()
}

func copyWithPending(dst, src net.Conn, pending []byte) (int64, error) {
	var n int64
	if len(pending) > 0 {
		m, err := dst.Write(pending)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	m, err := io.Copy(dst, src)
	return n + m, err
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// serveH2 hands the connection to the HTTP/2 server.
func (cc *clientConn) serveH2() {
	s := cc.srv
	pc := &prefixConn{Conn: cc.c, pending: append([]byte(nil), cc.bc.buffered()...)}
	cc.busy.Store(3) // the HTTP/2 server drains it on shutdown
	cc.c.SetDeadline(time.Time{})
	s.h2wg.Add(1)
	defer s.h2wg.Done()
	if s.snap.Load().Config.Server.Engine == "standard" {
		s.h2.ServeConn(pc, &http2.ServeConnOpts{Handler: s.h2base.Handler, BaseConfig: s.h2base})
		return
	}
	s.serveHTTP2(cc, cc.c, pc)
}

// prefixConn replays bytes already read before reading the connection.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// readBody reads the next n body bytes into memory, so the request can be
// replayed on another backend.
func (cc *clientConn) readBody(x *exchange, n int64) ([]byte, error) {
	if int64(cap(cc.replay)) < n {
		cc.replay = make([]byte, 0, n)
	}
	buf := cc.replay[:0]
	for int64(len(buf)) < n {
		if len(cc.bc.buffered()) == 0 {
			idle := x.snap.Config.Server.IdleTimeout.D()
			cc.bc.rdl.ensureRead(cc.c, time.Now().Add(idle), deadlineSlack(idle))
			if err := cc.bc.fill(); err != nil {
				x.closeClient = true
				return nil, err
			}
		}
		take := min(int64(len(cc.bc.buffered())), n-int64(len(buf)))
		buf = append(buf, cc.bc.buffered()[:take]...)
		cc.bc.consume(int(take))
	}
	cc.replay = buf
	return buf, nil
}
