package outbound

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
)

func TestParseURL(t *testing.T) {
	for _, bad := range []string{"", "auth:9000", "ftp://x", "http://", "http://u:p@x", "http://x#f", "http://x:0", "http://x:70000", "http://[::1"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
		}
	}
	for _, good := range []string{"http://auth:9000/check?a=1", "https://[::1]:8443", "http://auth"} {
		if _, err := ParseURL(good); err != nil {
			t.Errorf("ParseURL(%q): %v", good, err)
		}
	}
}

type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	headers [][2]string
}

func (r *request) PeerIP() netip.Addr { return netip.MustParseAddr("::ffff:192.0.2.9") }
func (r *request) Header(name string) []byte {
	if vs := r.RequestHeaderValues(name, nil); len(vs) > 0 {
		return vs[0]
	}
	return nil
}
func (r *request) RequestHeaderNames(dst []string) []string {
	for _, h := range r.headers {
		dst = append(dst, h[0])
	}
	return dst
}
func (r *request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

func TestCopyHeaders(t *testing.T) {
	r := &request{headers: [][2]string{{"x-a", "1"}, {"X-A", "2"}, {"Host", "h"}, {"Connection", "close"}, {"X-Forwarded-For", "198.51.100.1"}}}
	h := http.Header{}
	CopyHeaders(h, r, NotCopied)
	if got := h.Values("X-A"); len(got) != 2 || got[0] != "1" || got[1] != "2" || h.Get("Host") != "" || h.Get("Connection") != "" {
		t.Errorf("copied %v", h)
	}
	if got := ForwardedFor(r); got != "198.51.100.1, 192.0.2.9" {
		t.Errorf("ForwardedFor = %q", got)
	}
}
