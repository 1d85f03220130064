package plugins

import (
	"net/netip"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Exchange is what a guest sees of one request and, later, of its response.
// The proxy implements it once for both HTTP engines. Byte slices it returns
// are only read during the call that received them; slices it is given
// (SetRequestBody, SetResponseBody) become the proxy's.
//
// Request-side methods are used while the guest runs handle_request; the
// response-side methods only during handle_response (see Handler.OnResponse).
// AddResponseHeader serves both: called after handle_request returned, it
// adds to whatever response the client gets (as for every policy); called
// during handle_response, it must add to the response being handled.
type Exchange interface {
	// Method, Path, Host, Header, PeerIP, SetHeader, DelHeader,
	// AddResponseHeader, Route, Value and SetValue as for every policy.
	// Value and SetValue carry the state between handle_request and
	// handle_response, so they must work for any key.
	middleware.Request

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

	// ResponseIsError reports that the response was produced by the proxy
	// itself because the backend failed (502, 504, ...). The guest is told
	// through handle_response's is_error parameter.
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

// Features is the http-wasm feature bit set (enable_features).
type Features uint32

// Features defined by the ABI.
const (
	// FeatureBufferRequest lets a guest read the request body while it is
	// still forwarded. The host always buffers a body a guest reads, so it
	// is always granted.
	FeatureBufferRequest Features = 1
	// FeatureBufferResponse asks the proxy to buffer the backend response
	// so that handle_response can read and rewrite its body.
	FeatureBufferResponse Features = 2
	// FeatureTrailers is not supported: trailer kinds read as empty and
	// writing one traps.
	FeatureTrailers Features = 4

	supportedFeatures = FeatureBufferRequest | FeatureBufferResponse
)

// ResponseNeeds tells the proxy what a handler needs once the request was
// forwarded (see Handler.ResponseNeeds).
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

// http-wasm header_kind and body_kind values.
const (
	headerKindRequest          = 0
	headerKindResponse         = 1
	headerKindRequestTrailers  = 2
	headerKindResponseTrailers = 3

	bodyKindRequest  = 0
	bodyKindResponse = 1
)

// http-wasm log_level values.
const (
	logLevelDebug = -1
	logLevelInfo  = 0
	logLevelWarn  = 1
	logLevelError = 2
	logLevelNone  = 3
)
