package upstream

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testInterval = 50 * time.Millisecond

// healthServer is a backend whose health endpoint answers status and
// counts probes.
type healthServer struct {
	*httptest.Server
	status atomic.Int32
	probes atomic.Int32
	delay  atomic.Int64 // nanoseconds to wait before answering
}

func newHealthServer(t *testing.T) *healthServer {
	t.Helper()
	s := &healthServer{}
	s.status.Store(200)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.probes.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		if r.URL.Path != "/health" || r.Header.Get("User-Agent") != "RustyGate-health-check" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		status := int(s.status.Load())
		if status/100 == 3 {
			// Following the redirect would fail.
			w.Header().Set("Location", "http://127.0.0.1:1/")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *healthServer) backend(t *testing.T) *Backend {
	t.Helper()
	b, err := NewBackend(s.URL+"/base", 1)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// transitions records OnChange calls.
type transitions struct {
	mu     sync.Mutex
	events []transition
	ch     chan transition
}

type transition struct {
	b      *Backend
	up     bool
	reason string
	at     time.Time
}

func newTransitions() *transitions { return &transitions{ch: make(chan transition, 100)} }

func (tr *transitions) onChange(b *Backend, up bool, reason string) {
	e := transition{b, up, reason, time.Now()}
	tr.mu.Lock()
	tr.events = append(tr.events, e)
	tr.mu.Unlock()
	tr.ch <- e
}

func (tr *transitions) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.events)
}

// next waits for the next transition.
func (tr *transitions) next(t *testing.T, within time.Duration) transition {
	t.Helper()
	select {
	case e := <-tr.ch:
		return e
	case <-time.After(within):
		t.Fatalf("no health transition within %s", within)
		return transition{}
	}
}

func healthOpts(p Prober) HealthOptions {
	return HealthOptions{Prober: p, Interval: testInterval, Timeout: 40 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
}

func TestHealthCheckHTTP(t *testing.T) {
	s := newHealthServer(t)
	b := s.backend(t)
	tr := newTransitions()
	h, err := NewHealthChecker([]*Backend{b}, healthOpts(HTTPProber{Path: "/health"}), tr.onChange)
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	defer h.Stop()

	// Healthy: no transition, and the backend started up.
	time.Sleep(3 * testInterval)
	if !b.Up() || tr.count() != 0 || s.probes.Load() < 2 {
		t.Fatalf("healthy backend: up %v, %d transitions, %d probes", b.Up(), tr.count(), s.probes.Load())
	}

	// 500s: down within two intervals (two failed probes).
	s.status.Store(500)
	start, probes := time.Now(), s.probes.Load()
	e := tr.next(t, 2*testInterval+time.Second)
	elapsed, took := time.Since(start), s.probes.Load()-probes
	t.Logf("down after %s, %d probes", elapsed, took)
	if e.up || e.b != b || b.Up() || b.Available() {
		t.Fatalf("transition %+v, Up %v", e, b.Up())
	}
	if took > 2 {
		t.Errorf("marked down after %d probes, want 2", took)
	}
	if elapsed > 2*testInterval+testInterval/2 {
		t.Errorf("marked down after %s, want within 2 intervals (%s)", elapsed, 2*testInterval)
	}
	if want := "2 health checks in a row failed, last: unexpected status 500"; e.reason != want {
		t.Errorf("reason = %q, want %q", e.reason, want)
	}

	// Recovery: up again after two good probes.
	s.status.Store(204)
	e = tr.next(t, 2*testInterval+time.Second)
	if !e.up || !b.Up() || !b.Available() || e.reason != "2 health checks in a row passed" {
		t.Fatalf("transition %+v, Up %v", e, b.Up())
	}
	// Stable: no further calls.
	time.Sleep(3 * testInterval)
	if n := tr.count(); n != 2 {
		t.Errorf("%d transitions, want exactly 2", n)
	}
}

func TestHealthCheckClosedBackend(t *testing.T) {
	s := newHealthServer(t)
	addr := s.Listener.Addr().String()
	b := s.backend(t)
	tr := newTransitions()
	h, err := NewHealthChecker([]*Backend{b}, healthOpts(HTTPProber{Path: "/health"}), tr.onChange)
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	defer h.Stop()
	time.Sleep(testInterval)

	s.Close()
	start := time.Now()
	e := tr.next(t, 2*testInterval+time.Second)
	t.Logf("down after %s: %s", time.Since(start), e.reason)
	if e.up || b.Up() {
		t.Fatal("closed backend not marked down")
	}
	if elapsed := time.Since(start); elapsed > 2*testInterval+testInterval/2 {
		t.Errorf("marked down after %s, want within 2 intervals", elapsed)
	}

	// The backend comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	if e := tr.next(t, 2*testInterval+time.Second); !e.up || !b.Up() {
		t.Fatal("recovered backend not marked up")
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	s := newHealthServer(t)
	s.delay.Store(int64(time.Second))
	b := s.backend(t)
	tr := newTransitions()
	h, err := NewHealthChecker([]*Backend{b}, healthOpts(HTTPProber{Path: "/health"}), tr.onChange)
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	defer h.Stop()
	e := tr.next(t, 3*testInterval+time.Second)
	if e.up || !strings.HasSuffix(e.reason, "last: timed out after 40ms") {
		t.Errorf("transition %+v", e)
	}
}

func TestHealthCheckStopsPromptly(t *testing.T) {
	// A probe in flight is cancelled by Stop, and its failure is not
	// counted.
	s := newHealthServer(t)
	s.delay.Store(int64(time.Hour))
	b := s.backend(t)
	tr := newTransitions()
	opt := healthOpts(HTTPProber{Path: "/health"})
	opt.Interval, opt.Timeout, opt.UnhealthyThreshold = time.Hour, time.Hour, 1
	h, err := NewHealthChecker([]*Backend{b}, opt, tr.onChange)
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	for s.probes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	h.Stop()
	h.Stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Stop took %s", d)
	}
	if tr.count() != 0 || !b.Up() {
		t.Error("a cancelled probe counted as a failure")
	}

	// Stop without Start.
	h, _ = NewHealthChecker([]*Backend{b}, opt, nil)
	h.Stop()
	h.Start()
}

func TestHealthCheckStartsUp(t *testing.T) {
	// Until probes prove otherwise a backend serves: with the first
	// probe hanging, it is up.
	s := newHealthServer(t)
	s.delay.Store(int64(time.Hour))
	b := s.backend(t)
	opt := healthOpts(HTTPProber{Path: "/health"})
	opt.Interval, opt.Timeout = time.Hour, time.Hour
	h, _ := NewHealthChecker([]*Backend{b}, opt, nil)
	h.Start()
	defer h.Stop()
	for s.probes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if !b.Up() || !b.Available() {
		t.Error("backend not up while its first probe runs")
	}
}

func TestHTTPProberExpectStatus(t *testing.T) {
	s := newHealthServer(t)
	b := s.backend(t)
	for _, tt := range []struct {
		status int
		expect []string
		ok     bool
	}{
		{200, nil, true},
		{302, nil, true}, // not followed
		{404, nil, false},
		{500, nil, false},
		{404, []string{"404"}, true},
		{404, []string{"4xx"}, true},
		{404, []string{"2xx", "403"}, false},
		{204, []string{"200"}, false},
		{204, []string{"200", "204"}, true},
		{503, []string{"5xx"}, true},
	} {
		s.status.Store(int32(tt.status))
		err := HTTPProber{Path: "/health", ExpectStatus: tt.expect}.Probe(t.Context(), b)
		if (err == nil) != tt.ok {
			t.Errorf("status %d, expect %v: error %v, want ok %v", tt.status, tt.expect, err, tt.ok)
		}
	}
	// The path is absolute on the backend, not below its base path.
	s.status.Store(200)
	if err := (HTTPProber{Path: "/base/health"}).Probe(t.Context(), b); err == nil {
		t.Error("probe of /base/health succeeded; the server only answers /health")
	}
}

func TestTCPProber(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	b, _ := NewBackend("http://"+ln.Addr().String(), 1)
	if err := (TCPProber{}).Probe(t.Context(), b); err != nil {
		t.Errorf("open port: %v", err)
	}
	ln.Close()
	wg.Wait()
	err = TCPProber{}.Probe(t.Context(), b)
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("closed port: error %v, want a dial error", err)
	}

	// Through a checker.
	tr := newTransitions()
	opt := healthOpts(TCPProber{})
	opt.UnhealthyThreshold = 1
	h, _ := NewHealthChecker([]*Backend{b}, opt, tr.onChange)
	h.Start()
	defer h.Stop()
	if e := tr.next(t, testInterval+time.Second); e.up {
		t.Error("closed port marked up")
	}
}

func TestStatusMatches(t *testing.T) {
	for _, tt := range []struct {
		code   int
		expect []string
		want   bool
	}{
		{200, nil, true}, {399, nil, true}, {199, nil, false}, {400, nil, false},
		{201, []string{"2xx"}, true}, {301, []string{"2xx"}, false},
		{418, []string{"418"}, true}, {418, []string{"x18"}, false}, {100, []string{"1xx"}, true},
	} {
		if got := StatusMatches(tt.code, tt.expect); got != tt.want {
			t.Errorf("StatusMatches(%d, %v) = %v", tt.code, tt.expect, got)
		}
	}
}

func TestHealthOptions(t *testing.T) {
	h, err := HealthOptions{Prober: TCPProber{}}.normalise()
	if err != nil {
		t.Fatal(err)
	}
	if h.Interval != 5*time.Second || h.Timeout != 2*time.Second || h.HealthyThreshold != 2 || h.UnhealthyThreshold != 2 {
		t.Errorf("defaults = %+v", h)
	}
	if h, _ := (HealthOptions{Prober: TCPProber{}, Interval: time.Second}).normalise(); h.Timeout != time.Second {
		t.Errorf("timeout %s with a 1s interval", h.Timeout)
	}
	if _, err := NewHealthChecker(nil, HealthOptions{}, nil); err == nil {
		t.Error("no prober accepted")
	}
}

func TestJitter(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 10000 {
		d := jitter(time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 900*time.Millisecond || hi > 1100*time.Millisecond || hi-lo < 150*time.Millisecond {
		t.Errorf("jitter range [%s, %s], want within and spread over 1s ± 10%%", lo, hi)
	}
}
