package l7

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strconv"

	"github.com/rustygate/rustygate/l7/middleware"
)

// The exchange is also what middlewares of the response phase see
// (middleware.Exchange): the request before it is forwarded, and the
// response head before it is written to the client.
var _ middleware.Exchange = (*exchange)(nil)

// responsePhase is the part of an exchange only the middlewares that
// declare the response phase use.
type responsePhase struct {
	// pending are the handlers that asked for the response phase, in
	// chain order; they run in reverse once the response is known.
	pending []middleware.ResponseHandler
	// needBody: a pending handler reads or rewrites the response body.
	needBody bool
	// uri and method override the forwarded request line when set.
	uri    []byte
	method []byte
	// respBody is the buffered response body (needBody).
	respBody []byte
	isError  bool

	// filterers are the pending handlers that may filter the body, in
	// chain order; filter is the last filter installed (the body goes
	// in there), out the client end of the first (bodyfilter.go).
	filterers []middleware.ResponseBodyFilter
	filter    middleware.BodyFilter
	out       bodyOut
	// headBuf holds the response head's bytes once pinned (the head is
	// written after the body was read from the buffer it was in).
	headBuf []byte
	pinned  bool
}

func (x *exchange) URI() []byte {
	if x.phase.uri != nil {
		return x.phase.uri
	}
	if len(x.req.target) == 0 || x.req.target[0] != '/' {
		u := append([]byte(nil), x.req.path...)
		return append(u, x.req.query...)
	}
	return x.req.target
}

func (x *exchange) SetURI(uri string) {
	x.phase.uri = []byte(uri)
	if q := bytes.IndexByte(x.phase.uri, '?'); q >= 0 {
		x.req.path, x.req.query = x.phase.uri[:q], x.phase.uri[q:]
	} else {
		x.req.path, x.req.query = x.phase.uri, nil
	}
}

func (x *exchange) SetMethod(method string) {
	x.phase.method = []byte(method)
	x.req.method = x.phase.method
}

func (x *exchange) Proto() string { return x.proto }

func (x *exchange) PeerAddr() netip.AddrPort { return netip.AddrPortFrom(x.peer, x.peerPort) }

func (x *exchange) AddHeader(name, value string) {
	x.addReq = append(x.addReq, strHeader{name, value})
}

func (x *exchange) RequestHeaderNames(dst []string) []string {
	for i := range x.req.fields {
		if f := &x.req.fields[i]; !f.skip {
			dst = append(dst, string(f.name))
		}
	}
	for _, h := range x.addReq {
		dst = append(dst, h.name)
	}
	return dst
}

func (x *exchange) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for i := range x.req.fields {
		if f := &x.req.fields[i]; !f.skip && len(f.name) == len(name) && eqFoldAny(f.name, name) {
			dst = append(dst, f.value)
		}
	}
	for _, h := range x.addReq {
		if len(h.name) == len(name) && eqFoldAny(h.name, name) {
			dst = append(dst, []byte(h.value))
		}
	}
	return dst
}

var errBodyNotBuffered = errors.New("body too large to buffer, or streamed")

// maxPhaseBody bounds a request or response body held in memory for a
// middleware (a WASM guest) that reads it.
const maxPhaseBody = 8 << 20

func (x *exchange) RequestBody() ([]byte, error) {
	if x.bodyBuffered != nil || !x.req.hasBody() {
		return x.bodyBuffered, nil
	}
	if x.req.chunked || x.req.contentLength > maxPhaseBody {
		return nil, errBodyNotBuffered
	}
	return x.readWholeBody()
}

func (x *exchange) SetRequestBody(body []byte) {
	if x.req.hasBody() && x.bodyBuffered == nil {
		// The original body is still on the wire: it must be read (and
		// dropped) before the connection can carry another request.
		if _, err := x.RequestBody(); err != nil {
			x.closeClient = true
		}
	}
	x.bodyBuffered = body
	x.body = nil
	x.req.chunked = false
	x.req.contentLength = int64(len(body))
	if len(body) == 0 {
		x.bodyBuffered = nil
	}
}

func (x *exchange) ResponseIsError() bool { return x.phase.isError }

func (x *exchange) ResponseStatus() int { return x.status }

func (x *exchange) SetResponseStatus(code int) {
	x.status = code
	x.resp.status = code
	x.resp.reason = nil
}

func (x *exchange) ResponseHeaderNames(dst []string) []string {
	for i := range x.resp.fields {
		if f := &x.resp.fields[i]; !f.skip {
			dst = append(dst, string(f.name))
		}
	}
	for _, h := range x.addResp {
		dst = append(dst, h.name)
	}
	return dst
}

func (x *exchange) ResponseHeaderValues(name string, dst [][]byte) [][]byte {
	for i := range x.resp.fields {
		if f := &x.resp.fields[i]; !f.skip && len(f.name) == len(name) && eqFoldAny(f.name, name) {
			dst = append(dst, f.value)
		}
	}
	for _, h := range x.addResp {
		if len(h.name) == len(name) && eqFoldAny(h.name, name) {
			dst = append(dst, []byte(h.value))
		}
	}
	return dst
}

func (x *exchange) SetResponseHeader(name, value string) {
	x.DelResponseHeader(name)
	x.dropResponseHeaders()
	kept := x.addResp[:0]
	for _, h := range x.addResp {
		if len(h.name) != len(name) || !eqFoldAny(h.name, name) {
			kept = append(kept, h)
		}
	}
	x.addResp = append(kept, strHeader{name, value})
}

func (x *exchange) ResponseBody() []byte { return x.phase.respBody }

func (x *exchange) SetResponseBody(body []byte) { x.phase.respBody = body }

// noteResponsePhase records, after a handler of the response phase let
// the request through, whether it wants the response; filters says it
// declared that it may filter the body.
func (x *exchange) noteResponsePhase(h middleware.ResponseHandler, filters bool) {
	// NeedBody implies NeedResponse, whether or not both bits are set.
	needs := h.ResponseNeeds(x)
	if needs == middleware.NeedNone {
		return
	}
	x.phase.pending = append(x.phase.pending, h)
	if needs&middleware.NeedBody != 0 {
		x.phase.needBody = true
	}
	if filters {
		x.noteBodyFilter(h)
	}
}

// runResponsePhase runs the pending response phases, last handler first.
// It returns nil, or the reply the client must get instead of the
// response: the ResponseFailure of the first handler (in run order) whose
// OnResponse failed. Every pending handler runs either way.
func (x *exchange) runResponsePhase(isError bool) *middleware.Reply {
	var failed *middleware.Reply
	x.phase.isError = isError
	for i := len(x.phase.pending) - 1; i >= 0; i-- {
		h := x.phase.pending[i]
		if err := h.OnResponse(x); err != nil && failed == nil {
			failed = h.ResponseFailure()
		}
	}
	x.phase.pending = x.phase.pending[:0]
	return failed
}

// bufferResponseBody reads the whole response body for middlewares that
// rewrite it, then frames it with a Content-Length.
func (x *exchange) bufferResponseBody(next func() ([]byte, error)) error {
	var body []byte
	for {
		p, err := next()
		body = append(body, p...)
		if int64(len(body)) > maxPhaseBody {
			return errBodyNotBuffered
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	x.phase.respBody = body
	return nil
}

// setLengthField replaces the response's framing by a Content-Length for
// a body the proxy holds whole.
func (x *exchange) setLengthField(n int) {
	for i := range x.resp.fields {
		if classify(x.resp.fields[i].name) == hContentLength {
			x.resp.fields[i].skip = true
		}
	}
	x.resp.kind = bodyLength
	x.resp.contentLength = int64(n)
	x.addResp = append(x.addResp, strHeader{"Content-Length", strconv.Itoa(n)})
}
