package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	errStreamReset = errors.New("http2: stream reset")
	errH2Stalled   = errors.New("http2: client window stayed closed past write_timeout")
)

// h2Stream is one request on an h2Conn and the responseSink its exchange
// writes to. Streams are pooled with their buffers.
type h2Stream struct {
	hc *h2Conn
	id uint32

	// Guarded by hc.mu.
	sendWin    int64
	recvWin    int64 // what the client may still send on the stream
	remoteDone bool  // the client ended its side (END_STREAM or reset)
	reset      bool  // reset by either side, or the connection is gone
	aborted    bool  // the proxy stopped reading the body
	recv       []byte
	recvN      int64 // body bytes received
	declared   int64 // content-length (-1: none)
	ctx        context.Context
	cancel     context.CancelCauseFunc
	winWait    bool
	dataWait   bool

	winWake  chan struct{}
	dataWake chan struct{}

	// Owned by the exchange's goroutine.
	req      request
	x        *exchange // kept with its buffers across pooled uses
	arena    []byte
	spare    []byte
	unacked  int64 // body bytes consumed, not yet credited to the stream
	enc      *hpack.Encoder
	hdr      []byte // the encoded head, not yet written
	lname    []byte
	scratch  []byte // a date or a number being encoded
	headOut  bool   // the head (HEADERS) was written
	wrote    bool   // the response was started (head encoded)
	ended    bool   // END_STREAM was written
	complete bool   // the response is complete
	remain   int64
	// headersEnded: the request's HEADERS carried END_STREAM (no body).
	headersEnded bool
	// shared: the body was handed out as a bodySource (not pooled).
	shared bool
}

var h2StreamPool = sync.Pool{New: func() any {
	st := &h2Stream{winWake: make(chan struct{}, 1), dataWake: make(chan struct{}, 1), x: new(exchange)}
	st.enc = hpack.NewEncoder((*h2Block)(st))
	// Without the dynamic table, each stream encodes on its own and the
	// connection needs no lock around the encoder (nginx encodes
	// responses the same way).
	st.enc.SetMaxDynamicTableSizeLimit(0)
	return st
}}

// h2Block is the hpack encoder's output: the stream's header block.
type h2Block h2Stream

func (b *h2Block) Write(p []byte) (int, error) {
	b.hdr = append(b.hdr, p...)
	return len(p), nil
}

func newH2Stream(hc *h2Conn, id uint32) *h2Stream {
	st := h2StreamPool.Get().(*h2Stream)
	st.hc, st.id = hc, id
	st.recvWin = h2StreamWindow
	st.declared = -1
	return st
}

// release returns st to the pool once neither the connection nor the
// exchange refers to it.
func (st *h2Stream) release() {
	if st.shared {
		return
	}
	if cap(st.arena) > 64<<10 {
		st.arena = nil
	}
	if cap(st.recv) > h2StreamWindow || cap(st.spare) > h2StreamWindow {
		st.recv, st.spare = nil, nil
	}
	*st = h2Stream{
		winWake: st.winWake, dataWake: st.dataWake, enc: st.enc, x: st.x,
		req:   request{fields: st.req.fields[:0], pathBuf: st.req.pathBuf[:0]},
		arena: st.arena[:0], recv: st.recv[:0], spare: st.spare[:0],
		hdr: st.hdr[:0], lname: st.lname[:0], scratch: st.scratch[:0],
	}
	select {
	case <-st.winWake:
	default:
	}
	select {
	case <-st.dataWake:
	default:
	}
	h2StreamPool.Put(st)
}

// cancelLocked resets the stream from the gateway's side (hc.mu held):
// the exchange's waits and its context end.
func (st *h2Stream) cancelLocked(err error) {
	if st.reset {
		return
	}
	st.reset = true
	if st.cancel != nil {
		st.cancel(err)
	}
	st.wakeLocked()
	if st.dataWait {
		select {
		case st.dataWake <- struct{}{}:
		default:
		}
	}
}

// wakeLocked wakes a write waiting for window.
func (st *h2Stream) wakeLocked() {
	if st.winWait {
		select {
		case st.winWake <- struct{}{}:
		default:
		}
	}
}

// receiveLocked takes a DATA frame's payload (hc.mu held) and returns a
// stream error code (0: none) and how many bytes nobody will read (their
// window is the caller's to give back).
func (st *h2Stream) receiveLocked(data []byte, n int64, end bool) (http2.ErrCode, int64) {
	if n > st.recvWin {
		return http2.ErrCodeFlowControl, 0
	}
	st.recvWin -= n
	st.recvN += int64(len(data))
	if st.declared >= 0 && (st.recvN > st.declared || end && st.recvN != st.declared) {
		return http2.ErrCodeProtocol, 0
	}
	var dropped int64
	if !st.reset && !st.aborted {
		st.recv = append(st.recv, data...)
	} else {
		dropped = int64(len(data))
	}
	if end {
		st.remoteDone = true
	}
	if st.dataWait {
		select {
		case st.dataWake <- struct{}{}:
		default:
		}
	}
	return 0, dropped
}

// run serves the stream's request on its own goroutine.
func (st *h2Stream) run() {
	defer st.end()
	defer func() {
		if v := recover(); v != nil {
			st.hc.srv.slog.Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			st.complete = false
		}
	}()
	x := st.newExchange()
	if err := st.prepare(); err != nil {
		x.ensureRequestID()
		x.fail(&proxyError{status: 400, msg: err.Error()}, "")
		x.done()
		return
	}
	if st.req.hasBody() && st.req.contentLength > 0 && st.req.contentLength <= replayLimit {
		buf, err := st.readBody(x, st.req.contentLength)
		if err != nil {
			x.ensureRequestID()
			x.fail(errClientBody, "")
			x.done()
			return
		}
		x.bodyBuffered = buf
	} else if st.req.hasBody() {
		x.body = st
		// The HTTP/2 transport to a backend may read the body after the
		// exchange ended: the stream is then left to the collector.
		st.shared = true
	}
	x.serve()
	x.done()
}

func (st *h2Stream) newExchange() *exchange {
	hc := st.hc
	cc := hc.cc
	x := st.x
	x.reset()
	x.srv, x.snap, x.req, x.start = hc.srv, hc.srv.snap.Load(), &st.req, time.Now()
	x.scheme, x.sink, x.proto, x.tls = "http", st, "HTTP/2.0", cc.tls
	x.clientIP, x.peer, x.peerPort = cc.clientIP, cc.peer, cc.peerPort
	if cc.tls != nil {
		x.scheme = "https"
	}
	return x
}

// prepare applies the checks of the other engines to the request.
func (st *h2Stream) prepare() error {
	req := &st.req
	if !isToken(req.method) {
		return errBadMethod
	}
	if string(req.method) == "CONNECT" {
		return errBadTarget
	}
	if err := splitTarget(req); err != nil {
		return err
	}
	if err := req.interpretFields(); err != nil {
		return err
	}
	req.closeConn, req.upgrade = false, nil
	if !st.headersEnded && req.contentLength < 0 {
		req.chunked = true
	}
	return nil
}

// refuse answers status (a header list too large) without an exchange.
func (st *h2Stream) refuse(status int) {
	defer st.end()
	st.encField(":status", statusString(status))
	st.finish(nil)
}

// end closes the stream after its exchange: a response cut short is
// reset, as is a request body the client still sends.
func (st *h2Stream) end() {
	hc := st.hc
	hc.mu.Lock()
	hc.handlers--
	code, rst := http2.ErrCodeNo, false
	switch {
	case st.reset:
	case !st.complete:
		code, rst = http2.ErrCodeInternal, true
	case !st.remoteDone:
		rst = true
	}
	st.cancelLocked(errStreamReset)
	left := int64(len(st.recv))
	hc.forgetLocked(st)
	hc.mu.Unlock()
	if rst {
		if code != http2.ErrCodeNo {
			hc.srv.slog.Debug("http2 stream reset: response cut short", "client_ip", hc.cc.clientIP, "stream", st.id)
		}
		hc.writeReset(st.id, code)
	}
	hc.credit(left)
	st.release()
	hc.wg.Done()
}

// The bodySource of a request body.

func (st *h2Stream) next() ([]byte, error) {
	hc := st.hc
	hc.mu.Lock()
	for len(st.recv) == 0 {
		switch {
		case st.reset || st.aborted:
			hc.mu.Unlock()
			return nil, errStreamReset
		case st.remoteDone:
			hc.mu.Unlock()
			return nil, io.EOF
		}
		st.dataWait = true
		hc.mu.Unlock()
		idle := hc.srv.snap.Load().Config.Server.IdleTimeout.D()
		t := time.NewTimer(idle)
		select {
		case <-st.dataWake:
		case <-t.C:
			hc.mu.Lock()
			st.dataWait = false
			hc.mu.Unlock()
			return nil, errClientBodyFailed
		}
		t.Stop()
		hc.mu.Lock()
		st.dataWait = false
	}
	p := st.recv
	st.recv, st.spare = st.spare[:0], p
	hc.mu.Unlock()
	st.consumed(int64(len(p)))
	return p, nil
}

// consumed credits the client's windows for n bytes read: the
// connection's at once (in hc.credit's batches), the stream's in batches
// of a quarter window while the client still sends.
func (st *h2Stream) consumed(n int64) {
	st.hc.credit(n)
	st.unacked += n
	if st.unacked < h2StreamWindow/4 {
		return
	}
	n, st.unacked = st.unacked, 0
	st.hc.creditStream(st.id, n)
}

func (st *h2Stream) finished() bool {
	st.hc.mu.Lock()
	defer st.hc.mu.Unlock()
	return st.remoteDone && len(st.recv) == 0
}

func (st *h2Stream) readBody(x *exchange, n int64) ([]byte, error) {
	buf := make([]byte, 0, n)
	for int64(len(buf)) < n {
		p, err := st.next()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			x.closeClient = true
			return nil, err
		}
		buf = append(buf, p...)
	}
	return buf, nil
}

func (st *h2Stream) abortRead() {
	st.hc.mu.Lock()
	st.aborted = true
	if st.dataWait {
		select {
		case st.dataWake <- struct{}{}:
		default:
		}
	}
	st.hc.mu.Unlock()
}

// context ends when the client resets the stream or the connection goes.
func (st *h2Stream) context() context.Context {
	st.hc.mu.Lock()
	defer st.hc.mu.Unlock()
	if st.ctx == nil {
		st.ctx, st.cancel = context.WithCancelCause(context.Background())
		if st.reset {
			st.cancel(errStreamReset)
		}
	}
	return st.ctx
}
