package l7

import (
	"strconv"
	"time"

	"github.com/rustygate/rustygate/config"
)

// gRPC through the proxy.
//
// A request whose Content-Type is application/grpc (or application/grpc+
// and application/grpc;...) is a gRPC call. The proxy does not parse its
// messages: headers, DATA and trailers pass through as they are, to a
// pool that speaks HTTP/2. What the proxy knows of gRPC is at the edges
// of the call: grpc-timeout bounds it like timeouts.total; a reply the
// gateway makes itself (no route, no backend, a limit, an authentication
// failure) is a trailers-only gRPC status rather than an HTTP error a gRPC
// client cannot read; a backend that answers with the status alone may be
// retried on the statuses of retries.grpc_on; the call's grpc-status goes
// to the access line and to rustygate_grpc_requests_total.

// gRPC status codes the proxy produces.
const (
	grpcOK               = 0
	grpcCancelled        = 1
	grpcUnknown          = 2
	grpcDeadlineExceeded = 4
	grpcPermissionDenied = 7
	grpcResourceExhaust  = 8
	grpcUnimplemented    = 12
	grpcInternal         = 13
	grpcUnavailable      = 14
	grpcUnauthenticated  = 16
)

// grpcCodeText holds the codes 0-16 as text (bounded metric labels).
var grpcCodeText = func() (t [17]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

// isGRPC reports a gRPC request (Content-Type application/grpc...).
func (x *exchange) isGRPC() bool {
	if x.grpc == 0 {
		x.grpc = 2
		ct := x.Header("content-type")
		const p = "application/grpc"
		if len(ct) >= len(p) && eqFold(ct[:len(p)], p) && (len(ct) == len(p) || ct[len(p)] == '+' || ct[len(p)] == ';') {
			x.grpc = 1
		}
	}
	return x.grpc == 1
}

// grpcCodeOf maps the status of a reply the gateway makes to the gRPC
// status a client understands.
func grpcCodeOf(status int) int {
	switch status {
	case 400:
		return grpcInternal
	case 401:
		return grpcUnauthenticated
	case 403:
		return grpcPermissionDenied
	case 404, 405, 501:
		return grpcUnimplemented
	case 408, 504:
		return grpcDeadlineExceeded
	case 413, 429, 431:
		return grpcResourceExhaust
	case 499:
		return grpcCancelled
	case 502, 503:
		return grpcUnavailable
	}
	return grpcUnknown
}

// setGRPCStatus records the call's status from a grpc-status value; a
// value that is not a code 0-16 is recorded as UNKNOWN.
func (x *exchange) setGRPCStatus(v string) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 16 {
		n = grpcUnknown
	}
	x.grpcStatus = grpcCodeText[n]
}

// grpcTimeout parses a grpc-timeout value: 1 to 8 digits and a unit (H,
// M, S, m, u, n).
func grpcTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, ok := parseUint(v[:len(v)-1])
	if !ok {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// applyGRPCTimeout makes a gRPC call's grpc-timeout its deadline when it
// ends before timeouts.total.
func (x *exchange) applyGRPCTimeout() {
	if !x.isGRPC() {
		return
	}
	d, ok := grpcTimeout(x.Header("grpc-timeout"))
	if !ok {
		return
	}
	if end := x.start.Add(d); x.deadline.IsZero() || end.Before(x.deadline) {
		x.deadline = end
		x.grpcDeadline = true
	}
}

// deadlineMsg says which bound ended the request.
func (x *exchange) deadlineMsg() string {
	if x.grpcDeadline {
		return "deadline exceeded (grpc-timeout)"
	}
	return "request timeout (timeouts.total)"
}

// grpcMessage percent-encodes s for grpc-message (bytes outside
// printable ASCII and '%').
func grpcMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// shapeGRPC turns a reply of the gateway to a gRPC call into the gRPC
// form: HTTP 200, trailers-only, the status in grpc-status and
// grpc-message.
func (x *exchange) shapeGRPC(status int) localReply {
	msg := x.errMsg
	if msg == "" {
		msg = statusText(status)
	}
	code := grpcCodeOf(status)
	return localReply{status: 200, ctype: "application/grpc", noBody: true,
		grpcStatus: grpcCodeText[code], grpcMessage: grpcMessage(msg)}
}

// grpcRetryCodes compiles retries.grpc_on into a set of codes.
func grpcRetryCodes(on []string) (set uint32) {
	for _, name := range on {
		if code, ok := config.GRPCCodes[name]; ok {
			set |= 1 << code
		}
	}
	return set
}

// grpcCodeName is the retries.grpc_on name of a code.
func grpcCodeName(code int) string {
	for name, c := range config.GRPCCodes {
		if c == code {
			return name
		}
	}
	return "unknown"
}
