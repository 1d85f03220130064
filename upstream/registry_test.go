package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// noLeaks checks, after the test and its cleanups, that it left no
// goroutine behind.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// snapshot builds one pool per scope from the registry, as a reload does.
func snapshot(t *testing.T, r *Registry, opt PoolOptions, scope string, urls ...string) *Pool {
	t.Helper()
	var bs []*Backend
	for _, u := range urls {
		b, err := r.Backend(scope, u, 1)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	return pool(t, bs, opt)
}

func TestRegistryBackend(t *testing.T) {
	r := NewRegistry(nil)
	a1, err := r.Backend("route-a", "http://10.0.0.1:80", 1)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := r.Backend("route-a", "http://10.0.0.1:80", 5)
	other, _ := r.Backend("route-b", "http://10.0.0.1:80", 1)
	if a1 == a2 || a2.Weight != 5 || a2.Scope() != "route-a" || a2.Addr != "10.0.0.1:80" {
		t.Fatalf("a2 = %+v", a2)
	}
	a1.Acquire()
	if a2.Active() != 1 || other.Active() != 0 {
		t.Errorf("active: same identity %d, other scope %d; want 1, 0", a2.Active(), other.Active())
	}
	a2.Release()
	if _, err := r.Backend("x", "ftp://a", 1); err == nil {
		t.Error("bad URL accepted")
	}

	// Synced without it: forgotten.
	r.Sync(snapshot(t, r, PoolOptions{}, "route-b", "http://10.0.0.1:80"))
	a1.Acquire()
	a3, _ := r.Backend("route-a", "http://10.0.0.1:80", 1)
	if a3.Active() != 0 {
		t.Errorf("forgotten identity kept state: active %d", a3.Active())
	}
}

// TestRegistryReload follows one backend through reloads that keep,
// change and drop its health checks, and finally drop it.
func TestRegistryReload(t *testing.T) {
	noLeaks(t)
	s := newHealthServer(t)
	tr := newTransitions()
	r := NewRegistry(tr.onChange)
	defer r.Close()
	url := s.URL
	health := healthOpts(HTTPProber{Path: "/health"})

	p1 := snapshot(t, r, PoolOptions{Health: &health}, "api", url, "http://127.0.0.1:1")
	r.Sync(p1)
	b1 := p1.Backends()[0]
	loop := r.checks[b1.st]
	if loop == nil || len(r.checks) != 2 {
		t.Fatalf("%d checkers, want 2", len(r.checks))
	}
	// The second backend has a closed port: it goes down.
	if e := tr.next(t, time.Second); e.up || e.b != p1.Backends()[1] {
		t.Fatalf("transition %+v", e)
	}
	s.status.Store(500)
	if e := tr.next(t, time.Second); e.up || e.b != b1 {
		t.Fatalf("transition %+v", e)
	}

	// Same settings, new prober value: the checker is kept, the new
	// snapshot's backend sees the verdict at once, and later transitions
	// report it.
	health2 := health
	health2.Prober = HTTPProber{Path: "/health", Client: &http.Client{}}
	p2 := snapshot(t, r, PoolOptions{Health: &health2}, "api", url, "http://127.0.0.1:1")
	r.Sync(p2)
	b2 := p2.Backends()[0]
	if r.checks[b2.st] != loop {
		t.Fatal("checker replaced although its settings did not change")
	}
	if b2.Up() || p2.Pick(0) != nil {
		t.Fatal("the new snapshot does not see the down verdict")
	}
	s.status.Store(200)
	if e := tr.next(t, time.Second); !e.up || e.b != b2 {
		t.Fatalf("transition %+v, want up for the new backend value", e)
	}
	if !b1.Up() {
		t.Error("the old snapshot's backend does not share the verdict")
	}

	// Changed settings: a new checker, the verdict carries over (no
	// transition).
	s.status.Store(500)
	if e := tr.next(t, time.Second); e.up {
		t.Fatal("not down")
	}
	health3 := health
	health3.UnhealthyThreshold = 3
	p3 := snapshot(t, r, PoolOptions{Health: &health3}, "api", url, "http://127.0.0.1:1")
	r.Sync(p3)
	b3 := p3.Backends()[0]
	if l := r.checks[b3.st]; l == nil || l == loop {
		t.Fatal("checker not replaced")
	}
	if b3.Up() {
		t.Error("verdict lost when the checker was replaced")
	}
	time.Sleep(3 * testInterval)
	if n := tr.count(); n != 4 {
		t.Errorf("%d transitions, want 4 (no call for the replacement)", n)
	}

	// Health checks removed: the backends are up again.
	p4 := snapshot(t, r, PoolOptions{}, "api", url, "http://127.0.0.1:1")
	r.Sync(p4)
	for range 2 {
		if e := tr.next(t, time.Second); !e.up || e.reason != "health checks disabled" {
			t.Errorf("transition %+v", e)
		}
	}
	if len(r.checks) != 0 || !p4.Backends()[0].Up() || !p4.Backends()[1].Up() {
		t.Errorf("%d checkers left", len(r.checks))
	}

	// Back on, then the backend is dropped: its checker stops.
	p5 := snapshot(t, r, PoolOptions{Health: &health}, "api", url, "http://127.0.0.1:1")
	r.Sync(p5)
	p6 := snapshot(t, r, PoolOptions{Health: &health}, "api", "http://127.0.0.1:1")
	r.Sync(p6)
	if len(r.checks) != 1 || len(r.states) != 1 {
		t.Errorf("%d checkers, %d states; want 1, 1", len(r.checks), len(r.states))
	}
}

func TestRegistryKeepsEjection(t *testing.T) {
	r := NewRegistry(nil)
	opt := PoolOptions{Outlier: OutlierOptions{Consecutive: 1, BaseEjection: time.Minute}}
	p1 := snapshot(t, r, opt, "api", "http://10.0.0.1:80", "http://10.0.0.2:80")
	r.Sync(p1)
	if d := p1.Backends()[0].ReportFailure("reset", time.Now()); d == 0 {
		t.Fatal("not ejected")
	}
	p2 := snapshot(t, r, opt, "api", "http://10.0.0.1:80", "http://10.0.0.2:80", "http://10.0.0.3:80")
	r.Sync(p2)
	if p2.Backends()[0].Available() {
		t.Error("ejection lost on reload")
	}
	for range 10 {
		if p2.Pick(0) == p2.Backends()[0] {
			t.Fatal("picked the ejected backend")
		}
	}
}

// TestRegistryCloseAndSync: Close stops checkers (even mid-probe); a
// later Sync starts none.
func TestRegistryClose(t *testing.T) {
	noLeaks(t)
	var probes atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		<-r.Context().Done()
	}))
	defer s.Close()
	r := NewRegistry(nil)
	h := HealthOptions{Prober: HTTPProber{Path: "/"}, Interval: time.Hour, Timeout: time.Hour}
	p := snapshot(t, r, PoolOptions{Health: &h}, "x", s.URL)
	r.Sync(p)
	for probes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	r.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s", d)
	}
	r.Sync(snapshot(t, r, PoolOptions{Health: &h}, "x", s.URL))
	if len(r.checks) != 0 {
		t.Error("Sync after Close started a checker")
	}
}

func TestHealthKey(t *testing.T) {
	h := HealthOptions{Prober: HTTPProber{Path: "/a", ExpectStatus: []string{"200"}}, Interval: time.Second}
	same := h
	same.Prober = HTTPProber{Path: "/a", ExpectStatus: []string{"200"}, Client: &http.Client{}}
	other := h
	other.Prober = HTTPProber{Path: "/b", ExpectStatus: []string{"200"}}
	if keyOf(h) != keyOf(same) || keyOf(h) == keyOf(other) {
		t.Error("HTTPProber keys")
	}
	if keyOf(HealthOptions{Prober: TCPProber{}}) == keyOf(HealthOptions{Prober: TCPProber{}, Timeout: 1}) {
		t.Error("settings not in the key")
	}
	// Comparable probers compare by value, others never match.
	if keyOf(HealthOptions{Prober: valueProber{1}}) != keyOf(HealthOptions{Prober: valueProber{1}}) {
		t.Error("comparable prober")
	}
	if keyOf(HealthOptions{Prober: sliceProber{}}) == keyOf(HealthOptions{Prober: sliceProber{}}) {
		t.Error("uncomparable prober matched")
	}
}

type valueProber struct{ n int }

func (valueProber) Probe(context.Context, *Backend) error { return nil }

type sliceProber []int

func (sliceProber) Probe(context.Context, *Backend) error { return nil }
