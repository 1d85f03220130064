// Package middlewaretest provides a middleware.Request held in memory,
// for the unit tests of middleware packages: it records what a handler
// changed so that a test can check it. It is not safe for concurrent use
// and is never linked into the proxy.
package middlewaretest

import (
	"net/netip"
	"strings"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Request is a request as a middleware sees it. Fill the exported fields
// (or use NewRequest), hand it to Handle, then read the fields back.
type Request struct {
	// Request provides the methods of the interface that Request does
	// not implement yet (they panic), so that adding one to the
	// interface does not break the tests of every middleware.
	middleware.Request

	MethodName string
	// Target is the request target, path and query ("/a?b=c").
	Target   string
	HostName string
	// Headers are the request's field lines in order; SetHeader,
	// AddHeader and DelHeader change them.
	Headers   [][2]string
	Peer      netip.Addr
	SchemeVal string
	ID        string
	RouteName string
	// ContentLength is the declared body length (-1: none declared).
	ContentLength int64
	// BodyLimit is what LimitRequestBody set (0: never called).
	BodyLimit int64
	// RespAdded are the headers added to the response; RespDeleted the
	// names removed from the backend's response.
	RespAdded   [][2]string
	RespDeleted []string
	// URISet reports that SetURI was called.
	URISet bool
	// Body is the request body, when it is in memory; Offloaded reports
	// that Offload was called.
	Body      []byte
	Offloaded bool

	values map[string]any
}

var _ middleware.Request = (*Request)(nil)

// NewRequest returns a GET of target on example.com over http from
// 192.0.2.1, with the given header lines (name, value, name, value...).
func NewRequest(target string, headers ...string) *Request {
	r := &Request{
		MethodName: "GET", Target: target, HostName: "example.com",
		Peer: netip.MustParseAddr("192.0.2.1"), SchemeVal: "http",
		ID: "req-1", RouteName: "r", ContentLength: -1,
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, [2]string{headers[i], headers[i+1]})
	}
	return r
}

func (r *Request) Method() []byte { return []byte(r.MethodName) }

func (r *Request) Path() []byte {
	p, _, _ := strings.Cut(r.Target, "?")
	return []byte(p)
}

func (r *Request) Host() []byte { return []byte(r.HostName) }

func (r *Request) Header(name string) []byte {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return []byte(h[1])
		}
	}
	return nil
}

func (r *Request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

// HeaderValues returns every value of the named request header.
func (r *Request) HeaderValues(name string) []string {
	var vs []string
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

func (r *Request) PeerIP() netip.Addr { return r.Peer }

func (r *Request) SetHeader(name, value string) {
	r.DelHeader(name)
	r.AddHeader(name, value)
}

func (r *Request) AddHeader(name, value string) {
	r.Headers = append(r.Headers, [2]string{name, value})
}

func (r *Request) DelHeader(name string) {
	kept := r.Headers[:0]
	for _, h := range r.Headers {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	r.Headers = kept
}

func (r *Request) AddResponseHeader(name, value string) {
	r.RespAdded = append(r.RespAdded, [2]string{name, value})
}

func (r *Request) DelResponseHeader(name string) {
	r.RespDeleted = append(r.RespDeleted, name)
}

// ResponseHeaderValues returns the values added to the response under
// name.
func (r *Request) ResponseHeaderValues(name string) []string {
	var vs []string
	for _, h := range r.RespAdded {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

func (r *Request) Route() string { return r.RouteName }

func (r *Request) Value(key string) any { return r.values[key] }

func (r *Request) SetValue(key string, v any) {
	if r.values == nil {
		r.values = map[string]any{}
	}
	r.values[key] = v
}

func (r *Request) Scheme() string { return r.SchemeVal }

func (r *Request) RequestID() []byte { return []byte(r.ID) }

func (r *Request) URI() []byte { return []byte(r.Target) }

func (r *Request) SetURI(uri string) { r.Target, r.URISet = uri, true }

func (r *Request) LimitRequestBody(max int64) bool {
	r.BodyLimit = max
	return r.ContentLength <= max
}

// RequestHeaderNames appends the names of the request's header lines.
func (r *Request) RequestHeaderNames(dst []string) []string {
	for _, h := range r.Headers {
		dst = append(dst, h[0])
	}
	return dst
}

// BufferedBody returns Body, always in memory.
func (r *Request) BufferedBody() ([]byte, bool) { return r.Body, true }

// Offload records the call.
func (r *Request) Offload() { r.Offloaded = true }
