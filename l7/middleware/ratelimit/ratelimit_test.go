package ratelimit

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// request is the test double of middleware.Request.
type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	peer    netip.Addr
	headers [][2]string // received headers
	values  map[string]any
	resp    [][2]string // AddResponseHeader
	hdrBuf  [][]byte
}

func (r *request) Method() []byte { return []byte("GET") }
func (r *request) Path() []byte   { return []byte("/") }
func (r *request) Host() []byte   { return []byte("example.com") }
func (r *request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

func (r *request) Header(name string) []byte {
	for i, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			if r.hdrBuf == nil {
				r.hdrBuf = make([][]byte, len(r.headers))
			}
			if r.hdrBuf[i] == nil {
				r.hdrBuf[i] = []byte(h[1])
			}
			return r.hdrBuf[i]
		}
	}
	return nil
}
func (r *request) PeerIP() netip.Addr           { return r.peer }
func (r *request) SetHeader(name, value string) {}
func (r *request) DelHeader(name string)        {}
func (r *request) AddResponseHeader(name, value string) {
	r.resp = append(r.resp, [2]string{name, value})
}
func (r *request) Route() string        { return "api" }
func (r *request) Value(key string) any { return r.values[key] }
func (r *request) SetValue(key string, v any) {
	if r.values == nil {
		r.values = map[string]any{}
	}
	r.values[key] = v
}

func (r *request) respHeader(name string) string {
	for _, h := range r.resp {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// reporter records rejections.
type reporter struct {
	mu   sync.Mutex
	list []string
}

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.mu.Lock()
	r.list = append(r.list, fmt.Sprintf("%s %s %s %s", policy, route, reason, client))
	r.mu.Unlock()
}

func cfg(limit int, window time.Duration, burst int) Settings {
	return Settings{Limit: limit, Window: config.Duration(window), Burst: burst, Key: "ip", MaxKeys: 1000000}
}

func build(t testing.TB, c Settings, clk *clock, rep middleware.Reporter) *Limiter {
	t.Helper()
	l, err := NewWithStore(c, "api", rep, Options{Now: clk.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestHundredPerMinute(t *testing.T) {
	clk := newClock()
	rep := &reporter{}
	l := build(t, cfg(100, time.Minute, 0), clk, rep)
	a := ip("203.0.113.7")
	for i := 1; i <= 100; i++ {
		r := &request{peer: a}
		if reply := l.Handle(r); reply != nil {
			t.Fatalf("request %d: got %d, want allowed", i, reply.Status)
		}
		if got, want := r.respHeader("RateLimit-Remaining"), fmt.Sprint(100-i); got != want {
			t.Fatalf("request %d: RateLimit-Remaining = %q, want %q", i, got, want)
		}
		if got := r.respHeader("RateLimit-Limit"); got != "100" {
			t.Fatalf("RateLimit-Limit = %q", got)
		}
		clk.Advance(time.Millisecond)
	}
	r := &request{peer: a}
	reply := l.Handle(r)
	if reply == nil || reply.Status != 429 {
		t.Fatalf("request 101: got %+v, want 429", reply)
	}
	if got := headerOf(reply.Headers, "Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1 (one request every 600ms)", got)
	}
	if r.respHeader("RateLimit-Remaining") != "0" || r.respHeader("RateLimit-Reset") != "1" || r.respHeader("RateLimit-Limit") != "100" {
		t.Errorf("429 response headers = %v", r.resp)
	}
	if want := []string{"rate_limit api limit 203.0.113.7"}; fmt.Sprint(rep.list) != fmt.Sprint(want) {
		t.Errorf("reports = %v, want %v", rep.list, want)
	}
	if reply := l.Handle(&request{peer: ip("203.0.113.8")}); reply != nil {
		t.Errorf("another client was limited: %+v", reply)
	}
}

func headerOf(hs [][2]string, name string) string {
	for _, h := range hs {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func TestRetryAfterAndRefill(t *testing.T) {
	clk := newClock()
	l := build(t, cfg(1, time.Minute, 0), clk, nil)
	a := "198.51.100.1"
	check := func(wantOK bool, wantRemaining int, wantReset time.Duration) {
		t.Helper()
		ok, rem, reset := l.Allow(a, clk.Now())
		if ok != wantOK || rem != wantRemaining || reset != wantReset {
			t.Errorf("Allow = %v, %d, %s; want %v, %d, %s", ok, rem, reset, wantOK, wantRemaining, wantReset)
		}
	}
	check(true, 0, time.Minute)
	check(false, 0, time.Minute)
	clk.Advance(59500 * time.Millisecond)
	check(false, 0, 500*time.Millisecond)
	r := &request{peer: ip(a)}
	if reply := l.Handle(r); reply == nil || headerOf(reply.Headers, "Retry-After") != "1" {
		t.Errorf("reply = %+v, want 429 with Retry-After 1", reply)
	}
	clk.Advance(500 * time.Millisecond)
	check(true, 0, time.Minute)
}

func TestBurstAndRefill(t *testing.T) {
	clk := newClock()
	// 10 per second (one every 100ms), bursts of 3.
	l := build(t, cfg(10, time.Second, 3), clk, nil)
	k := "client-key"
	for i := range 3 {
		if ok, rem, _ := l.Allow(k, clk.Now()); !ok || rem != 2-i {
			t.Fatalf("burst request %d: ok=%v remaining=%d", i, ok, rem)
		}
	}
	if ok, _, reset := l.Allow(k, clk.Now()); ok || reset != 100*time.Millisecond {
		t.Fatalf("4th request: ok=%v reset=%s, want rejected for 100ms", ok, reset)
	}
	clk.Advance(100 * time.Millisecond)
	if ok, _, _ := l.Allow(k, clk.Now()); !ok {
		t.Fatal("one request not allowed after one interval")
	}
	if ok, _, _ := l.Allow(k, clk.Now()); ok {
		t.Fatal("two requests allowed after one interval")
	}
	// A long pause refills the burst, never more.
	clk.Advance(time.Hour)
	n := 0
	for {
		ok, _, _ := l.Allow(k, clk.Now())
		if !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("after a pause %d requests allowed, want the burst of 3", n)
	}
	// Over 10s at the limit rate, every request passes.
	for i := range 100 {
		clk.Advance(100 * time.Millisecond)
		if ok, _, _ := l.Allow(k, clk.Now()); !ok {
			t.Fatalf("request %d at the limit rate rejected", i)
		}
	}
}

func TestRefillWindow(t *testing.T) {
	clk := newClock()
	l := build(t, cfg(60, time.Minute, 0), clk, nil)
	k := "192.0.2.9"
	for range 60 {
		if ok, _, _ := l.Allow(k, clk.Now()); !ok {
			t.Fatal("rejected within the limit")
		}
	}
	if ok, _, _ := l.Allow(k, clk.Now()); ok {
		t.Fatal("allowed over the limit")
	}
	clk.Advance(30 * time.Second)
	n := 0
	for {
		if ok, _, _ := l.Allow(k, clk.Now()); !ok {
			break
		}
		n++
	}
	if n != 30 {
		t.Errorf("after half a window %d requests allowed, want 30", n)
	}
}

func TestClientIP(t *testing.T) {
	c := cfg(1, time.Minute, 0)
	c.TrustedProxies = []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"}
	l := build(t, c, newClock(), nil)
	tests := []struct {
		peer, xff, want string
	}{
		{"203.0.113.1", "198.51.100.1", "203.0.113.1"},                  // untrusted peer: header ignored
		{"10.1.1.1", "", "10.1.1.1"},                                    // trusted, no header
		{"10.1.1.1", "198.51.100.1", "198.51.100.1"},                    // one hop
		{"10.1.1.1", "6.6.6.6, 198.51.100.1, 10.2.2.2", "198.51.100.1"}, // right-most untrusted
		{"10.1.1.1", "10.3.3.3,10.2.2.2", "10.3.3.3"},                   // all trusted: left-most
		{"10.1.1.1", "198.51.100.1, junk, 10.2.2.2", "10.2.2.2"},        // unparsable: last trusted hop
		{"10.1.1.1", "198.51.100.1:4711", "198.51.100.1"},               // port
		{"10.1.1.1", "[2001:db9::5]:4711", "2001:db9::5"},               // bracketed IPv6 with port
		{"10.1.1.1", "2001:db9::6 , 2001:db8::1", "2001:db9::6"},        // IPv6, trusted IPv6 hop
		{"::ffff:10.1.1.1", "::ffff:198.51.100.2", "198.51.100.2"},      // mapped addresses
		{"192.0.2.1", "198.51.100.3", "198.51.100.3"},                   // single trusted IP
		{"192.0.2.2", "198.51.100.3", "192.0.2.2"},
		{"10.1.1.1", "01.2.3.4", "10.1.1.1"}, // leading zeros are refused
		{"10.1.1.1", "fe80::1%eth0", "10.1.1.1"},
	}
	for _, tt := range tests {
		r := &request{peer: ip(tt.peer)}
		if tt.xff != "" {
			r.headers = [][2]string{{"X-Forwarded-For", tt.xff}}
		}
		if got := l.clientIP(r); got != ip(tt.want) {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	clk := newClock()
	c := cfg(1, time.Minute, 0)
	c.Key = "header:X-Api-Key"
	l := build(t, c, clk, nil)
	peer := ip("203.0.113.1")
	withKey := func(k string) *request {
		return &request{peer: peer, headers: [][2]string{{"x-api-key", k}}}
	}
	if l.Handle(withKey("a")) != nil || l.Handle(withKey("b")) != nil {
		t.Fatal("first request of a key limited")
	}
	if l.Handle(withKey("a")) == nil {
		t.Fatal("second request of key a allowed")
	}
	// No header: the peer address is the key.
	if l.Handle(&request{peer: peer}) != nil {
		t.Fatal("first request without the header limited")
	}
	if l.Handle(&request{peer: peer}) == nil {
		t.Fatal("second request without the header allowed")
	}

	c.Key = "jwt:sub"
	l = build(t, c, clk, nil)
	withSub := func(sub any) *request {
		r := &request{peer: peer}
		r.SetValue("jwt.claims", map[string]any{"sub": sub})
		return r
	}
	if l.Handle(withSub("alice")) != nil || l.Handle(withSub("bob")) != nil || l.Handle(withSub(42.0)) != nil {
		t.Fatal("first request of a subject limited")
	}
	if l.Handle(withSub("alice")) == nil || l.Handle(withSub(42.0)) == nil {
		t.Fatal("second request of a subject allowed")
	}
	if l.Handle(&request{peer: peer}) != nil {
		t.Fatal("request without claims limited (falls back to the peer address)")
	}
	if l.Handle(withSub(nil)) == nil {
		t.Fatal("second request without the claim allowed")
	}
}

func TestStoreKeptAcrossReload(t *testing.T) {
	clk := newClock()
	c := cfg(2, time.Minute, 0)
	l1 := build(t, c, clk, nil)
	l1.Allow("192.0.2.1", clk.Now())
	l1.Allow("192.0.2.1", clk.Now())

	l2, err := NewWithStore(c, "api", nil, Options{Now: clk.Now}, l1.Store())
	if err != nil {
		t.Fatal(err)
	}
	if l2.Store() != l1.Store() {
		t.Fatal("store not kept for the same route and settings")
	}
	if ok, _, _ := l2.Allow("192.0.2.1", clk.Now()); ok {
		t.Error("state lost across the reload")
	}

	for _, tt := range []struct {
		name  string
		route string
		c     Settings
	}{
		{"other route", "other", c},
		{"other limit", "api", cfg(3, time.Minute, 0)},
		{"other burst", "api", cfg(2, time.Minute, 5)},
	} {
		l3, err := NewWithStore(tt.c, tt.route, nil, Options{Now: clk.Now}, l1.Store())
		if err != nil {
			t.Fatal(err)
		}
		if l3.Store() == l1.Store() {
			t.Errorf("%s: store kept", tt.name)
		}
	}
	// burst 0 and burst = limit are the same setting.
	l4, _ := NewWithStore(cfg(2, time.Minute, 2), "api", nil, Options{Now: clk.Now}, l1.Store())
	if l4.Store() != l1.Store() {
		t.Error("burst 0 and burst = limit seen as different settings")
	}
}

func TestOnExceeded(t *testing.T) {
	clk := newClock()
	var got []float64
	var gotIP netip.Addr
	l, err := NewWithStore(cfg(4, time.Minute, 0), "api", nil, Options{
		Now:        clk.Now,
		OnExceeded: func(a netip.Addr, over float64) { gotIP = a; got = append(got, over) },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		l.Handle(&request{peer: ip("::ffff:192.0.2.4")})
	}
	if fmt.Sprint(got) != "[1.25 1.5 1.75 2]" || gotIP != ip("192.0.2.4") {
		t.Errorf("OnExceeded got %v from %s", got, gotIP)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		c    Settings
		want string
	}{
		{cfg(0, time.Minute, 0), "rate_limit: limit must be at least 1 (got 0)"},
		{cfg(1, 0, 0), "rate_limit: window must be greater than 0 (got 0s)"},
		{cfg(1, time.Minute, -1), "rate_limit: burst must be at least 1 (got -1)"},
		{Settings{Limit: 1, Window: config.Duration(time.Second), Key: "ip"}, "rate_limit: max_keys must be at least 1 (got 0)"},
		{func() Settings { c := cfg(1, time.Minute, 0); c.Key = "cookie:x"; return c }(), `rate_limit: invalid key "cookie:x" (want ip, header:NAME or jwt:CLAIM)`},
		{func() Settings {
			c := cfg(1, time.Minute, 0)
			c.TrustedProxies = []string{"10.0.0.0/33"}
			return c
		}(), `rate_limit: invalid trusted proxy "10.0.0.0/33"`},
		{cfg(1, 1<<62, 1000000000), "rate_limit: window " + time.Duration(1<<62).String() + " is too long for a burst of 1000000000"},
	} {
		if _, err := New(tt.c, "api", nil); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.c, err, tt.want)
		}
	}
}

func TestHandleAllocations(t *testing.T) {
	// Remaining counts below 10000 are formatted without allocating.
	l := build(t, cfg(9000, time.Second, 0), newClock(), nil)
	c := cfg(9000, time.Second, 0)
	c.TrustedProxies = []string{"10.0.0.0/8"}
	c.Key = "header:X-Api-Key"
	lh := build(t, c, newClock(), nil)
	for _, tt := range []struct {
		name string
		l    *Limiter
		r    *request
	}{
		{"ip", l, &request{peer: ip("203.0.113.1")}},
		{"forwarded IPv6", lh, &request{peer: ip("10.0.0.1"), headers: [][2]string{{"X-Forwarded-For", "2001:db8::1"}}}},
		{"header", lh, &request{peer: ip("10.0.0.1"), headers: [][2]string{{"X-Api-Key", "k1"}}}},
	} {
		tt.r.resp = make([][2]string, 0, 8)
		tt.l.Handle(tt.r)
		allocs := testing.AllocsPerRun(1000, func() {
			tt.r.resp = tt.r.resp[:0]
			if tt.l.Handle(tt.r) != nil {
				t.Fatal("limited")
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per allowed request, want 0", tt.name, allocs)
		}
	}
}

func TestConcurrent(t *testing.T) {
	clk := newClock()
	l := build(t, cfg(1000, time.Hour, 0), clk, nil)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r := &request{peer: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)})}
				if l.Handle(r) == nil {
					allowed.Add(1)
				}
				if i%100 == g {
					clk.Advance(time.Nanosecond)
				}
			}
		}()
	}
	wg.Wait()
	// 4 clients, 1000 each; 4000 requests in all, every one allowed.
	if allowed.Load() != 4000 {
		t.Errorf("allowed %d, want 4000", allowed.Load())
	}
	for i := range 4 {
		if ok, _, _ := l.Allow(fmt.Sprintf("192.0.2.%d", i), clk.Now()); ok {
			t.Errorf("client %d not limited after 1000 requests", i)
		}
	}
}

// TestMaxKeys inserts twice max_keys distinct addresses and checks that
// the store never holds more than max_keys, then reports the memory per
// key.
func TestMaxKeys(t *testing.T) {
	maxKeys, inserts := 1000000, 2000000
	if raceEnabled || testing.Short() {
		maxKeys, inserts = 100000, 200000
	}
	clk := newClock()
	c := cfg(10, time.Minute, 0)
	c.MaxKeys = maxKeys
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := build(t, c, clk, nil)
	s := l.Store()
	for i := range inserts {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		s.take(ipKey(a), clk.Now())
		if i%100000 == 99999 {
			if n := s.Len(); n > maxKeys {
				t.Fatalf("after %d inserts the store holds %d keys, more than %d", i+1, n, maxKeys)
			}
		}
	}
	n := s.Len()
	if n > maxKeys || n < maxKeys*9/10 {
		t.Fatalf("store holds %d keys, want at most %d and near it", n, maxKeys)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	t.Logf("%d keys held after %d inserts: %.1f bytes per key", n, inserts, perKey)
	if perKey > 64 {
		t.Errorf("%.1f bytes per key, want at most 64", perKey)
	}
	runtime.KeepAlive(l)

	// Every key is live (none has expired within the minute); an hour
	// later, inserting new keys clears expired ones as it goes.
	clk.Advance(time.Hour)
	for i := range 1000 {
		s.take(ipKey(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})), clk.Now())
	}
	if m := s.Len(); m > n {
		t.Errorf("store grew to %d keys", m)
	}
}

func BenchmarkRateLimitParallel(b *testing.B) {
	// 9000/s per key is above what 10k keys get at full speed here.
	c := cfg(9000, time.Second, 0)
	l, err := NewWithStore(c, "api", nil, Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	const keys = 10000
	addrs := make([]netip.Addr, keys)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		r := &request{resp: make([][2]string, 0, 4)}
		for pb.Next() {
			r.peer = addrs[i%keys]
			r.resp = r.resp[:0]
			if l.Handle(r) != nil {
				b.Fatal("limited")
			}
			i++
		}
	})
}

func BenchmarkAllow(b *testing.B) {
	l, _ := NewWithStore(cfg(1000000000, time.Second, 0), "api", nil, Options{}, nil)
	now := time.Now()
	k := ipKey(ip("192.0.2.1"))
	b.ReportAllocs()
	for b.Loop() {
		l.store.take(k, now)
	}
}

// TestStoreTable drives the open-addressing tables through inserts,
// evictions, expiries and growth, checking their invariants throughout.
func TestStoreTable(t *testing.T) {
	clk := newClock()
	c := cfg(3, time.Second, 0)
	c.MaxKeys = 200
	l := build(t, c, clk, nil)
	s := l.Store()
	check := func(step int) {
		t.Helper()
		total := 0
		for si := range s.shards {
			sh := &s.shards[si]
			used := 0
			for i, e := range sh.slots {
				if e.tat == 0 {
					continue
				}
				used++
				if j, ok := sh.find(e.key, s.hash(e.key)); !ok || j != i {
					t.Fatalf("step %d: shard %d slot %d: key not found where it is (found %v at %d)", step, si, i, ok, j)
				}
			}
			if used != sh.count || used > s.perShard || (used+1)*maxLoadDen > len(sh.slots)*maxLoadNum+maxLoadDen {
				t.Fatalf("step %d: shard %d: %d used, count %d, cap %d, %d slots", step, si, used, sh.count, s.perShard, len(sh.slots))
			}
			total += used
		}
		if total > c.MaxKeys {
			t.Fatalf("step %d: %d keys, cap %d", step, total, c.MaxKeys)
		}
	}
	seed := uint64(1)
	rnd := func(n int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	for step := range 20000 {
		k := storeKey{uint64(rnd(1000)), 7}
		r := s.take(k, clk.Now())
		// Right after a request, the same key is known and loses a token.
		r2 := s.take(k, clk.Now())
		if r.ok && r2.ok && r2.remaining != r.remaining-1 {
			t.Fatalf("step %d: remaining %d then %d", step, r.remaining, r2.remaining)
		}
		if rnd(10) == 0 {
			clk.Advance(time.Duration(rnd(2000)) * time.Millisecond)
		}
		if step%500 == 0 {
			check(step)
		}
	}
	check(-1)
}

func (r *request) DelResponseHeader(name string) {}
