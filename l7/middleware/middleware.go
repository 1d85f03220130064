// Package middleware is the contract between the proxy and its
// middlewares (CORS, rate limiting, JWT, WASM plugins, ...). A middleware
// sees one Request, written once for both HTTP engines, and either lets
// it go on (possibly changed) or answers it itself.
//
// Each middleware kind is a Module that its own package registers in an
// init function (Register); the binary links the kinds it offers by
// importing their packages (package standard lists RustyGate's). The
// proxy builds a route's chain by looking each entry's name up in the
// registry and never names a kind: adding a middleware is its package
// and one import line in standard.
//
// A module's New builds an Instance when a snapshot is built, never on
// the request path: it validates and fails on settings it cannot run,
// releasing what it started. The Instance declares its Capabilities,
// which the proxy trusts and never discovers by type: the phases it runs
// in (a handler declaring PhaseResponse implements ResponseHandler, one
// declaring PhaseResponseBody also ResponseBodyFilter, or the chain fails
// to build) and whether it may block (MayBlock: the route
// then runs off the event loops). A handler that blocks only at times
// declares MayBlock false and calls Request.Offload before it does. A handler that owns background work
// implements Closer; the snapshot closes it once no request uses it.
//
// A built handler is shared by every request of its snapshot, so Handle
// must be safe for concurrent use and should not allocate on the common
// path.
//
// Package middlewaretest provides a Request held in memory for
// middlewares' unit tests.
package middleware

import (
	"net/netip"
	"strconv"
)

// Request is what a policy sees of a request and may change before it is
// forwarded. Byte slices are valid only during Handle.
type Request interface {
	Method() []byte
	// Path is the path without the query, as received.
	Path() []byte
	// Host is the Host header, port included.
	Host() []byte
	// Header returns the first value of the named header, or nil.
	// name is matched case-insensitively.
	Header(name string) []byte
	// RequestHeaderValues appends every value of the named header (one
	// per field line, received or set by a policy, matched
	// case-insensitively) to dst: a policy that needs a header to occur
	// once can tell.
	RequestHeaderValues(name string, dst [][]byte) [][]byte
	// PeerIP is the address of the TCP peer.
	PeerIP() netip.Addr
	// SetHeader sets a header on the request forwarded to the backend,
	// replacing every line received with that name (in any case).
	SetHeader(name, value string)
	// DelHeader removes a header from the forwarded request: every line
	// of that name, matched case-insensitively.
	DelHeader(name string)
	// AddResponseHeader adds a header to whatever response the client
	// gets: the backend's, or a Reply.
	AddResponseHeader(name, value string)
	// DelResponseHeader removes a header the backend's response carries
	// (headers added with AddResponseHeader stay).
	DelResponseHeader(name string)
	// Route is the name of the matched route.
	Route() string
	// Value returns a per-request value a policy earlier in the chain
	// stored with SetValue (e.g. verified JWT claims), or nil.
	Value(key string) any
	SetValue(key string, v any)
	// URI is the target the request is forwarded with: path and query,
	// as changed by the policies before (see Exchange.SetURI).
	URI() []byte
	// Scheme is "https" when the client spoke TLS to the proxy, else
	// "http".
	Scheme() string
	// RequestHeaderNames appends the names of the headers the request is
	// forwarded with (received and set by policies; hop-by-hop and
	// framing headers excluded) to dst. It allocates: for policies that
	// copy a request (forward_auth, mirror), not for every request.
	RequestHeaderNames(dst []string) []string
	// BufferedBody returns the whole request body when it is already in
	// memory (nil, true when there is none). It reports false when the
	// body is still to be read from the client: a policy that cannot
	// wait for it goes without. The slice is valid only during Handle.
	BufferedBody() ([]byte, bool)
	// Offload moves the rest of the exchange off the event loop it runs
	// on, if any: a policy that declares MayBlock false calls it before
	// work that is long only at times (a password hash verified on a
	// cache miss), so that it never stalls the loop's other connections.
	Offload()
	// RequestID is the request's id: the one in the access log, in the
	// X-Request-Id sent to the backend and in the response.
	RequestID() []byte
	// AddHeader adds a line to the forwarded request, keeping the lines
	// already there with that name (SetHeader replaces them).
	AddHeader(name, value string)
	// SetURI replaces the path and query of the forwarded request (the
	// route was chosen, and the policies before saw, the received one).
	// The caller passes a valid origin-form target: it starts with '/',
	// and has no spaces, control characters or '#'.
	SetURI(uri string)
	// LimitRequestBody bounds the request body to max bytes. It returns
	// false when the declared length (Content-Length) is already larger:
	// the caller then answers (413). A body of unknown length (chunked,
	// HTTP/2 without content-length) is counted as it streams to the
	// backend: past max, the exchange ends with 413 if the response has
	// not started, and the client connection is closed either way.
	LimitRequestBody(max int64) bool
}

// IntResponseHeaders is implemented by the requests of engines that can
// add a response header whose value is a number without allocating: the
// digits are written into storage of the exchange's own. A policy that
// adds numbers on every request (rate_limit's RateLimit-Remaining)
// prefers it to AddResponseHeader with a formatted string.
type IntResponseHeaders interface {
	AddResponseHeaderInt(name string, v int64)
}

// AddResponseHeaderInt adds a response header of value v to r, without
// allocating when r implements IntResponseHeaders.
func AddResponseHeaderInt(r Request, name string, v int64) {
	if a, ok := r.(IntResponseHeaders); ok {
		a.AddResponseHeaderInt(name, v)
		return
	}
	r.AddResponseHeader(name, strconv.FormatInt(v, 10))
}

// Reply is a response a policy sends instead of forwarding.
type Reply struct {
	Status  int
	Headers [][2]string
	Body    []byte
	// Error, with no Body, makes the reply the proxy's own JSON error
	// body ({"error", "status", "request_id"}), as for its other errors.
	Error string
	// LogReason is the access line's error (default: "rejected by
	// policy"); short and bounded, it says which rule refused.
	LogReason string
}

// Handler is one built policy.
type Handler interface {
	// Handle returns nil to let the request go on, or a Reply to answer
	// it without forwarding.
	Handle(r Request) *Reply
}

// Closer is implemented by policies that own background work (key-set
// refreshers, expiry sweepers); the snapshot closes them when it is
// replaced and no request uses it any more.
type Closer interface {
	Close() error
}

// Reporter receives a policy's decisions for metrics and logs. policy is
// the module's name (its Module.Name); reason is short and bounded
// ("expired", "bad_signature", "origin", ...), safe as a metric label.
type Reporter interface {
	Rejected(policy, route, reason string, client netip.Addr)
}

// NopReporter discards reports.
type NopReporter struct{}

// Rejected implements Reporter.
func (NopReporter) Rejected(policy, route, reason string, client netip.Addr) {}
