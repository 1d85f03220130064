package waf

import (
	"net/netip"
	"strings"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// fakeEx is a request as a middleware sees it, for the package's unit
// tests (the e2e tests go through the proxy's own exchange).
type fakeEx struct {
	// Exchange provides the methods the WAF never calls (nil: calling
	// one panics).
	middleware.Exchange
	method, uri, proto string
	headers            [][2]string
	body               []byte
	bodyReads          int
}

var _ middleware.Exchange = (*fakeEx)(nil)

func (f *fakeEx) Method() []byte { return []byte(f.method) }
func (f *fakeEx) Path() []byte {
	p, _, _ := strings.Cut(f.uri, "?")
	return []byte(p)
}
func (f *fakeEx) Host() []byte { return f.Header("host") }
func (f *fakeEx) Header(name string) []byte {
	for _, h := range f.headers {
		if strings.EqualFold(h[0], name) {
			return []byte(h[1])
		}
	}
	return nil
}
func (f *fakeEx) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range f.headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}
func (f *fakeEx) RequestHeaderNames(dst []string) []string {
	seen := map[string]bool{}
	for _, h := range f.headers {
		if k := strings.ToLower(h[0]); !seen[k] {
			seen[k] = true
			dst = append(dst, h[0])
		}
	}
	return dst
}
func (f *fakeEx) PeerIP() netip.Addr                                 { return netip.MustParseAddr("192.0.2.7") }
func (f *fakeEx) PeerAddr() netip.AddrPort                           { return netip.AddrPortFrom(f.PeerIP(), 40000) }
func (f *fakeEx) SetHeader(name, value string)                       {}
func (f *fakeEx) DelHeader(name string)                              {}
func (f *fakeEx) AddResponseHeader(name, v string)                   {}
func (f *fakeEx) DelResponseHeader(name string)                      {}
func (f *fakeEx) Route() string                                      { return "r" }
func (f *fakeEx) Value(key string) any                               { return nil }
func (f *fakeEx) SetValue(key string, v any)                         {}
func (f *fakeEx) URI() []byte                                        { return []byte(f.uri) }
func (f *fakeEx) SetURI(uri string)                                  {}
func (f *fakeEx) SetMethod(method string)                            {}
func (f *fakeEx) Proto() string                                      { return f.proto }
func (f *fakeEx) AddHeader(name, value string)                       {}
func (f *fakeEx) RequestBody() ([]byte, error)                       { return f.body, nil }
func (f *fakeEx) SetRequestBody(body []byte)                         {}
func (f *fakeEx) ResponseIsError() bool                              { return false }
func (f *fakeEx) ResponseStatus() int                                { return 0 }
func (f *fakeEx) SetResponseStatus(code int)                         {}
func (f *fakeEx) ResponseHeaderNames(d []string) []string            { return d }
func (f *fakeEx) ResponseHeaderValues(n string, d [][]byte) [][]byte { return d }
func (f *fakeEx) SetResponseHeader(name, value string)               {}
func (f *fakeEx) ResponseBody() []byte                               { return nil }
func (f *fakeEx) SetResponseBody(body []byte)                        {}
func (f *fakeEx) RequestID() []byte                                  { return []byte("req-1") }
func (f *fakeEx) RequestBodyPrefix(limit int) ([]byte, bool, error) {
	f.bodyReads++
	if len(f.body) > limit {
		return f.body[:limit], false, nil
	}
	return f.body, true, nil
}

func configCheck(report func(field, msg string)) *config.SettingsCheck {
	return config.NewSettingsCheck(true, true, nil, report)
}
