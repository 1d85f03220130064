package plugins

import "github.com/rustygate/rustygate/l7/middleware"

// Exchange is what a guest sees of one request and, later, of its
// response: the response-phase view of the middleware contract.
type Exchange = middleware.Exchange

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
type ResponseNeeds = middleware.ResponseNeeds

// The values of ResponseNeeds.
const (
	NeedNone     = middleware.NeedNone
	NeedResponse = middleware.NeedResponse
	NeedBody     = middleware.NeedBody
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
