package l7

import (
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/rustygate/rustygate/l7/middleware"
)

// strHeader is a header added by a policy; kept as strings so adding one
// costs no conversion.
type strHeader struct {
	name, value string
}

type keyValue struct {
	key string
	val any
}

// The exchange is the middleware.Request of both engines.
var (
	_ middleware.Request            = (*exchange)(nil)
	_ middleware.IntResponseHeaders = (*exchange)(nil)
)

func (x *exchange) Method() []byte { return x.req.method }
func (x *exchange) Path() []byte   { return x.req.path }
func (x *exchange) Host() []byte   { return x.req.host }

func (x *exchange) Header(name string) []byte {
	if x.req.xffMulti && len(name) == 15 && eqFoldAny(name, "x-forwarded-for") {
		// Repeated lines are one list (RFC 9110 5.3): a client must not
		// hide an address in a second line.
		var joined []byte
		for i := range x.req.fields {
			if f := &x.req.fields[i]; classify(f.name) == hXForwardedFor {
				if joined != nil {
					joined = append(joined, ", "...)
				}
				joined = append(joined, f.value...)
			}
		}
		return joined
	}
	for i := range x.req.fields {
		f := &x.req.fields[i]
		if len(f.name) == len(name) && eqFoldAny(f.name, name) {
			return f.value
		}
	}
	return nil
}

// eqFoldAny compares ASCII case-insensitively, both sides in any case;
// the lengths must be equal.
func eqFoldAny[T ~string | ~[]byte](b T, s string) bool {
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func (x *exchange) PeerIP() netip.Addr { return x.peer }

func (x *exchange) SetHeader(name, value string) {
	x.DelHeader(name)
	x.addReq = append(x.addReq, strHeader{name, value})
}

func (x *exchange) DelHeader(name string) {
	for i := range x.req.fields {
		f := &x.req.fields[i]
		if len(f.name) == len(name) && eqFoldAny(f.name, name) {
			f.skip = true
		}
	}
	kept := x.addReq[:0]
	for _, h := range x.addReq {
		if len(h.name) != len(name) || !eqFoldAny(h.name, name) {
			kept = append(kept, h)
		}
	}
	x.addReq = kept
}

func (x *exchange) DelResponseHeader(name string) {
	x.delResp = append(x.delResp, name)
	// In the response phase the backend's head is already parsed: drop
	// the field now (before, this marks nothing that parsing keeps).
	for i := range x.resp.fields {
		if f := &x.resp.fields[i]; len(f.name) == len(name) && eqFoldAny(f.name, name) {
			f.skip = true
		}
	}
}

// dropResponseHeaders marks the backend response's fields that policies
// removed.
func (x *exchange) dropResponseHeaders() {
	for _, name := range x.delResp {
		for i := range x.resp.fields {
			if f := &x.resp.fields[i]; len(f.name) == len(name) && eqFoldAny(f.name, name) {
				f.skip = true
			}
		}
	}
}

func (x *exchange) AddResponseHeader(name, value string) {
	x.addResp = append(x.addResp, strHeader{name, value})
}

// AddResponseHeaderInt implements middleware.IntResponseHeaders: the
// digits go into the exchange's numBuf, which lives as long as the
// headers added (both are reset together when the next exchange starts),
// so the value costs no allocation until numBuf is full.
func (x *exchange) AddResponseHeaderInt(name string, v int64) {
	free := x.numBuf[x.numLen:]
	digits := strconv.AppendInt(free[:0], v, 10)
	if len(digits) > len(free) || &digits[0] != &free[0] {
		x.AddResponseHeader(name, string(digits)) // did not fit: allocated
		return
	}
	x.numLen += len(digits)
	x.AddResponseHeader(name, unsafe.String(&digits[0], len(digits)))
}

func (x *exchange) Route() string {
	if x.route == nil {
		return ""
	}
	return x.route.Name
}

func (x *exchange) Value(key string) any {
	for _, kv := range x.values {
		if kv.key == key {
			return kv.val
		}
	}
	return nil
}

func (x *exchange) SetValue(key string, v any) {
	for i := range x.values {
		if x.values[i].key == key {
			x.values[i].val = v
			return
		}
	}
	x.values = append(x.values, keyValue{key, v})
}

// runPolicies runs the route's policies in order. It reports whether the
// request goes on to a backend; when a policy answered, the reply is sent.
func (x *exchange) runPolicies(chain []middleware.Instance) bool {
	for _, in := range chain {
		reply := in.Handler.Handle(x)
		if reply == nil {
			if in.Caps.Phases&middleware.PhaseResponse != 0 {
				// buildChain checked that the handler has a response phase.
				x.noteResponsePhase(in.Handler.(middleware.ResponseHandler), in.Caps.Phases&middleware.PhaseResponseBody != 0)
			}
			continue
		}
		x.drainOrClose()
		x.sendReply(reply)
		return false
	}
	return true
}

// sendReply answers with a middleware's reply: its body, or the proxy's
// own JSON error body for a reply that gives only an Error.
func (x *exchange) sendReply(reply *middleware.Reply) {
	x.replyHeaders = reply.Headers
	if reply.LogReason != "" {
		x.errMsg = reply.LogReason
	}
	if reply.Error != "" && len(reply.Body) == 0 {
		x.fail(&proxyError{reply.Status, reply.Error}, "")
		return
	}
	ctype := ""
	for _, h := range reply.Headers {
		if len(h[0]) == 12 && eqFoldAny(h[0], "content-type") {
			ctype = "-"
		}
	}
	if ctype == "" && len(reply.Body) > 0 {
		ctype = "application/json"
	}
	x.writeLocal(reply.Status, ctype, reply.Body, "")
	if x.errMsg == "" {
		x.errMsg = "rejected by policy"
	}
}

// appendStrHeaders appends policy-added headers.
func appendStrHeaders(w []byte, hs []strHeader) []byte {
	for _, h := range hs {
		w = append(w, h.name...)
		w = append(w, ':', ' ')
		w = append(w, h.value...)
		w = append(w, '\r', '\n')
	}
	return w
}

func appendPairHeaders(w []byte, hs [][2]string) []byte {
	for _, h := range hs {
		w = append(w, h[0]...)
		w = append(w, ':', ' ')
		w = append(w, h[1]...)
		w = append(w, '\r', '\n')
	}
	return w
}

func (x *exchange) Scheme() string { return x.scheme }

func (x *exchange) BufferedBody() ([]byte, bool) {
	if !x.req.hasBody() {
		return nil, true
	}
	return x.bodyBuffered, x.bodyBuffered != nil
}

func (x *exchange) Offload()          { x.wt.detach() }
func (x *exchange) RequestID() []byte { return x.reqID }

// LimitRequestBody implements middleware.Request: a declared length is
// refused at once; a streamed body is counted by sendBody.
func (x *exchange) LimitRequestBody(max int64) bool {
	if x.req.contentLength > max || int64(len(x.bodyBuffered)) > max {
		return false
	}
	if x.bodyLimit == 0 || max < x.bodyLimit {
		x.bodyLimit = max
	}
	return true
}
