package clientip

import (
	"net/netip"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
)

// request is the test double of middleware.Request.
type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	peer netip.Addr
	xff  []byte
}

func (r *request) PeerIP() netip.Addr { return r.peer }
func (r *request) Header(name string) []byte {
	if name == "X-Forwarded-For" {
		return r.xff
	}
	return nil
}

func TestClient(t *testing.T) {
	ps, err := ParseProxies([]string{"10.0.0.0/8", "::ffff:192.0.2.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ peer, xff, want string }{
		{"203.0.113.9", "198.51.100.1", "203.0.113.9"}, // untrusted peer: header ignored
		{"10.1.1.1", "198.51.100.1, 10.2.2.2", "198.51.100.1"},
		{"10.1.1.1", "", "10.1.1.1"},
		{"192.0.2.7", "198.51.100.4:80", "198.51.100.4"}, // mapped prefix unmapped
		{"10.1.1.1", "junk", "10.1.1.1"},
	}
	for _, tt := range tests {
		r := &request{peer: netip.MustParseAddr(tt.peer)}
		if tt.xff != "" {
			r.xff = []byte(tt.xff)
		}
		if got := ps.Client(r); got != netip.MustParseAddr(tt.want) {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
	r := &request{peer: netip.MustParseAddr("10.1.1.1"), xff: []byte("198.51.100.1, 10.2.2.2")}
	if n := testing.AllocsPerRun(100, func() { ps.Client(r) }); n != 0 {
		t.Errorf("Client allocates %v times", n)
	}
}

func TestParseProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "nope", ""} {
		if _, err := ParseProxies([]string{bad}); err == nil {
			t.Errorf("ParseProxies(%q) succeeded", bad)
		}
	}
	ps, err := ParseProxies([]string{"192.0.2.1", "2001:db8::/32"})
	if err != nil || len(ps) != 2 || ps[0].Bits() != 32 {
		t.Fatalf("ParseProxies = %v, %v", ps, err)
	}
}
