package loader

import (
	"net/netip"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
)

func TestPolicy(t *testing.T) {
	cfg := config.Datapath{KernelRateLimit: config.KernelRateLimit{
		Rate: 4, Burst: 10, Ports: []string{"auto", "9000", "8080"}, MaxSources: 100,
		Allow: []string{"10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"},
		Deny:  []string{"192.0.2.7", "::ffff:198.51.100.0/120"},
	}, Bans: config.Bans{Duration: config.Duration(time.Hour)}}
	p, err := newPolicy(cfg, []int{8080, 8443})
	if err != nil {
		t.Fatal(err)
	}
	if p.interval != 250*time.Millisecond || p.tolerance != 2500*time.Millisecond || p.maxSources != 100 || p.banTTL != time.Hour {
		t.Errorf("policy = %+v", p)
	}
	if want := map[uint16]bool{8080: true, 8443: true, 9000: true}; !reflect.DeepEqual(p.ports, want) {
		t.Errorf("ports = %v", p.ports)
	}
	wantDeny := []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("198.51.100.0/24")}
	if got := p.deny.list(); !reflect.DeepEqual(got, wantDeny) {
		t.Errorf("deny = %v", got)
	}

	// Defaults for a config built in code: burst = rate, no ports but the
	// listeners, no rate limit without a rate.
	p, err = newPolicy(config.Datapath{KernelRateLimit: config.KernelRateLimit{Rate: 2}}, []int{80})
	if err != nil {
		t.Fatal(err)
	}
	if p.interval != 500*time.Millisecond || p.tolerance != time.Second || !p.guards(80) || p.guards(81) || p.maxSources != 65536 || p.banTTL != 10*time.Minute {
		t.Errorf("policy = %+v", p)
	}
	p, _ = newPolicy(config.Datapath{}, nil)
	if p.interval != 0 || len(p.ports) != 0 {
		t.Errorf("policy = %+v", p)
	}

	bad := []struct {
		cfg   config.KernelRateLimit
		ports []int
		want  string
	}{
		{config.KernelRateLimit{Rate: -1}, nil, "datapath.kernel_rate_limit.rate: must not be negative (got -1)"},
		{config.KernelRateLimit{Ports: []string{"http"}}, nil, `datapath.kernel_rate_limit.ports[0]: invalid port "http" (want "auto" or 1-65535)`},
		{config.KernelRateLimit{Ports: []string{"auto"}}, []int{0}, "listening port 0: want 1-65535"},
		{config.KernelRateLimit{Deny: []string{"10.0.0.0/8", "nope"}}, nil, `datapath.kernel_rate_limit.deny[1]: invalid CIDR "nope"`},
		{config.KernelRateLimit{Allow: []string{"10.0.0.0/33"}}, nil, `datapath.kernel_rate_limit.allow[0]: invalid CIDR "10.0.0.0/33"`},
	}
	for _, tt := range bad {
		if _, err := newPolicy(config.Datapath{KernelRateLimit: tt.cfg}, tt.ports); err == nil || err.Error() != tt.want {
			t.Errorf("newPolicy(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	many := make([]string, maxPorts+1)
	for i := range many {
		many[i] = strconv.Itoa(1000 + i)
	}
	if _, err := newPolicy(config.Datapath{KernelRateLimit: config.KernelRateLimit{Ports: many}}, nil); err == nil {
		t.Error("newPolicy accepted more ports than the kernel map holds")
	}
}

func TestPrefixSet(t *testing.T) {
	s, err := newPrefixSet("x", []string{"10.0.0.0/8", "10.1.2.3", "2001:db8::/32", "::/0", "192.0.2.0/24", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.200.0.1", true},
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"192.0.2.255", true},
		{"192.0.3.0", false},
		{"2001:db8::1", true},
		// ::/0 covers every IPv6 address, and no IPv4 one.
		{"fe80::1", true},
		{"8.8.8.8", false},
	}
	for _, tt := range tests {
		if got := s.contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if len(s.prefixes) != 5 {
		t.Errorf("%d prefixes, want 5 (one duplicate)", len(s.prefixes))
	}
}

// TestSourceLimiter checks the token bucket arithmetic (the same as
// bpf/limiter.c) and the LRU bound.
func TestSourceLimiter(t *testing.T) {
	const interval, tolerance = time.Second, 3 * time.Second // rate 1/s, burst 3
	l := newSourceLimiter(2)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	sec := int64(time.Second)
	steps := []struct {
		at   int64
		src  netip.Addr
		want bool
	}{
		{0, a, true}, {0, a, true}, {0, a, true}, {0, a, false}, // the burst, then nothing
		{sec / 2, a, false},             // half a token
		{sec, a, true}, {sec, a, false}, // one token a second
		{10 * sec, a, true}, {10 * sec, a, true}, // the bucket refills
		{10 * sec, a, true}, {10 * sec, a, false}, // but holds at most the burst
		{10 * sec, b, true}, // every source has its own
		{10 * sec, c, true}, // a third evicts a, the least recent
		{10 * sec, a, true}, {10 * sec, a, true}, {10 * sec, a, true}, {10 * sec, a, false},
	}
	for i, s := range steps {
		if got := l.allow(s.src, s.at, interval, tolerance); got != s.want {
			t.Errorf("step %d: allow(%s at %v) = %v, want %v", i, s.src, time.Duration(s.at), got, s.want)
		}
	}
	if l.len() != 2 {
		t.Errorf("%d sources tracked, want 2", l.len())
	}
	l.setMax(1)
	if l.len() != 1 {
		t.Errorf("%d sources tracked after setMax(1)", l.len())
	}
}

func TestBanTable(t *testing.T) {
	bt := newBanTable()
	now := time.Now()
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	bt.add(b, now.Add(time.Minute))
	bt.add(a, now.Add(time.Second))
	if !bt.banned(a, now) || !bt.banned(b, now) || bt.banned(netip.MustParseAddr("10.0.0.2"), now) {
		t.Error("banned() wrong")
	}
	if got := bt.list(now); len(got) != 2 || got[0].IP != a || got[1].IP != b {
		t.Errorf("list = %v", got)
	}
	later := now.Add(time.Second)
	if bt.banned(a, later) {
		t.Error("a ban holds past its expiry")
	}
	if got := bt.list(later); len(got) != 1 || got[0].IP != b {
		t.Errorf("list after expiry = %v", got)
	}
	bt.sweep(later)
	if len(bt.bans) != 1 {
		t.Errorf("sweep left %d bans", len(bt.bans))
	}
	bt.remove(b)
	if bt.banned(b, now) {
		t.Error("remove did not lift the ban")
	}
}
