package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/upstream"
)

// responseSink is what an engine offers the proxy core: where the
// backend's answer and the gateway's own replies are written, and how the
// client's request body is read ahead or abandoned. Each engine
// implements all of it (clientConn for the fast engine, stdSink for
// net/http); the core discovers nothing by type.
type responseSink interface {
	// informational forwards a 1xx (other than 101) response head.
	informational(resp *response) error
	// head writes the final response head.
	head(x *exchange, resp *response) error
	// body writes body bytes (framing is the sink's business).
	body(p []byte) error
	flush() error
	// finish ends the body, with trailers when there are some.
	finish(trailers []hfield) error
	// tunnel takes over both connections after a 101 response head; it
	// returns when the tunnel is closed.
	tunnel(x *exchange, resp *response, bc *backendConn) error
	// local writes a reply the gateway makes itself, shaped by
	// x.localHeaders.
	local(x *exchange, r *localReply) error
	// readBody reads the next n request body bytes into memory, so that
	// the request can be replayed or shown to a middleware.
	readBody(x *exchange, n int64) ([]byte, error)
	// abortRead unblocks a request body read waiting on the client (a
	// no-op where the engine cannot).
	abortRead()
	// context is done when the client is gone (a reset stream, a closed
	// connection) where the engine can tell; it never is otherwise.
	context() context.Context
}

// localReply is a reply the gateway makes itself (an error, a
// middleware's answer), shaped once for both engines: the engines only
// serialize it.
type localReply struct {
	status int
	ctype  string
	body   []byte
	allow  string
	// noBody: the status forbids a body (1xx, 204, 304); sendBody: the
	// body is written (not for HEAD either).
	noBody, sendBody bool
	// grpcStatus and grpcMessage are set on the reply to a gRPC call
	// (grpc.go): a trailers-only status.
	grpcStatus, grpcMessage string
}

// headerWriter receives the header fields of a local reply, in order.
type headerWriter interface {
	add(name, value string)
	addBytes(name string, value []byte)
	addInt(name string, v int64)
}

// shapeLocal returns the reply for status, ctype, body and allow.
func (x *exchange) shapeLocal(status int, ctype string, body []byte, allow string) localReply {
	if status >= 300 && x.isGRPC() {
		return x.shapeGRPC(status)
	}
	noBody := status == 204 || status == 304 || status < 200
	return localReply{status: status, ctype: ctype, body: body, allow: allow,
		noBody: noBody, sendBody: !noBody && string(x.req.method) != "HEAD"}
}

// localHeaders writes the header fields of r (without Date and the
// connection's own fields, which are the engine's): Content-Type,
// Content-Length, X-Request-Id, the headers middlewares added, the
// reply's own headers and Allow.
func (x *exchange) localHeaders(w headerWriter, r *localReply) {
	if r.ctype != "" && r.ctype != "-" {
		w.add("Content-Type", r.ctype)
	}
	if !r.noBody {
		w.addInt("Content-Length", int64(len(r.body)))
	}
	w.addBytes("X-Request-Id", x.reqID)
	for _, a := range x.addResp {
		w.add(a.name, a.value)
	}
	for _, a := range x.replyHeaders {
		if r.grpcStatus != "" && (strings.EqualFold(a[0], "content-type") || strings.EqualFold(a[0], "content-length")) {
			continue // the body they describe is not sent to a gRPC client
		}
		w.add(a[0], a[1])
	}
	if r.allow != "" {
		w.add("Allow", r.allow)
	}
	if r.grpcStatus != "" {
		w.add("Grpc-Status", r.grpcStatus)
		w.add("Grpc-Message", r.grpcMessage)
	}
}

// bodyFinishGrace is how long a complete response waits for the request
// body sender's last write before the backend connection is given up.
const bodyFinishGrace = 250 * time.Millisecond

// bodySource yields the client's request body.
type bodySource interface {
	next() ([]byte, error)
	// finished reports whether the whole body was read from the client
	// (false when the source cannot tell).
	finished() bool
}

// exchange is one request/response through the proxy.
type exchange struct {
	srv *Server
	// wt is the client connection's event loop handle (nil: none).
	wt    *waiter
	snap  *Snapshot
	req   *request
	start time.Time
	// attemptAt is when the current attempt on a backend connection
	// began (zero: read the clock): taking an idle connection, writing
	// the request and arming the wait for its answer share one reading.
	attemptAt time.Time
	clientIP  string
	peer      netip.Addr
	peerPort  uint16
	proto     string // "HTTP/1.1", "HTTP/1.0", "HTTP/2.0"
	scheme    string
	// tls is the client connection's TLS state (nil: plain HTTP).
	tls *tls.ConnectionState

	route    *Route
	rm       *observe.RouteMetrics
	backend  *upstream.Backend
	status   int
	bytesIn  int64
	bytesOut int64
	errMsg   string

	reqID []byte
	idBuf [32]byte

	// Tracing: the server span of the request and the client span of the
	// current backend attempt (nil when tracing is off or not started).
	span     *observe.Span
	attempt  *observe.Span
	spanMem  *observe.Span // storage of span, reused from request to request
	traceBuf [32]byte
	spanBuf  [16]byte

	// body is the client's request body; bodyBuffered says it is entirely
	// in memory already (then it can be replayed on a stale connection).
	body         bodySource
	bodyBuffered []byte
	bodyDone     bool // the whole request body was read
	// bodyRead is set by the body sender once it has taken the last
	// byte of the body from the client (only the write to the backend
	// may be left).
	bodyRead atomic.Bool
	// closeClient is set when the client connection cannot be reused.
	closeClient bool
	// bodyLimit bounds a streamed request body (0: no bound; see
	// LimitRequestBody).
	bodyLimit int64
	// fwdTarget is the target sent to the backend, kept for the log when
	// a middleware rewrote it.
	fwdTarget []byte

	// Backend selection and retries.
	hash          uint64
	tried         [maxTried]*upstream.Backend
	ntried        int
	replayable    bool
	retryApproved bool
	// deadline is when timeouts.total ends (zero: never); cutByTotal
	// says it shortened the current attempt's response_header wait.
	deadline   time.Time
	cutByTotal bool
	// sentAt is when the request body streamed by sendBody was all sent
	// (Unix nanoseconds; 0 while it streams), streaming whether one
	// streams in this attempt: response_header counts from the end of
	// the request.
	sentAt    atomic.Int64
	streaming bool
	// grpcDeadline: the deadline is the call's grpc-timeout.
	grpcDeadline bool

	// grpc caches isGRPC (0 not yet known, 1 yes, 2 no); grpcStatus is
	// the call's grpc-status once known.
	grpc       int8
	grpcStatus string

	// Policy state: headers added to the forwarded request and to the
	// response, per-request values, and the headers of a policy's reply.
	addReq       []strHeader
	addResp      []strHeader
	delResp      []string
	values       []keyValue
	replyHeaders [][2]string
	// numBuf holds the digits of the response headers added with
	// AddResponseHeaderInt (numLen bytes used).
	numBuf [64]byte
	numLen int

	phase responsePhase

	sink responseSink
	resp response
	br   bodyReader
	wbuf []byte
}

// Proxy errors, reported to the client as JSON.
type proxyError struct {
	status int
	msg    string
}

var (
	errNoRoute        = &proxyError{404, "no route"}
	errMethod         = &proxyError{405, "method not allowed"}
	errBackendDown    = &proxyError{502, "backend unreachable"}
	errBackendBad     = &proxyError{502, "invalid backend response"}
	errBackendClosed  = &proxyError{502, "backend closed the connection"}
	errBackendTimeout = &proxyError{504, "backend timeout"}
	errNoBackend      = &proxyError{503, "no healthy backend"}
	errGRPCOverH1     = &proxyError{501, "gRPC needs HTTP/2 to the backend: set the route's protocol to h2c or h2"}
	errPoolFull       = &proxyError{503, "backend connection limit reached"}
	errConnectTimeout = &proxyError{504, "backend connect timeout"}
	errClientBody     = &proxyError{400, "invalid request body"}
	errBodyTooLarge   = &proxyError{413, "request body too large"}
)

func (x *exchange) ensureRequestID() {
	if x.req.requestID != nil {
		x.reqID = x.req.requestID
		return
	}
	x.reqID = x.srv.ids.Append(x.idBuf[:0])
}

// serve routes and forwards the request. It never panics on bad input;
// errors become JSON responses.
func (x *exchange) serve() {
	x.ensureRequestID()
	req := x.req
	if err := req.applyRules(&x.snap.rules); err != nil {
		x.drainOrClose()
		x.fail(&proxyError{400, err.Error()}, "")
		return
	}
	if x.edge() {
		return
	}
	rt, ok := x.snap.Router.matchRequest(req)
	if x.srv.tracer != nil {
		x.startSpan(rt)
	}
	if !ok {
		if rt != nil && len(rt.chain) > 0 && x.isPreflight() {
			// A CORS preflight asks about a method the route serves; the
			// route's policies answer it, not a 405.
			x.route = rt
			x.rm = rt.metrics
			x.rm.Start()
			if rt.mayBlock {
				x.wt.detachToStay()
			}
			if !x.runPolicies(rt.chain) {
				return
			}
		}
		x.drainOrClose()
		if rt != nil {
			x.fail(errMethod, rt.allowHeader)
			return
		}
		if len(req.path) == 1 && req.path[0] == '/' && !x.snap.Router.rootClaimed &&
			(string(req.method) == "GET" || string(req.method) == "HEAD") {
			x.writeLocal(200, "text/plain; charset=utf-8", bannerBody, "")
			return
		}
		x.fail(errNoRoute, "")
		return
	}
	x.route = rt
	x.rm = rt.metrics
	x.rm.Start()
	if rt.requireClientCert && !x.hasClientCert() {
		x.refuseNoClientCert()
		return
	}
	if rt.mayBlock {
		x.wt.detachToStay()
	}
	if len(rt.chain) > 0 && !x.runPolicies(rt.chain) {
		return
	}
	x.forward()
}

var bannerBody = []byte("RustyGate is running\n")

// startSpan starts the request's server span, under the caller's trace
// context if it sent one.
func (x *exchange) startSpan(rt *Route) {
	route := ""
	if rt != nil {
		route = rt.Name
	}
	if x.spanMem == nil {
		x.spanMem = new(observe.Span) // kept by reset, for the next requests
	}
	x.span = x.srv.tracer.StartServer(x.spanMem, &observe.ServerRequest{
		Method: x.req.method, Target: x.req.target, Route: route,
		ClientIP: x.clientIP, Scheme: x.scheme, Proto: x.proto,
	}, x.traceHeader)
}

// traceHeader is the header lookup of the tracer.
func (x *exchange) traceHeader(name string) []byte {
	if name == "host" {
		return x.req.host
	}
	return x.Header(name)
}

// isTraceHeader reports the headers tracing replaces on the forwarded
// request.
func isTraceHeader(name []byte) bool {
	switch len(name) {
	case 11:
		return eqFold(name, "traceparent")
	case 10:
		return eqFold(name, "tracestate")
	case 7:
		return eqFold(name, "baggage")
	}
	return false
}

// isPreflight reports a CORS preflight request.
func (x *exchange) isPreflight() bool {
	return string(x.req.method) == "OPTIONS" && x.Header("origin") != nil && x.Header("access-control-request-method") != nil
}

// drainOrClose is used when the proxy answers without forwarding: a body
// still on the wire is skipped when small, else the connection closes.
func (x *exchange) drainOrClose() {
	if !x.req.hasBody() || x.bodyDone {
		return
	}
	if x.bodyBuffered != nil {
		x.bodyDone = true
		return
	}
	x.closeClient = true
}

// roundTrip sends the request on bc and relays the response. It owns bc:
// the connection is pooled or closed before it returns. A non-nil error
// means nothing was sent to the client yet; stale says the pooled
// connection was found closed, so the request may be sent again on a new
// one; reason names a backend failure (for outlier detection, metrics and
// retries), "" when the backend is not to blame.
func (x *exchange) roundTrip(bc *backendConn, rt *Route) (perr *proxyError, stale bool, reason string) {
	bodyErr, perr, stale, reason := x.sendRequest(bc, rt)
	if perr != nil {
		return perr, stale, reason
	}
	err := x.awaitFinalHead(bc, rt)
	x.streaming = false
	if err != nil {
		return x.headFailed(err, bc, bodyErr)
	}
	resp := &x.resp
	x.status = resp.status
	if len(x.delResp) > 0 {
		x.dropResponseHeaders()
	}
	if bodyErr == nil && rt.retryStatus(resp.status) && x.shouldRetry(rt, statusReason(resp.status)) {
		// Retried elsewhere: this answer is dropped with its connection.
		bc.close()
		x.retryApproved = true
		x.status = 0
		return errBackendBad, false, statusReason(resp.status)
	}
	if resp.upgrade {
		perr, reason := x.upgrade(bc, bodyErr)
		return perr, false, reason
	}
	x.br.init(bc.bufConn, resp.kind, resp.contentLength)
	x.br.inactivity = rt.readTimeout
	x.br.conn = bc.c
	held, done, perr, reason := x.responsePhase(bc, bodyErr)
	if done {
		return perr, false, reason
	}
	x.relayResponse(bc, held, bodyErr)
	return nil, false, ""
}

// sendRequest writes the request head, and the body when it is buffered;
// a streamed body is sent by a goroutine whose result bodyErr carries. A
// non-nil perr means the backend connection failed (and was closed)
// before anything was read from it.
func (x *exchange) sendRequest(bc *backendConn, rt *Route) (bodyErr chan error, perr *proxyError, stale bool, reason string) {
	req := x.req
	bc.wbuf = appendRequestHead(bc.wbuf[:0], x, rt, x.backend)
	bc.wdl.ensureWrite(bc.c, x.attemptNow().Add(rt.readTimeout), deadlineSlack(rt.readTimeout))
	switch {
	case !req.hasBody():
	case x.bodyBuffered != nil:
		if req.chunked {
			bc.wbuf = appendChunkHeader(bc.wbuf, len(x.bodyBuffered))
			bc.wbuf = append(bc.wbuf, x.bodyBuffered...)
			bc.wbuf = append(bc.wbuf, "\r\n0\r\n\r\n"...)
		} else {
			bc.wbuf = append(bc.wbuf, x.bodyBuffered...)
		}
		x.bytesIn = int64(len(x.bodyBuffered))
		x.bodyDone = true
	default:
		if err := bc.flush(); err != nil {
			bc.close()
			// Part of a streamed body may be lost: never resent as stale.
			return nil, errBackendClosed, false, reasonReset
		}
		if req.expectCont {
			x.sink.informational(&continueResponse)
		}
		ch := make(chan error, 1)
		x.streaming = true
		x.sentAt.Store(0)
		go func() {
			err := x.sendBody(bc)
			x.sentAt.Store(time.Now().UnixNano())
			ch <- err
		}()
		return ch, nil, false, ""
	}
	if err := bc.flush(); err != nil {
		bc.close()
		return nil, errBackendClosed, bc.reused, reasonReset
	}
	return nil, nil, false, ""
}

// awaitFinalHead reads response heads until the final one (or a 101),
// forwarding the informational ones.
func (x *exchange) awaitFinalHead(bc *backendConn, rt *Route) error {
	for {
		if err := x.readResponseHead(bc, rt); err != nil {
			return err
		}
		if x.resp.status >= 200 || x.resp.status == 101 {
			return nil
		}
		if err := x.sink.informational(&x.resp); err != nil {
			x.closeClient = true
		}
	}
}

// headFailed closes bc after the response head could not be read and
// tells why, as roundTrip returns it.
func (x *exchange) headFailed(err error, bc *backendConn, bodyErr chan error) (*proxyError, bool, string) {
	received := len(bc.buffered()) > 0
	bc.close()
	if bodyErr != nil {
		x.closeClient = true
		switch berr := <-bodyErr; {
		case errors.Is(berr, errBodyLimit):
			return errBodyTooLarge, false, ""
		case errors.Is(berr, errClientBodyFailed):
			return errClientBody, false, ""
		}
	}
	switch {
	case isTimeout(err) && x.cutByTotal:
		// timeouts.total ended the wait, not the backend's own bound.
		x.errMsg = x.deadlineMsg()
		return errBackendTimeout, false, ""
	case isTimeout(err):
		x.errMsg = "backend timeout"
		return errBackendTimeout, false, reasonTimeout
	case isTLSAlert(err):
		// With TLS 1.3 the client's handshake ends before the backend
		// checks its certificate: a refusal comes here.
		perr, reason := x.tlsDialFailed(err)
		return perr, false, reason
	case isConnGone(err):
		if bc.reused && !received && bodyErr == nil {
			return errBackendClosed, true, reasonReset
		}
		x.errMsg = "backend closed the connection"
		return errBackendClosed, false, reasonReset
	default:
		x.errMsg = "invalid backend response: " + err.Error()
		return errBackendBad, false, reasonInvalid
	}
}

// upgrade relays a 101 response: the sink tunnels both connections.
func (x *exchange) upgrade(bc *backendConn, bodyErr chan error) (*proxyError, string) {
	switch {
	case x.req.upgrade == nil:
		bc.close()
		x.errMsg = "unexpected 101 from backend"
		return errBackendBad, reasonInvalid
	case bodyErr != nil:
		// A body and an upgrade at once is not something to relay.
		bc.close()
		<-bodyErr
		x.closeClient = true
		return errBackendBad, reasonInvalid
	}
	x.closeClient = true
	x.sink.tunnel(x, &x.resp, bc)
	return nil, ""
}

// responsePhase runs the middlewares' response phase, buffering the body
// first when one of them needs it (held). done means the exchange ended
// here: the response was replaced by the gateway's reply (perr nil) or
// its body could not be buffered (perr set); bc is closed then.
func (x *exchange) responsePhase(bc *backendConn, bodyErr chan error) (held, done bool, perr *proxyError, reason string) {
	if len(x.phase.pending) == 0 {
		return false, false, nil, ""
	}
	if x.phase.needBody && x.resp.kind != bodyNone {
		x.pinResponseHead(&x.resp)
		if err := x.bufferResponseBody(x.br.next); err != nil {
			bc.close()
			x.waitBody(bodyErr)
			x.errMsg = "response body for a plugin: " + err.Error()
			return false, true, errBackendBad, reasonInvalid
		}
		held = true
	}
	if r := x.runResponsePhase(false); r != nil {
		bc.close()
		x.waitBody(bodyErr)
		x.status = 0
		x.errMsg = "response phase failed"
		x.replyHeaders = r.Headers
		x.writeLocal(r.Status, "application/json", r.Body, "")
		return held, true, nil, ""
	}
	if len(x.phase.filterers) > 0 && x.resp.kind != bodyNone {
		x.installFilters(&x.resp)
	}
	if held && x.phase.filter == nil {
		x.setLengthField(len(x.phase.respBody))
	}
	return held, false, nil, ""
}

// relayResponse writes the response head and body to the client, then
// pools bc when both the response and the request body are complete and
// the connection may be reused, or closes it.
func (x *exchange) relayResponse(bc *backendConn, held bool, bodyErr chan error) {
	resp := &x.resp
	// What the head adds to closeClient concerns the client alone (it
	// asked to close, or HTTP/1.0 needs the close to end the body): the
	// backend connection stays reusable.
	poisoned := x.closeClient
	var ok bool
	switch {
	case x.phase.filter != nil:
		// The head is written by the filters' output (bodyfilter.go).
		ok = x.relayFiltered(held)
	case x.sink.head(x, resp) != nil:
		x.closeClient = true
		bc.close()
		x.waitBody(bodyErr)
		return
	case held:
		ok = x.sink.body(x.phase.respBody) == nil && x.sink.finish(nil) == nil
		x.bytesOut += int64(len(x.phase.respBody))
	default:
		ok = x.relayBody(bc)
	}
	if ok && bodyErr != nil {
		ok = x.requestBodySent(&bodyErr)
	}
	if ok && !resp.closeConn && !poisoned {
		bc.reused = false
		bc.pool.put(bc)
	} else {
		bc.close()
	}
	x.waitBody(bodyErr)
}

// requestBodySent reports whether the streamed request body was sent in
// full once the response is complete, which the backend connection's
// reuse needs; *bodyErr is set to nil when its result was taken.
func (x *exchange) requestBodySent(bodyErr *chan error) bool {
	if !x.bodyRead.Load() {
		select {
		case err := <-*bodyErr:
			*bodyErr = nil
			if err != nil {
				x.closeClient = true
				return false
			}
			return true
		default:
			return false
		}
	}
	// Only the sender's last write may be pending: give it a moment (a
	// backend that stopped reading would block it).
	t := time.NewTimer(bodyFinishGrace)
	defer t.Stop()
	select {
	case err := <-*bodyErr:
		*bodyErr = nil
		if err != nil {
			x.closeClient = true
			return false
		}
		return true
	case <-t.C:
		return false
	}
}

// waitBody waits for the request body goroutine after the backend
// connection was released or closed. A body left unread poisons the
// client connection.
func (x *exchange) waitBody(bodyErr chan error) {
	if bodyErr == nil {
		return
	}
	var err error
	if x.bodyRead.Load() {
		// The client sent the whole body; the sender is finishing its
		// write to the backend.
		err = <-bodyErr
		if err != nil || !x.bodyDone {
			x.closeClient = true
		}
		return
	}
	select {
	case err = <-bodyErr:
	default:
		// Still sending: the backend answered without reading the whole
		// body, so the rest of it must not be taken for a request.
		x.closeClient = true
		x.abortClientRead()
		err = <-bodyErr
	}
	// bodyDone is read only once the sender has finished.
	if err != nil || !x.bodyDone {
		x.closeClient = true
	}
}

// relayBody copies the response body to the sink, flushing whenever the
// backend has nothing more buffered (so streamed responses are delivered
// as they come). It reports whether the response completed cleanly.
func (x *exchange) relayBody(bc *backendConn) bool {
	if !x.br.pending() {
		// The backend sent its head alone (a stream that starts later,
		// server-sent events): the client gets the head now, not with
		// the first body bytes.
		if werr := x.sink.flush(); werr != nil {
			x.closeClient = true
			x.errMsg = "client write failed"
			return false
		}
	}
	for {
		p, err := x.br.next()
		if len(p) > 0 {
			x.bytesOut += int64(len(p))
			if werr := x.sink.body(p); werr != nil {
				x.closeClient = true
				x.errMsg = "client write failed"
				return false
			}
			if !x.br.pending() {
				if werr := x.sink.flush(); werr != nil {
					x.closeClient = true
					x.errMsg = "client write failed"
					return false
				}
			}
		}
		if err == io.EOF {
			if werr := x.sink.finish(x.br.trailers); werr != nil {
				x.closeClient = true
				return false
			}
			return true
		}
		if err != nil {
			// The head is out: the only signal left is an abrupt end.
			x.errMsg = "backend body: " + err.Error()
			x.closeClient = true
			x.sink.flush()
			return false
		}
	}
}

var (
	errClientBodyFailed = errors.New("client body")
	// errBodyLimit: the streamed body passed the exchange's bodyLimit.
	errBodyLimit = errors.New("request body over its limit")
)

// sendBody streams the request body to the backend.
func (x *exchange) sendBody(bc *backendConn) error {
	req := x.req
	var buf []byte
	for {
		p, err := x.body.next()
		if err == io.EOF || err == nil && x.body.finished() {
			x.bodyRead.Store(true)
		}
		if len(p) > 0 {
			x.bytesIn += int64(len(p))
			if x.bodyLimit > 0 && x.bytesIn > x.bodyLimit {
				// Nothing past the limit reaches the backend; the
				// connection to it cannot carry another request.
				bc.c.Close()
				return errBodyLimit
			}
			if req.chunked {
				buf = appendChunkHeader(buf[:0], len(p))
				if werr := writeAll(bc.c, buf, p, crlf); werr != nil {
					return werr
				}
			} else if _, werr := bc.c.Write(p); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			if req.chunked {
				if _, werr := bc.c.Write(lastChunk); werr != nil {
					return werr
				}
			}
			x.bodyDone = true
			return nil
		}
		if err != nil {
			// Unblock the response read: this exchange is over.
			bc.c.Close()
			return errClientBodyFailed
		}
	}
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

func writeAll(w io.Writer, parts ...[]byte) error {
	if len(parts[0])+len(parts[1])+len(parts[2]) <= 2*writeBufSize {
		var stack [2 * writeBufSize]byte
		b := append(append(append(stack[:0], parts[0]...), parts[1]...), parts[2]...)
		_, err := w.Write(b)
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// attemptNow returns when the current attempt began, or the current time.
func (x *exchange) attemptNow() time.Time {
	if x.attemptAt.IsZero() {
		return time.Now()
	}
	return x.attemptAt
}

// readResponseHead reads and parses one response head from bc.
func (x *exchange) readResponseHead(bc *backendConn, rt *Route) error {
	head := string(x.req.method) == "HEAD"
	now := x.attemptNow()
	x.attemptAt = time.Time{} // an informational answer restarts the wait
	wait := x.headWait(rt, now)
	bc.rdl.ensureRead(bc.c, now.Add(wait), deadlineSlack(wait))
	for {
		if buf := bc.buffered(); len(buf) > 0 {
			n, err := parseResponse(buf, &x.resp, head)
			if err == nil {
				bc.consume(n)
				return nil
			}
			if err != errNeedMore {
				return err
			}
		}
		if err := bc.fill(); err != nil {
			if err == errHeadTooLarge {
				return errHeadTooLarge
			}
			if isTimeout(err) && x.waitLonger(bc, wait) {
				continue
			}
			return err
		}
	}
}

// waitLonger re-arms the wait for the response head after it timed out
// while the request body was still streaming to the backend (the client
// sends it slowly, or it is large): response_header counts from the end
// of the request, as long as timeouts.total allows. A stalled client is
// bounded by the reads of its body.
func (x *exchange) waitLonger(bc *backendConn, wait time.Duration) bool {
	if !x.streaming {
		return false
	}
	now := time.Now()
	until := now.Add(wait)
	if at := x.sentAt.Load(); at != 0 {
		until = time.Unix(0, at).Add(wait)
	}
	if !x.deadline.IsZero() && x.deadline.Before(until) {
		until = x.deadline
		x.cutByTotal = true
	}
	if !until.After(now) {
		return false
	}
	bc.rdl.ensureRead(bc.c, until, deadlineSlack(wait))
	return true
}

// abortClientRead unblocks a body reader waiting on the client.
func (x *exchange) abortClientRead() {
	x.sink.abortRead()
}

var continueResponse = response{status: 100, reason: []byte("Continue"), proto: 11}

// appendRequestHead writes the request line and headers for the backend.
func appendRequestHead(dst []byte, x *exchange, rt *Route, b *upstream.Backend) []byte {
	req := x.req
	dst = append(dst, req.method...)
	dst = append(dst, ' ')
	dst = appendForwardTarget(dst, x, rt, b)
	dst = append(dst, " HTTP/1.1\r\n"...)
	dst = appendForwardFields(dst, x, b)
	switch {
	case req.chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case req.contentLength >= 0:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, req.contentLength, 10)
		dst = append(dst, '\r', '\n')
	}
	if req.upgrade != nil {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
		dst = append(dst, req.upgrade...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '\r', '\n')
}

// appendForwardTarget writes the request target sent to backend b: its
// base path, the normalized path (less the route's prefix with
// strip_prefix) and the query.
func appendForwardTarget(dst []byte, x *exchange, rt *Route, b *upstream.Backend) []byte {
	req := x.req
	target := len(dst)
	dst = append(dst, b.BasePath...)
	path := req.path
	if rt.StripPrefix && rt.Path != "/" && hasPathPrefix(path, rt.Path) {
		// A path a middleware rewrote keeps the route's prefix only if
		// it still starts with it.
		path = path[len(rt.Path):]
		if len(path) == 0 {
			path = []byte{'/'}
		}
	}
	if len(path) == 1 && path[0] == '*' {
		if b.BasePath == "" {
			dst = append(dst, '*')
		}
	} else {
		dst = append(dst, path...)
	}
	dst = append(dst, req.query...)
	if x.phase.uri != nil {
		// Logged: what the backend got, when it is not what was received.
		x.fwdTarget = append(x.fwdTarget[:0], dst[target:]...)
	}
	return dst
}

// appendForwardFields writes the request's header fields as forwarded to
// backend b (HTTP/1.1 form, whichever protocol carries them): the
// client's fields less hop-by-hop ones, Host, X-Forwarded-*, Via,
// X-Request-Id, the trace context and the headers policies added.
func appendForwardFields(dst []byte, x *exchange, b *upstream.Backend) []byte {
	req := x.req
	hostWritten := false
	for i := range req.fields {
		f := &req.fields[i]
		if f.skip {
			continue
		}
		if len(f.name) == 4 && eqFold(f.name, "host") {
			if req.absolute {
				continue // the validated authority is written below
			}
			hostWritten = true
		}
		if x.attempt != nil && isTraceHeader(f.name) {
			continue
		}
		dst = append(dst, f.name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, f.value...)
		dst = append(dst, '\r', '\n')
	}
	if !hostWritten {
		dst = append(dst, "Host: "...)
		if len(req.host) > 0 {
			dst = append(dst, req.host...)
		} else {
			dst = append(dst, b.Addr...)
		}
		dst = append(dst, '\r', '\n')
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if req.xff != nil {
		if req.xffMulti {
			first := true
			for i := range req.fields {
				if classify(req.fields[i].name) == hXForwardedFor {
					if !first {
						dst = append(dst, ", "...)
					}
					dst = append(dst, req.fields[i].value...)
					first = false
				}
			}
		} else {
			dst = append(dst, req.xff...)
		}
		dst = append(dst, ", "...)
	}
	dst = append(dst, x.clientIP...)
	dst = append(dst, "\r\nX-Forwarded-Proto: "...)
	dst = append(dst, x.scheme...)
	if len(req.host) > 0 {
		dst = append(dst, "\r\nX-Forwarded-Host: "...)
		dst = append(dst, req.host...)
	}
	dst = append(dst, "\r\nVia: "...)
	if req.via != nil {
		dst = append(dst, req.via...)
		dst = append(dst, ", "...)
	}
	switch req.proto {
	case 10:
		dst = append(dst, "1.0 rustygate"...)
	case 20:
		dst = append(dst, "2.0 rustygate"...)
	case 30:
		dst = append(dst, "3 rustygate"...)
	default:
		dst = append(dst, "1.1 rustygate"...)
	}
	dst = append(dst, "\r\nX-Request-Id: "...)
	dst = append(dst, x.reqID...)
	dst = append(dst, '\r', '\n')
	dst = x.attempt.AppendHeaders(dst)
	dst = appendStrHeaders(dst, x.addReq)
	return dst
}

// hasPathPrefix reports whether path starts with prefix on a segment
// boundary.
func hasPathPrefix(path []byte, prefix string) bool {
	return len(path) >= len(prefix) && string(path[:len(prefix)]) == prefix &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}

// fail answers with a JSON error carrying the request id.
func (x *exchange) fail(e *proxyError, allow string) {
	if x.errMsg == "" {
		x.errMsg = e.msg
	}
	if len(x.phase.pending) > 0 {
		x.status = e.status
		x.resp.fields = x.resp.fields[:0]
		x.runResponsePhase(true)
	}
	var buf [256]byte
	body := append(buf[:0], `{"error":"`...)
	body = append(body, e.msg...)
	body = append(body, `","status":`...)
	body = strconv.AppendInt(body, int64(e.status), 10)
	body = append(body, `,"request_id":"`...)
	body = append(body, x.reqID...)
	body = append(body, "\"}\n"...)
	x.writeLocal(e.status, "application/json", body, allow)
}

// writeLocal sends a response the proxy produced itself.
func (x *exchange) writeLocal(status int, ctype string, body []byte, allow string) {
	r := x.shapeLocal(status, ctype, body, allow)
	x.status = r.status
	if r.grpcStatus != "" {
		x.grpcStatus = r.grpcStatus
	}
	if err := x.sink.local(x, &r); err != nil {
		x.closeClient = true
	}
	if string(x.req.method) != "HEAD" && r.grpcStatus == "" {
		x.bytesOut = int64(len(body))
	}
}

// done records the finished exchange: metrics, then the access line.
func (x *exchange) done() {
	if len(x.phase.pending) > 0 {
		// A response produced without the plugins' response phase (a
		// tunnel, a client gone): release what they hold.
		x.runResponsePhase(true)
	}
	rm := x.rm
	if rm == nil {
		rm = x.srv.noRoute
		rm.Start()
	}
	elapsed := time.Since(x.start)
	rm.Done(x.req.method, x.status, elapsed)
	if x.grpcStatus != "" {
		rm.GRPCDone(x.grpcStatus)
	}
	x.span.End(x.status, x.errMsg)
	x.logAccess(x.srv.log, elapsed)
}

// logAccess writes the exchange's access line; elapsed is the request's
// latency.
func (x *exchange) logAccess(lg *observe.Logger, elapsed time.Duration) {
	if lg == nil || !lg.AccessEnabled() {
		return
	}
	e := accessPool.Get().(*observe.AccessEntry)
	*e = observe.AccessEntry{
		Time:           x.start,
		Method:         x.req.method,
		Path:           x.req.target,
		UpstreamTarget: x.fwdTarget,
		Proto:          x.proto,
		Host:           x.req.host,
		Status:         x.status,
		Latency:        elapsed,
		BytesIn:        x.bytesIn,
		BytesOut:       x.bytesOut,
		RequestID:      x.reqID,
		ClientIP:       x.clientIP,
		UserAgent:      x.req.userAgent,
		Error:          x.errMsg,
		GRPCStatus:     x.grpcStatus,
	}
	if x.route != nil {
		e.Route = x.route.Name
	}
	if x.backend != nil {
		e.Backend = x.backend.URL
	}
	if x.tls != nil {
		e.TLSVersion, e.SNI = tlsVersion(x.tls.Version), x.tls.ServerName
	}
	e.TraceID = x.span.AppendTraceID(x.traceBuf[:0])
	e.SpanID = x.span.AppendSpanID(x.spanBuf[:0])
	lg.Access(e)
	*e = observe.AccessEntry{}
	accessPool.Put(e)
}

var accessPool = sync.Pool{New: func() any { return new(observe.AccessEntry) }}

// statusText returns the reason phrase for a status, or "" when none.
func statusText(code int) string { return http.StatusText(code) }
