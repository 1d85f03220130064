package compress

import (
	"bytes"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/rustygate/rustygate/l7/middleware"
)

// fakeExchange is a response as the proxy shows it to a middleware:
// request and response headers, the status, and the body the filters
// write to the client (it is also the client's BodyWriter).
type fakeExchange struct {
	// Exchange provides the methods compress never calls (nil: calling
	// one panics).
	middleware.Exchange
	method  string
	reqHdr  [][2]string
	status  int
	respHdr [][2]string
	// body is what reached the client; flushes counts the flushes, and
	// headAt the length of body when the head was "written" (-1: not
	// yet).
	body    bytes.Buffer
	flushes int
	headAt  int
}

var _ middleware.Exchange = (*fakeExchange)(nil)

func newExchange(reqHdr, respHdr [][2]string) *fakeExchange {
	return &fakeExchange{method: "GET", reqHdr: reqHdr, status: 200, respHdr: respHdr, headAt: -1}
}

func (e *fakeExchange) respHeader(name string) string {
	var vs []string
	for _, h := range e.respHdr {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return strings.Join(vs, "|")
}

// BodyWriter of the client.
func (e *fakeExchange) Write(p []byte) (int, error) {
	if e.headAt < 0 {
		e.headAt = e.body.Len()
	}
	return e.body.Write(p)
}

func (e *fakeExchange) Flush() error {
	if e.headAt < 0 {
		e.headAt = e.body.Len()
	}
	e.flushes++
	return nil
}

func values(hs [][2]string, name string, dst [][]byte) [][]byte {
	for _, h := range hs {
		if strings.EqualFold(h[0], name) {
			// Read-only view of the string: the fake allocates nothing.
			dst = append(dst, unsafe.Slice(unsafe.StringData(h[1]), len(h[1])))
		}
	}
	return dst
}

func (e *fakeExchange) Method() []byte { return []byte(e.method) }
func (e *fakeExchange) Path() []byte   { return []byte("/") }
func (e *fakeExchange) Host() []byte   { return []byte("example.test") }
func (e *fakeExchange) Header(name string) []byte {
	if v := values(e.reqHdr, name, nil); len(v) > 0 {
		return v[0]
	}
	return nil
}
func (e *fakeExchange) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	return values(e.reqHdr, name, dst)
}
func (e *fakeExchange) PeerIP() netip.Addr                     { return netip.MustParseAddr("127.0.0.1") }
func (e *fakeExchange) SetHeader(name, value string)           {}
func (e *fakeExchange) DelHeader(name string)                  {}
func (e *fakeExchange) Route() string                          { return "r" }
func (e *fakeExchange) Value(key string) any                   { return nil }
func (e *fakeExchange) SetValue(key string, v any)             {}
func (e *fakeExchange) URI() []byte                            { return []byte("/") }
func (e *fakeExchange) SetURI(uri string)                      {}
func (e *fakeExchange) SetMethod(method string)                {}
func (e *fakeExchange) Proto() string                          { return "HTTP/1.1" }
func (e *fakeExchange) PeerAddr() netip.AddrPort               { return netip.MustParseAddrPort("127.0.0.1:1") }
func (e *fakeExchange) AddHeader(name, value string)           {}
func (e *fakeExchange) RequestHeaderNames(d []string) []string { return d }
func (e *fakeExchange) RequestBody() ([]byte, error)           { return nil, nil }
func (e *fakeExchange) BufferedBody() ([]byte, bool)           { return nil, false }
func (e *fakeExchange) Offload()                               {}
func (e *fakeExchange) Scheme() string                         { return "http" }
func (e *fakeExchange) SetRequestBody(body []byte)             {}
func (e *fakeExchange) ResponseIsError() bool                  { return false }
func (e *fakeExchange) ResponseStatus() int                    { return e.status }
func (e *fakeExchange) SetResponseStatus(code int)             { e.status = code }
func (e *fakeExchange) ResponseBody() []byte                   { return nil }
func (e *fakeExchange) SetResponseBody(body []byte)            {}
func (e *fakeExchange) ResponseHeaderNames(d []string) []string {
	for _, h := range e.respHdr {
		d = append(d, h[0])
	}
	return d
}
func (e *fakeExchange) ResponseHeaderValues(name string, dst [][]byte) [][]byte {
	return values(e.respHdr, name, dst)
}
func (e *fakeExchange) AddResponseHeader(name, value string) {
	e.checkHeadOpen()
	e.respHdr = append(e.respHdr, [2]string{name, value})
}
func (e *fakeExchange) SetResponseHeader(name, value string) {
	e.DelResponseHeader(name)
	e.respHdr = append(e.respHdr, [2]string{name, value})
}
func (e *fakeExchange) DelResponseHeader(name string) {
	e.checkHeadOpen()
	kept := e.respHdr[:0]
	for _, h := range e.respHdr {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	e.respHdr = kept
}

// checkHeadOpen panics when the head is changed after it was written: a
// filter must decide before its first output.
func (e *fakeExchange) checkHeadOpen() {
	if e.headAt >= 0 {
		panic("response head changed after it was written")
	}
}
