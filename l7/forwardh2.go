package l7

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// An exchange with an HTTP/2 backend (see backendh2.go for the
// connections). The request goes out as an *http.Request built from the
// same target and header fields as an HTTP/1.1 one; the response head,
// body and trailers are relayed to the sink as they arrive, while the
// request body keeps flowing (bidirectional streaming). Client
// cancellation (a reset stream, a closed connection) cancels the backend
// stream, and a backend that resets its stream ends the client's.

var (
	// errH2Fallback: an auto pool's backend chose HTTP/1.1; the attempt
	// goes over HTTP/1.1 (nothing was sent).
	errH2Fallback = &proxyError{502, "h2 not selected"}
	errUpgradeH2  = &proxyError{502, "protocol upgrade is not supported over HTTP/2 to the backend"}
)

// Causes of an HTTP/2 attempt's cancellation.
var (
	errH2HeadTimeout = errors.New("response header timeout")
	errH2ReadTimeout = errors.New("read timeout")
	errH2Deadline    = errors.New("deadline")
)

// h2Watch bounds an HTTP/2 attempt: the request's deadline, the wait for
// the response head and the silence between body reads each cancel the
// attempt's context with their cause.
type h2Watch struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	deadline *time.Timer
	idle     *time.Timer
	read     *time.Timer
}

func (x *exchange) newH2Watch(rt *Route) *h2Watch {
	w := &h2Watch{}
	w.ctx, w.cancel = context.WithCancelCause(x.sink.context())
	if !x.deadline.IsZero() {
		w.deadline = time.AfterFunc(time.Until(x.deadline), func() { w.cancel(errH2Deadline) })
	}
	w.idle = time.AfterFunc(x.headWait(rt, time.Now()), func() { w.cancel(errH2HeadTimeout) })
	return w
}

// reading restarts the read-inactivity bound before a body read.
func (w *h2Watch) reading(d time.Duration) {
	switch {
	case d <= 0:
	case w.read == nil:
		w.read = time.AfterFunc(d, func() { w.cancel(errH2ReadTimeout) })
	default:
		w.read.Reset(d)
	}
}

func (w *h2Watch) stop() {
	if w.deadline != nil {
		w.deadline.Stop()
	}
	w.idle.Stop()
	if w.read != nil {
		w.read.Stop()
	}
	w.cancel(context.Canceled)
}

// tryH2 runs one attempt on the HTTP/2 backend of cp. As for roundTrip, a
// non-nil error means nothing was sent to the client.
func (x *exchange) tryH2(cp *connPool, rt *Route) (*proxyError, string) {
	if x.req.upgrade != nil {
		if cp.h2.auto {
			return errH2Fallback, ""
		}
		x.errMsg = errUpgradeH2.msg
		return errUpgradeH2, ""
	}
	x.wt.detach()
	w := x.newH2Watch(rt)
	hreq, body := x.h2Request(w.ctx, cp, rt)
	resp, err := cp.h2.roundTrip(hreq)
	w.idle.Stop()
	if err != nil {
		w.stop()
		return x.h2Failed(w, err, body)
	}
	defer func() {
		// The context ends first: Close then never waits for a request
		// body the client is still sending (the stream is reset if it
		// is not complete).
		w.stop()
		resp.Body.Close()
	}()
	x.h2Head(resp)
	if perr, reason, retry := x.h2GRPCRetry(rt, resp, body); retry {
		return perr, reason
	}
	if done, perr, reason := x.h2ResponsePhase(resp, rt, w); done {
		x.h2BodyDone(body)
		return perr, reason
	}
	reason := x.relayH2(resp, rt, w, body)
	x.h2BodyDone(body)
	return nil, reason
}

// h2Request builds the request sent to the backend.
func (x *exchange) h2Request(ctx context.Context, cp *connPool, rt *Route) (*http.Request, *h2Body) {
	req := x.req
	b := x.backend
	target := string(appendForwardTarget(nil, x, rt, b))
	u := &url.URL{Scheme: cp.h2.scheme, Host: b.Addr, Opaque: target}
	if i := bytes.IndexByte([]byte(target), '?'); i >= 0 {
		u.Opaque, u.RawQuery = target[:i], target[i+1:]
	}
	hreq := &http.Request{
		Method:     string(req.method),
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     make(http.Header, len(req.fields)+8),
		Host:       b.Addr,
	}
	hreq = hreq.WithContext(ctx)
	fillH2Header(hreq, appendForwardFields(nil, x, b))
	if x.clientTE() {
		hreq.Header["Te"] = []string{"trailers"}
	}
	if _, ok := hreq.Header["User-Agent"]; !ok {
		hreq.Header["User-Agent"] = nil // no default User-Agent added
	}
	body := x.h2RequestBody(hreq, rt)
	return hreq, body
}

// fillH2Header parses forwarded fields (HTTP/1.1 form) into hreq.
func fillH2Header(hreq *http.Request, fields []byte) {
	for len(fields) > 0 {
		i := bytes.Index(fields, crlf)
		if i < 0 {
			return
		}
		line := fields[:i]
		fields = fields[i+2:]
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name, value := string(line[:c]), string(trimOWS(line[c+1:]))
		if len(name) == 4 && eqFoldAny(name, "host") {
			hreq.Host = value
			continue
		}
		key := http.CanonicalHeaderKey(name)
		hreq.Header[key] = append(hreq.Header[key], value)
	}
}

// clientTE reports a TE header of the client that accepts trailers (a
// gRPC client sends "TE: trailers"); it is kept for the HTTP/2 backend.
func (x *exchange) clientTE() bool {
	for i := range x.req.fields {
		f := &x.req.fields[i]
		if classify(f.name) == hTE && bytes.Contains(bytes.ToLower(f.value), []byte("trailers")) {
			return true
		}
	}
	return false
}

// h2RequestBody attaches the request body: a buffered one can be sent
// again (on another connection after a GOAWAY), a streamed one flows as
// the client sends it.
func (x *exchange) h2RequestBody(hreq *http.Request, rt *Route) *h2Body {
	req := x.req
	switch {
	case !req.hasBody():
		hreq.Body = http.NoBody
		return nil
	case x.bodyBuffered != nil:
		buf := x.bodyBuffered
		hreq.ContentLength = int64(len(buf))
		hreq.Body = io.NopCloser(bytes.NewReader(buf))
		hreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		x.bytesIn = int64(len(buf))
		x.bodyDone = true
		return nil
	}
	hreq.ContentLength = req.contentLength
	if req.chunked {
		hreq.ContentLength = -1
	}
	if req.expectCont {
		x.sink.informational(&continueResponse)
	}
	// A copy of a small body lets the transport send it again on
	// another connection when a GOAWAY or a refused stream says the
	// backend did not process it, and lets a gRPC call be retried.
	body := &h2Body{src: x.body, abort: x.sink.abortRead, keepMax: rt.retry.maxBody}
	hreq.Body = &h2BodyReader{b: body}
	hreq.GetBody = body.replay
	return body
}

var errBodyNotKept = errors.New("request body not kept for a replay")

// h2Body streams the client's request body to the HTTP/2 transport,
// which reads it on a goroutine of its own. Its state is its own (not the
// exchange's): the transport may still be in a read when the exchange
// ends. It keeps a copy of what it passed on, up to keepMax bytes, so
// that the transport can send the body again on another connection
// (replay: the copy, then the rest from the client) and a gRPC call the
// backend refused at once can be retried.
type h2Body struct {
	src   bodySource
	abort func()

	// mu is held by the reader taking bytes from the client.
	mu      sync.Mutex
	pending []byte
	keep    []byte
	keepMax int64
	gen     int // the current reader; older ones are superseded

	n        atomic.Int64 // bytes taken from the client
	eof      atomic.Bool
	started  atomic.Bool
	overflow atomic.Bool // more than keepMax passed on: no replay
}

// h2BodyReader is one pass over the body: generation gen replays the
// kept copy from pos, then continues with the client's bytes.
type h2BodyReader struct {
	b   *h2Body
	gen int
	pos int
}

func (r *h2BodyReader) Read(p []byte) (int, error) {
	b := r.b
	b.started.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.gen != b.gen {
		return 0, io.ErrClosedPipe
	}
	if r.pos < len(b.keep) {
		n := copy(p, b.keep[r.pos:])
		r.pos += n
		return n, nil
	}
	for len(b.pending) == 0 {
		if b.eof.Load() {
			return 0, io.EOF
		}
		chunk, err := b.src.next()
		b.pending = chunk
		if err == io.EOF {
			b.eof.Store(len(chunk) == 0)
			if len(chunk) == 0 {
				return 0, io.EOF
			}
			b.src = eofSource{}
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	b.n.Add(int64(n))
	r.pos += n
	if !b.overflow.Load() {
		if int64(len(b.keep)+n) <= b.keepMax {
			b.keep = append(b.keep, p[:n]...)
		} else {
			b.overflow.Store(true)
			b.keep = nil
		}
	}
	return n, nil
}

// Close does nothing: the exchange ends a read left waiting on the client
// (h2BodyDone), not the transport.
func (r *h2BodyReader) Close() error { return nil }

// replay is the request's GetBody: a new pass over the body, when all
// that was passed on so far is kept.
func (b *h2Body) replay() (io.ReadCloser, error) {
	if b.overflow.Load() || b.keepMax <= 0 {
		return nil, errBodyNotKept
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow.Load() {
		return nil, errBodyNotKept
	}
	b.gen++
	return &h2BodyReader{b: b, gen: b.gen}, nil
}

// rest returns the whole body for a retry: the kept copy and what the
// client has still to send, waiting at most grace for it (a client that
// streams on is not waited for: no retry then).
func (b *h2Body) rest(grace time.Duration) ([]byte, bool) {
	if kept, ok := b.kept(); ok {
		return kept, true
	}
	if b.overflow.Load() || b.keepMax <= 0 {
		return nil, false
	}
	ch := make(chan []byte, 1)
	go func() {
		r, err := b.replay()
		if err != nil {
			ch <- nil
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, b.keepMax+1))
		if err != nil || int64(len(data)) > b.keepMax {
			data = nil
		}
		ch <- data
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case data := <-ch:
		return data, data != nil
	case <-t.C:
		b.abort()
		<-ch
		return nil, false
	}
}

// eofSource is a body source at its end.
type eofSource struct{}

func (eofSource) next() ([]byte, error) { return nil, io.EOF }
func (eofSource) finished() bool        { return true }

// kept returns the whole body when it was read to its end and kept.
func (b *h2Body) kept() ([]byte, bool) {
	if b == nil || !b.eof.Load() || b.overflow.Load() || b.keepMax <= 0 {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keep, true
}

// h2BodyDone records what the transport took of a streamed body; a body
// the client did not finish sending is abandoned (a read waiting on the
// client is ended) and leaves the client connection unusable.
func (x *exchange) h2BodyDone(body *h2Body) {
	if body == nil {
		return
	}
	x.bytesIn = body.n.Load()
	if body.eof.Load() {
		x.bodyDone = true
		x.bodyRead.Store(true)
		return
	}
	body.abort()
	x.closeClient = true
}

// h2Failed reports an attempt that got no response head.
func (x *exchange) h2Failed(w *h2Watch, err error, body *h2Body) (*proxyError, string) {
	if body != nil && body.started.Load() {
		x.h2BodyDone(body)
	}
	// A body the transport never read stays with the exchange, for a
	// retry or for drainOrClose.
	if errors.Is(err, errH2NotSelected) {
		return errH2Fallback, ""
	}
	var te *tlsDialError
	var oe *net.OpError
	switch cause := context.Cause(w.ctx); {
	case errors.As(err, &te):
		return x.tlsDialFailed(te.err)
	case errors.As(err, &oe) && oe.Op == "dial":
		return x.dialError(err)
	case cause == errH2Deadline:
		x.errMsg = x.deadlineMsg()
		return errBackendTimeout, ""
	case cause == errH2HeadTimeout:
		if x.cutByTotal {
			x.errMsg = x.deadlineMsg()
			return errBackendTimeout, ""
		}
		x.errMsg = "backend timeout"
		return errBackendTimeout, reasonTimeout
	case x.sink.context().Err() != nil:
		x.closeClient = true
		x.errMsg = "client closed the request"
		return &proxyError{499, "client closed the request"}, ""
	case isH2ProtocolError(err):
		x.errMsg = "invalid backend response: " + err.Error()
		return errBackendBad, reasonInvalid
	}
	x.errMsg = "backend closed the stream: " + err.Error()
	return errBackendClosed, reasonReset
}

// isH2ProtocolError reports a backend that broke HTTP/2 (as opposed to
// one that closed or reset the stream).
func isH2ProtocolError(err error) bool {
	var ce http2.ConnectionError
	var se http2.StreamError
	var ge http2.GoAwayError
	switch {
	case errors.As(err, &ce):
		return http2.ErrCode(ce) == http2.ErrCodeProtocol || http2.ErrCode(ce) == http2.ErrCodeFrameSize || http2.ErrCode(ce) == http2.ErrCodeCompression
	case errors.As(err, &se):
		return se.Code == http2.ErrCodeProtocol && se.Cause != nil
	case errors.As(err, &ge):
		return ge.ErrCode == http2.ErrCodeProtocol
	}
	var oe *net.OpError
	return !errors.As(err, &oe) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
		!errors.Is(err, context.Canceled)
}

// h2Head converts the response head for the sink.
func (x *exchange) h2Head(resp *http.Response) {
	r := &x.resp
	*r = response{fields: r.fields[:0], status: resp.StatusCode, proto: 11, contentLength: -1}
	x.status = resp.StatusCode
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		if k == "Date" {
			r.hasDate = true
		}
		for _, v := range vs {
			r.fields = append(r.fields, hfield{name: []byte(k), value: []byte(v)})
		}
	}
	if v := resp.Header.Get("Grpc-Status"); v != "" {
		x.setGRPCStatus(v) // trailers-only
	}
	switch {
	case string(x.req.method) == "HEAD" || resp.StatusCode == 204 || resp.StatusCode == 304:
		r.kind = bodyNone
		if cl := resp.Header["Content-Length"]; len(cl) == 1 {
			r.fields = append(r.fields, hfield{name: []byte("Content-Length"), value: []byte(cl[0])})
		}
	case resp.ContentLength >= 0:
		r.kind = bodyLength
		r.contentLength = resp.ContentLength
		if resp.ContentLength > 0 || x.req.proto < 20 || resp.Header["Content-Length"] != nil {
			r.fields = append(r.fields, hfield{name: []byte("Content-Length"), value: []byte(strconv.FormatInt(resp.ContentLength, 10))})
		}
	default:
		r.kind = bodyChunked
	}
	if len(x.delResp) > 0 {
		x.dropResponseHeaders()
	}
}

// h2GRPCRetry sends a gRPC call to another backend when this one answered
// with a status of retries.grpc_on alone (trailers-only: nothing of the
// call reached the client) and the request body is complete in memory.
func (x *exchange) h2GRPCRetry(rt *Route, resp *http.Response, body *h2Body) (*proxyError, string, bool) {
	if rt.retry.grpcOn == 0 || x.grpcStatus == "" || resp.ContentLength != 0 {
		return nil, "", false
	}
	code := 0
	for _, c := range x.grpcStatus {
		code = code*10 + int(c-'0')
	}
	if code == 0 || rt.retry.grpcOn&(1<<code) == 0 {
		return nil, "", false
	}
	if !x.shouldRetryGRPC(rt) {
		return nil, "", false
	}
	if body != nil {
		whole, ok := body.rest(bodyFinishGrace)
		x.h2BodyDone(body)
		if !ok {
			return nil, "", false
		}
		x.bodyBuffered, x.body = whole, nil
	}
	reason := "grpc_" + grpcCodeName(code)
	x.retryApproved = true
	x.status, x.grpcStatus = 0, ""
	return errBackendBad, reason, true
}

// shouldRetryGRPC is shouldRetry for a gRPC status: attempts, deadline
// and budget.
func (x *exchange) shouldRetryGRPC(rt *Route) bool {
	p := &rt.retry
	if x.ntried > p.attempts || x.ntried >= maxTried {
		return false
	}
	if !x.deadline.IsZero() && time.Now().After(x.deadline) {
		return false
	}
	return p.budget.TryRetry()
}

// h2ResponsePhase runs the middlewares' response phase on an HTTP/2
// response, as responsePhase does on an HTTP/1.1 one.
func (x *exchange) h2ResponsePhase(resp *http.Response, rt *Route, w *h2Watch) (done bool, perr *proxyError, reason string) {
	if len(x.phase.pending) == 0 {
		return false, nil, ""
	}
	held := false
	if x.phase.needBody && x.resp.kind != bodyNone {
		buf := make([]byte, 32<<10)
		next := func() ([]byte, error) {
			w.reading(rt.readTimeout)
			n, err := resp.Body.Read(buf)
			return buf[:n], err
		}
		if err := x.bufferResponseBody(next); err != nil {
			x.errMsg = "response body for a plugin: " + err.Error()
			return true, errBackendBad, reasonInvalid
		}
		held = true
	}
	if r := x.runResponsePhase(false); r != nil {
		x.status = 0
		x.errMsg = "response phase failed"
		x.replyHeaders = r.Headers
		x.writeLocal(r.Status, "application/json", r.Body, "")
		return true, nil, ""
	}
	if len(x.phase.filterers) > 0 && x.resp.kind != bodyNone {
		x.installFilters(&x.resp)
	}
	if held {
		if x.phase.filter != nil {
			x.relayFiltered(true)
			return true, nil, ""
		}
		x.setLengthField(len(x.phase.respBody))
		x.relayHeld()
		return true, nil, ""
	}
	return false, nil, ""
}

// relayH2Filtered is relayH2 through the response body filters (see
// relayFiltered): the head goes out with the filters' first output.
func (x *exchange) relayH2Filtered(resp *http.Response, rt *Route, w *h2Watch) string {
	f := x.phase.filter
	x.phase.filter = nil
	bp := stdBufPool.Get().(*[]byte)
	defer stdBufPool.Put(bp)
	buf := *bp
	for {
		w.reading(rt.readTimeout)
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				x.filterFailed(f, werr)
				return ""
			}
			if werr := f.Flush(); werr != nil {
				x.filterFailed(f, werr)
				return ""
			}
		}
		if err == io.EOF {
			x.finishFiltered(f, x.h2Trailers(resp.Trailer))
			return ""
		}
		if err != nil {
			f.Close(false)
			x.closeClient = true
			if !x.phase.out.headDone {
				// Nothing reached the client yet: it gets an error response.
				x.phase.out.headDone = true
				x.errMsg = "backend body: " + err.Error()
				x.fail(errBackendBad, "")
				return reasonReset
			}
			return x.h2BodyFailed(err, w)
		}
	}
}

// relayHeld writes a response whose body the middlewares hold.
func (x *exchange) relayHeld() {
	if x.sink.head(x, &x.resp) != nil || x.sink.body(x.phase.respBody) != nil || x.sink.finish(nil) != nil {
		x.closeClient = true
	}
	x.bytesOut += int64(len(x.phase.respBody))
}

// relayH2 writes the response head, then the body as it arrives and the
// trailers. It returns the backend's failure when the body broke off
// through the backend's fault ("" otherwise). While the client is still
// sending the request body the head goes out at once: the client may
// wait for it before sending more (bidirectional streaming).
func (x *exchange) relayH2(resp *http.Response, rt *Route, w *h2Watch, body *h2Body) string {
	if x.phase.filter != nil {
		return x.relayH2Filtered(resp, rt, w)
	}
	err := x.sink.head(x, &x.resp)
	if err == nil && x.resp.kind == bodyChunked && body != nil && !body.eof.Load() {
		// (Never for a head that ends the stream: a gRPC status alone
		// must reach the client in one HEADERS frame.)
		err = x.sink.flush()
	}
	if err != nil {
		x.closeClient = true
		return ""
	}
	bp := stdBufPool.Get().(*[]byte)
	defer stdBufPool.Put(bp)
	buf := *bp
	for {
		w.reading(rt.readTimeout)
		n, err := resp.Body.Read(buf)
		if n > 0 {
			x.bytesOut += int64(n)
			if x.sink.body(buf[:n]) != nil || x.sink.flush() != nil {
				x.closeClient = true
				x.errMsg = "client write failed"
				return ""
			}
		}
		if err == io.EOF {
			if x.sink.finish(x.h2Trailers(resp.Trailer)) != nil {
				x.closeClient = true
			}
			return ""
		}
		if err != nil {
			return x.h2BodyFailed(err, w)
		}
	}
}

// h2Trailers converts the response trailers, noting grpc-status.
func (x *exchange) h2Trailers(t http.Header) []hfield {
	if len(t) == 0 {
		return nil
	}
	out := make([]hfield, 0, len(t))
	for k, vs := range t {
		if k == "Grpc-Status" && len(vs) > 0 {
			x.setGRPCStatus(vs[0])
		}
		for _, v := range vs {
			out = append(out, hfield{name: []byte(k), value: []byte(v)})
		}
	}
	return out
}

// h2BodyFailed ends a response whose body broke off. A gRPC call ends
// with a status in trailers (DEADLINE_EXCEEDED when its deadline ran
// out, UNAVAILABLE when the backend reset the stream); another response
// can only be cut short. It returns the backend's failure, if it is one.
func (x *exchange) h2BodyFailed(err error, w *h2Watch) string {
	cause := context.Cause(w.ctx)
	x.errMsg = "backend body: " + err.Error()
	if x.sink.context().Err() != nil {
		x.errMsg = "client closed the request"
		x.closeClient = true
		return ""
	}
	reason := reasonReset
	switch {
	case cause == errH2Deadline:
		reason = ""
	case cause == errH2ReadTimeout:
		reason = reasonTimeout
	case isH2ProtocolError(err):
		reason = reasonInvalid
	}
	if !x.isGRPC() {
		x.closeClient = true
		x.sink.flush()
		return reason
	}
	code, msg := grpcUnavailable, "backend stream ended: "+err.Error()
	switch cause {
	case errH2Deadline:
		code, msg = grpcDeadlineExceeded, x.deadlineMsg()
	case errH2ReadTimeout:
		code, msg = grpcUnavailable, "backend read timeout"
	}
	x.errMsg = msg
	x.grpcStatus = grpcCodeText[code]
	tr := []hfield{
		{name: []byte("Grpc-Status"), value: []byte(x.grpcStatus)},
		{name: []byte("Grpc-Message"), value: []byte(grpcMessage(msg))},
	}
	if x.sink.finish(tr) != nil {
		x.closeClient = true
	}
	return reason
}
