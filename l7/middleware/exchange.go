package middleware

import "net/netip"

// Exchange is what a middleware that runs in the response phase sees of
// one request and, later, of its response (a WASM guest sees exactly
// this). The proxy implements it once for both HTTP engines. Byte slices it returns
// are only read during the call that received them; slices it is given
// (SetRequestBody, SetResponseBody) become the proxy's.
//
// Request-side methods are used during Handle; the response-side methods
// only during ResponseHandler.OnResponse and
// ResponseBodyFilter.FilterResponseBody (and by the filter it returns,
// until the head is written). AddResponseHeader serves both: called
// during Handle, it adds to whatever response the client gets (as for
// every policy); called in the response phase, it adds to the response
// being handled.
type Exchange interface {
	// Method, Path, Host, Header, PeerIP, SetHeader, DelHeader,
	// AddResponseHeader, Route, Value and SetValue as for every policy.
	// Value and SetValue carry the state between the request and the
	// response phase, so they must work for any key.
	Request

	// URI is the request target as received, path and query ("/a?b=c"),
	// "/" when empty.
	URI() []byte
	// SetURI replaces the path and query of the forwarded request. The
	// host checks it is a plausible origin-form target (starts with '/',
	// no spaces or control characters) before calling.
	SetURI(uri string)
	// SetMethod replaces the method of the forwarded request (an RFC 9110
	// token, checked by the host).
	SetMethod(method string)
	// Proto is the protocol version: "HTTP/1.1" or "HTTP/2.0".
	Proto() string
	// PeerAddr is the TCP peer address with its port.
	PeerAddr() netip.AddrPort
	// AddHeader adds a value to a request header of the forwarded request,
	// keeping the values already there (SetHeader replaces them).
	AddHeader(name, value string)
	// RequestHeaderNames appends the names of the request headers to dst
	// and returns it. Each name should appear once; case does not matter
	// (the host lowercases and removes duplicates).
	RequestHeaderNames(dst []string) []string
	// RequestHeaderValues appends every value of the named request header
	// (case-insensitive) to dst, in order, and returns it.
	RequestHeaderValues(name string, dst [][]byte) [][]byte
	// RequestBody returns the whole request body, read and kept so that
	// it is still forwarded. Called only when a guest reads the body. A
	// proxy that cannot buffer may return nil and an error (the guest then
	// traps).
	RequestBody() ([]byte, error)
	// SetRequestBody replaces the forwarded request body (the proxy fixes
	// Content-Length / framing).
	SetRequestBody(body []byte)
	// RequestBodyPrefix returns the first bytes of the request body, at
	// least limit of them when the body is that long (it may return a
	// little more), and whether they are the whole body. Only this prefix
	// is held in memory: the body still streams to the backend, the
	// prefix replayed first. A body the proxy already holds whole is
	// returned from memory. An error means the client's body could not be
	// read (the request cannot be forwarded whole).
	RequestBodyPrefix(limit int) (prefix []byte, complete bool, err error)
	// RequestID is the request's id, as the access line and the proxy's
	// own error replies carry it.
	RequestID() []byte

	// ResponseIsError reports that the response was produced by the proxy
	// itself because the backend failed (502, 504, ...).
	ResponseIsError() bool
	ResponseStatus() int
	SetResponseStatus(code int)
	// ResponseHeaderNames and ResponseHeaderValues are as for the request.
	ResponseHeaderNames(dst []string) []string
	ResponseHeaderValues(name string, dst [][]byte) [][]byte
	// SetResponseHeader replaces every value of a response header;
	// DelResponseHeader removes them.
	SetResponseHeader(name, value string)
	DelResponseHeader(name string)
	// ResponseBody is the buffered response body. It is only asked for when
	// ResponseNeeds reported NeedBody; otherwise the proxy may return nil.
	ResponseBody() []byte
	// SetResponseBody replaces the response body (the proxy fixes
	// Content-Length). Only called when ResponseNeeds reported NeedBody.
	SetResponseBody(body []byte)
}

// ResponseNeeds tells the proxy what a handler needs once the request was
// forwarded (see ResponseHandler).
type ResponseNeeds uint8

const (
	// NeedNone: do not call OnResponse.
	NeedNone ResponseNeeds = 0
	// NeedResponse: call OnResponse with the response head before it is
	// sent to the client.
	NeedResponse ResponseNeeds = 1
	// NeedBody (always with NeedResponse): buffer the whole response body
	// first; OnResponse may replace it.
	NeedBody ResponseNeeds = 2
)

// ResponseHandler is the response phase of a middleware. The handler of
// every instance that declares PhaseResponse implements it (a chain with
// one that does not fails to build).
//
// After Handle let a request through, the proxy asks ResponseNeeds; for
// each handler that needs the response it calls OnResponse, in the
// reverse order of the chain, once the response (the backend's, or the
// proxy's own error response, ResponseIsError true) is known and before
// its head is sent; with NeedBody, after the whole body was buffered.
// OnResponse is called for every such request, even when the backend
// failed, so that a handler can release what it kept for the request.
type ResponseHandler interface {
	ResponseNeeds(ex Exchange) ResponseNeeds
	// OnResponse returns an error when the response must not reach the
	// client, which then gets ResponseFailure instead.
	OnResponse(ex Exchange) error
	// ResponseFailure is the reply sent instead of a response whose
	// OnResponse failed.
	ResponseFailure() *Reply
}

// BodyWriter is where a body filter writes the body it produces: the
// client, or the filter of the middleware before it in the chain.
type BodyWriter interface {
	// Write sends the next piece of the transformed body. p is only
	// read during the call.
	Write(p []byte) (int, error)
	// Flush pushes what was written so far on to the client.
	Flush() error
}

// BodyFilter transforms a response body on its way to the client, piece
// by piece, without holding it whole (compression is one). The proxy
// writes every byte of the backend's body through it and then calls
// Close exactly once, whatever happened.
type BodyFilter interface {
	// Write takes the next piece of the body; p is only valid during the
	// call. An error ends the response (the client connection is
	// closed).
	Write(p []byte) (int, error)
	// Flush is called when the backend has nothing more for now (a
	// streamed response, a server-sent event, a chunk the backend
	// flushed): the filter writes out what it holds, as far as it can,
	// and flushes its BodyWriter, so that the client gets it now.
	Flush() error
	// Close ends the body. complete says the whole body was written:
	// the filter then writes its last bytes (the end of a compressed
	// stream) without flushing; the proxy finishes the response. Without
	// complete (the backend or the client failed) it writes nothing more.
	// Either way it releases what it holds (pooled encoders) and is not
	// used again.
	Close(complete bool) error
}

// ResponseBodyFilter is the capability of a middleware that transforms
// response bodies as they stream. The handler of every instance that
// declares PhaseResponseBody implements it (and ResponseHandler).
//
// For each response with a body whose OnResponse ran (ResponseNeeds
// asked for the response, OnResponse succeeded), the proxy asks
// FilterResponseBody for a filter, in chain order: each filter writes
// into the one asked before it, the first into dst, the client; the
// backend's body goes through the last one first. The response head can
// still be changed through ex (headers, not the status): it is written
// when the body first reaches the client, that is when the first filter
// first writes to or flushes dst, or is closed. A filter may so hold the
// first bytes of the body before deciding what to do with it (and what
// the head says). Once a filter is returned, the proxy drops the
// response's Content-Length and streams the body (chunked on HTTP/1.1).
type ResponseBodyFilter interface {
	// FilterResponseBody returns a filter for the response's body, or
	// nil to leave it as it is (it may still have changed the head).
	FilterResponseBody(ex Exchange, dst BodyWriter) BodyFilter
}

// ReplyError is the error a BodyFilter returns to refuse a response whose
// head has not been written yet (a filter holds the first bytes of the
// body while it decides): the client gets Reply instead, and the
// connection is closed after it. Once the head is out, it ends the
// response like any other filter error.
type ReplyError struct {
	Reply *Reply
}

func (e *ReplyError) Error() string {
	if e.Reply != nil && e.Reply.LogReason != "" {
		return e.Reply.LogReason
	}
	return "response refused"
}
