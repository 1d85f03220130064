package ipfilter

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
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
	if strings.EqualFold(name, "X-Forwarded-For") {
		return r.xff
	}
	return nil
}

type rejection struct{ reason, client string }

type reporter struct{ got []rejection }

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.got = append(r.got, rejection{reason, client.String()})
}

func TestHandle(t *testing.T) {
	rep := &reporter{}
	f, err := New(Settings{
		Allow:          []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"},
		Deny:           []string{"10.9.0.0/16", "2001:db8:bad::/48"},
		TrustedProxies: []string{"127.0.0.1"},
	}, "api", rep)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		peer, xff string
		status    int
		reason    string
	}{
		{"10.1.2.3", "", 0, ""},
		{"10.9.1.1", "", 403, "deny"}, // deny wins inside an allowed range
		{"192.0.2.1", "", 0, ""},
		{"192.0.2.2", "", 403, "not_allowed"},
		{"::ffff:10.1.2.3", "", 0, ""}, // mapped peer
		{"2001:db8:1::1", "", 0, ""},
		{"2001:db8:bad::1", "", 403, "deny"},
		{"2001:db9::1", "", 403, "not_allowed"},
		{"127.0.0.1", "10.1.1.1", 0, ""}, // trusted proxy: client from the header
		{"127.0.0.1", "203.0.113.5", 403, "not_allowed"},
		{"10.1.2.3", "10.9.9.9", 0, ""},                  // untrusted peer: header ignored
		{"127.0.0.1", "10.1.1.1, 10.9.0.1", 403, "deny"}, // right-most untrusted hop
	}
	for _, tt := range tests {
		rep.got = nil
		r := &request{peer: netip.MustParseAddr(tt.peer)}
		if tt.xff != "" {
			r.xff = []byte(tt.xff)
		}
		reply := f.Handle(r)
		switch {
		case tt.status == 0 && reply != nil:
			t.Errorf("%s (xff %q): refused with %d", tt.peer, tt.xff, reply.Status)
		case tt.status != 0 && (reply == nil || reply.Status != tt.status):
			t.Errorf("%s (xff %q): reply %+v, want %d", tt.peer, tt.xff, reply, tt.status)
		case tt.status != 0 && (len(rep.got) != 1 || rep.got[0].reason != tt.reason):
			t.Errorf("%s (xff %q): reported %v, want reason %q", tt.peer, tt.xff, rep.got, tt.reason)
		case tt.status != 0 && string(reply.Body) != "{\"error\":\"forbidden\"}\n":
			t.Errorf("body %q", reply.Body)
		}
	}
}

func TestDenyOnly(t *testing.T) {
	f, err := New(Settings{Deny: []string{"0.0.0.0/0"}}, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Allowed(netip.MustParseAddr("::1")) || f.Allowed(netip.MustParseAddr("255.255.255.255")) || f.Allowed(netip.MustParseAddr("0.0.0.0")) {
		t.Error("deny 0.0.0.0/0 must refuse every IPv4 address and no IPv6 address")
	}
	f, _ = New(Settings{Deny: []string{"::/0"}}, "r", nil)
	if f.Allowed(netip.MustParseAddr("ffff::1")) || !f.Allowed(netip.MustParseAddr("1.2.3.4")) {
		t.Error("deny ::/0 must refuse every IPv6 address and no IPv4 address")
	}
}

// TestRangesMatchPrefixes compares the merged ranges with a plain scan
// of the prefixes, on random prefixes and addresses near their edges.
func TestRangesMatchPrefixes(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var list []string
		var prefixes []netip.Prefix
		for range 1 + rnd.IntN(20) {
			var p netip.Prefix
			if rnd.IntN(2) == 0 {
				a := netip.AddrFrom4([4]byte{byte(rnd.IntN(4)), byte(rnd.IntN(256)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
				p = netip.PrefixFrom(a, 4+rnd.IntN(29)).Masked()
			} else {
				var b [16]byte
				b[0], b[7], b[8], b[15] = 0x20, byte(rnd.IntN(4)), byte(rnd.IntN(256)), byte(rnd.IntN(256))
				p = netip.PrefixFrom(netip.AddrFrom16(b), 50+rnd.IntN(79)).Masked()
			}
			prefixes = append(prefixes, p)
			list = append(list, p.String())
		}
		rs, err := parseRanges(list)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range prefixes {
			for _, a := range []netip.Addr{p.Addr(), p.Addr().Prev(), lastOf(p), lastOf(p).Next()} {
				if !a.IsValid() {
					continue
				}
				want := false
				for _, q := range prefixes {
					want = want || q.Contains(a)
				}
				if got := rs.contains(a); got != want {
					t.Fatalf("prefixes %v: contains(%s) = %v, want %v", list, a, got, want)
				}
			}
		}
	}
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestHandleAllocatesNothing(t *testing.T) {
	f, err := New(Settings{Allow: []string{"10.0.0.0/8", "2001:db8::/32"}, Deny: []string{"10.9.0.0/16"}, TrustedProxies: []string{"127.0.0.1"}}, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &request{peer: netip.MustParseAddr("127.0.0.1"), xff: []byte("198.51.100.7, 10.1.1.1")}
	if n := testing.AllocsPerRun(200, func() { f.Handle(r) }); n != 0 {
		t.Errorf("Handle allocates %v times per request", n)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		s       Settings
		enabled bool
		want    []string // "field: message fragment"
	}{
		{Settings{Allow: []string{"10.0.0.0/8"}}, true, nil},
		{Settings{Allow: []string{"10.0.0.0/33"}}, true, []string{`allow[0]: invalid address "10.0.0.0/33"`}},
		{Settings{Deny: []string{"1.2.3.4", "nope"}}, true, []string{`deny[1]: invalid address "nope"`}},
		{Settings{Deny: []string{"::/0"}, TrustedProxies: []string{"x"}}, true, []string{`trusted_proxies[0]: invalid address "x"`}},
		{Settings{}, true, []string{": allow or deny is required"}},
		{Settings{}, false, nil},
	}
	for _, tt := range tests {
		var got []string
		c := config.NewSettingsCheck(tt.enabled, true, nil, func(field, msg string) { got = append(got, field+": "+msg) })
		tt.s.Validate(c)
		if len(got) != len(tt.want) {
			t.Errorf("%+v: reported %q, want %q", tt.s, got, tt.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tt.want[i]) {
				t.Errorf("%+v: reported %q, want %q", tt.s, got[i], tt.want[i])
			}
		}
	}
}

func BenchmarkHandle(b *testing.B) {
	var allow []string
	for i := range 1000 {
		allow = append(allow, netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}).String()+"/24")
	}
	f, err := New(Settings{Allow: allow}, "r", nil)
	if err != nil {
		b.Fatal(err)
	}
	r := &request{peer: netip.MustParseAddr("10.3.200.9")}
	b.ReportAllocs()
	for b.Loop() {
		f.Handle(r)
	}
}
