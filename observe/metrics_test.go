package observe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsRequests(t *testing.T) {
	m := NewMetrics()
	r := m.Route("api")
	get := []byte("GET")

	r.Start()
	r.Start()
	if v := testutil.ToFloat64(m.inFlight.WithLabelValues("api")); v != 2 {
		t.Errorf("in flight = %v, want 2", v)
	}
	r.Done(get, 200, 3*time.Millisecond)
	r.Done([]byte("POST"), 502, 2*time.Second)
	if v := testutil.ToFloat64(m.inFlight.WithLabelValues("api")); v != 0 {
		t.Errorf("in flight = %v, want 0", v)
	}
	for range 3 {
		r.Start()
		r.Done(get, 200, time.Millisecond)
	}

	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{"GET", "200", 4},
		{"POST", "502", 1},
		{"GET", "502", 0},
	} {
		if v := testutil.ToFloat64(m.requests.WithLabelValues("api", c.method, c.code)); v != c.want {
			t.Errorf("requests_total{api,%s,%s} = %v, want %v", c.method, c.code, v, c.want)
		}
	}
	// The GET/502 lookup above created a child; 3 series with it.
	if n := testutil.CollectAndCount(m.requests); n != 3 {
		t.Errorf("requests_total has %d series, want 3", n)
	}

	h := histogramOf(t, m, "api")
	if h.count != 5 {
		t.Errorf("duration count = %d, want 5", h.count)
	}
	if h.sum < 2.006 || h.sum > 2.0061 {
		t.Errorf("duration sum = %v, want 2.006", h.sum)
	}
	if len(h.bounds) != len(durationBuckets) {
		t.Fatalf("buckets %v, want %v", h.bounds, durationBuckets)
	}
	for i, le := range h.bounds {
		if le != durationBuckets[i] {
			t.Fatalf("buckets %v, want %v", h.bounds, durationBuckets)
		}
		// 1ms lands in le=0.001; 3ms in le=0.005; 2s in le=2.5.
		var want uint64
		switch {
		case le >= 2.5:
			want = 5
		case le >= 0.005:
			want = 4
		case le >= 0.001:
			want = 3
		}
		if h.cumulative[i] != want {
			t.Errorf("bucket le=%v count %d, want %d", le, h.cumulative[i], want)
		}
	}
}

type histogramData struct {
	count      uint64
	sum        float64
	bounds     []float64
	cumulative []uint64
}

// histogramOf returns the collected duration histogram of route.
func histogramOf(t *testing.T, m *Metrics, route string) *histogramData {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rustygate_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "route" && lp.GetValue() == route {
					h := mt.GetHistogram()
					d := &histogramData{count: h.GetSampleCount(), sum: h.GetSampleSum()}
					for _, b := range h.GetBucket() {
						d.bounds = append(d.bounds, b.GetUpperBound())
						d.cumulative = append(d.cumulative, b.GetCumulativeCount())
					}
					return d
				}
			}
		}
	}
	t.Fatalf("no duration histogram for route %q", route)
	return nil
}

func TestMetricsRouteHandle(t *testing.T) {
	m := NewMetrics()
	a := m.Route("api")
	if m.Route("api") != a {
		t.Error("Route returned a new handle for the same name")
	}
	if m.Route("other") == a {
		t.Error("Route returned the same handle for another name")
	}
	none := m.Route("")
	if none.Name() != NoRoute || m.Route(NoRoute) != none {
		t.Errorf("no-route handle named %q", none.Name())
	}
	none.Start()
	none.Done([]byte("GET"), 404, time.Millisecond)
	if v := testutil.ToFloat64(m.requests.WithLabelValues("none", "GET", "404")); v != 1 {
		t.Errorf("requests_total{none,GET,404} = %v, want 1", v)
	}
}

func TestMetricsLabelCardinality(t *testing.T) {
	m := NewMetrics()
	r := m.Route("api")
	for _, meth := range []string{"get", "PROPFIND", "", "GET ", strings.Repeat("X", 300), "\xff\x00"} {
		r.Start()
		r.Done([]byte(meth), 200, 0)
	}
	for _, code := range []int{0, -1, 99, 600, 1000} {
		r.Start()
		r.Done([]byte("GET"), code, 0)
	}
	for _, meth := range methodLabels[:methodOther] {
		r.Start()
		r.Done([]byte(meth), 204, 0)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("api", "OTHER", "200")); v != 6 {
		t.Errorf("requests_total{OTHER,200} = %v, want 6", v)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("api", "GET", otherCodeStr)); v != 5 {
		t.Errorf("requests_total{GET,000} = %v, want 5", v)
	}
	// OTHER/200, GET/000 and the nine standard methods with 204.
	if n := testutil.CollectAndCount(m.requests); n != 2+methodOther {
		t.Errorf("requests_total has %d series, want %d", n, 2+methodOther)
	}
	for _, meth := range methodLabels[:methodOther] {
		if v := testutil.ToFloat64(m.requests.WithLabelValues("api", meth, "204")); v != 1 {
			t.Errorf("requests_total{%s,204} = %v, want 1", meth, v)
		}
	}
}

func TestMetricsCodeLabels(t *testing.T) {
	for code := minCode; code <= maxCode; code++ {
		if got := codeLabels[codeSlot(code)]; got != itoa3(code) {
			t.Fatalf("code %d labelled %q", code, got)
		}
	}
	if got := codeLabels[codeSlot(0)]; got != otherCodeStr {
		t.Errorf("code 0 labelled %q", got)
	}
}

func itoa3(c int) string {
	return string([]byte{byte('0' + c/100), byte('0' + c/10%10), byte('0' + c%10)})
}

func TestMetricsPolicies(t *testing.T) {
	m := NewMetrics()
	declarePolicies(t, m)
	r := m.Route("api")
	r.BackendFailure("http://a:1", "timeout")
	r.BackendFailure("http://a:1", "timeout")
	r.BackendFailure("http://b:1", "connect")
	r.Retry("timeout")
	r.Retry("timeout")
	r.Retry("status")
	r.Rejected("rate_limit", "over_limit")
	r.Rejected("rate_limit", "other")
	r.Rejected("jwt", "expired")
	r.Rejected("jwt", "bad_signature")
	r.Rejected("jwt", "expired")
	r.Rejected("cors", "origin")
	r.Rejected("wasm", "trap")
	r.Rejected("unknown", "x")

	checks := []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.backendFailures.WithLabelValues("api", "http://a:1", "timeout"), 2},
		{m.backendFailures.WithLabelValues("api", "http://b:1", "connect"), 1},
		{m.retries.WithLabelValues("api", "timeout"), 2},
		{m.retries.WithLabelValues("api", "status"), 1},
		{m.rejections["rate_limit"].vec.WithLabelValues("api"), 2},
		{m.rejections["jwt"].vec.WithLabelValues("api", "expired"), 2},
		{m.rejections["jwt"].vec.WithLabelValues("api", "bad_signature"), 1},
		{m.rejections["cors"].vec.WithLabelValues("api"), 1},
		{m.rejections["wasm"].vec.WithLabelValues("api", "trap"), 1},
	}
	for i, c := range checks {
		if v := testutil.ToFloat64(c.c); v != c.want {
			t.Errorf("check %d: %v, want %v", i, v, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.rejections["wasm"].vec); n != 1 {
		t.Errorf("plugin failures has %d series, want 1", n)
	}
}

func TestMetricsProcessWide(t *testing.T) {
	m := NewMetrics()
	m.BackendUp("api", "http://a:1", true)
	m.BackendUp("api", "http://b:1", false)
	m.BackendUp("", "http://c:1", true)
	if v := testutil.ToFloat64(m.backendUp.WithLabelValues("api", "http://a:1")); v != 1 {
		t.Errorf("backend_up a = %v", v)
	}
	m.BackendUp("api", "http://a:1", false)
	if v := testutil.ToFloat64(m.backendUp.WithLabelValues("api", "http://a:1")); v != 0 {
		t.Errorf("backend_up a after down = %v", v)
	}
	if v := testutil.ToFloat64(m.backendUp.WithLabelValues("none", "http://c:1")); v != 1 {
		t.Errorf("backend_up none/c = %v", v)
	}

	m.PoolConns("http://a:1", 3, 7)
	m.PoolConns("http://a:1", 2, 8)
	if v := testutil.ToFloat64(m.backendConns.WithLabelValues("http://a:1", "active")); v != 2 {
		t.Errorf("active = %v", v)
	}
	if v := testutil.ToFloat64(m.backendConns.WithLabelValues("http://a:1", "idle")); v != 8 {
		t.Errorf("idle = %v", v)
	}

	if v := testutil.ToFloat64(m.reloadOK); v != 0 {
		t.Errorf("reload successes before any = %v", v)
	}
	at := time.Unix(1_700_000_000, 500_000_000)
	m.ConfigReload(true, at)
	m.ConfigReload(false, at.Add(time.Hour))
	m.ConfigReload(false, at.Add(time.Hour))
	if v := testutil.ToFloat64(m.reloads.WithLabelValues("success")); v != 1 {
		t.Errorf("reload successes = %v", v)
	}
	if v := testutil.ToFloat64(m.reloads.WithLabelValues("failure")); v != 2 {
		t.Errorf("reload failures = %v", v)
	}
	if v := testutil.ToFloat64(m.lastReload); v != 1_700_000_000.5 {
		t.Errorf("last reload = %v", v)
	}

	m.Info("v1", "fast", "xdp", "")
	m.Info("v1", "fast", "userspace", "no_bpf")
	if n := testutil.CollectAndCount(m.datapathInfo); n != 1 {
		t.Errorf("datapath_info has %d series, want 1", n)
	}
	if v := testutil.ToFloat64(m.datapathInfo.WithLabelValues("userspace", "no_bpf")); v != 1 {
		t.Errorf("datapath_info = %v", v)
	}
	if v := testutil.ToFloat64(m.buildInfo.WithLabelValues("v1", "fast")); v != 1 {
		t.Errorf("build_info = %v", v)
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	r := m.Route("api")
	if r != nil {
		t.Fatal("nil Metrics returned a handle")
	}
	r.Start()
	r.Done([]byte("GET"), 200, time.Millisecond)
	r.BackendFailure("b", "x")
	r.Retry("x")
	r.Rejected("jwt", "x")
	m.BackendUp("a", "b", true)
	m.PoolConns("b", 1, 1)
	m.ConfigReload(true, time.Now())
	m.Info("v", "e", "m", "r")
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics handler status %d", rec.Code)
	}
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics()
	declarePolicies(t, m)
	r := m.Route("api")
	r.Start()
	r.Done([]byte("GET"), 200, time.Millisecond)
	r.BackendFailure("http://a:1", "connect")
	r.Retry("connect")
	for _, p := range []string{"rate_limit", "jwt", "cors", "wasm"} {
		r.Rejected(p, "x")
	}
	m.BackendUp("api", "http://a:1", true)
	m.PoolConns("http://a:1", 1, 2)
	m.ConfigReload(true, time.Now())
	m.Info("v1.2.3", "fast", "userspace", "")

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	out := string(body)
	for _, want := range []string{
		`rustygate_requests_total{code="200",method="GET",route="api"} 1`,
		`rustygate_request_duration_seconds_bucket{route="api",le="0.0005"} 0`,
		`rustygate_request_duration_seconds_bucket{route="api",le="0.001"} 1`,
		`rustygate_request_duration_seconds_count{route="api"} 1`,
		`rustygate_requests_in_flight{route="api"} 0`,
		`rustygate_backend_failures_total{backend="http://a:1",reason="connect",route="api"} 1`,
		`rustygate_retries_total{reason="connect",route="api"} 1`,
		`rustygate_rate_limited_total{route="api"} 1`,
		`rustygate_jwt_rejected_total{reason="x",route="api"} 1`,
		`rustygate_cors_rejected_total{route="api"} 1`,
		`rustygate_plugin_failures_total{reason="x",route="api"} 1`,
		`rustygate_backend_up{backend="http://a:1",route="api"} 1`,
		`rustygate_backend_connections{backend="http://a:1",state="active"} 1`,
		`rustygate_backend_connections{backend="http://a:1",state="idle"} 2`,
		`rustygate_config_reloads_total{result="success"} 1`,
		`rustygate_config_reloads_total{result="failure"} 0`,
		`rustygate_config_last_reload_success_timestamp_seconds `,
		`rustygate_build_info{engine="fast",version="v1.2.3"} 1`,
		`rustygate_datapath_info{mode="userspace",reason=""} 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

func TestMetricsConcurrent(t *testing.T) {
	m := NewMetrics()
	declarePolicies(t, m)
	const workers, per = 8, 500
	methods := [][]byte{[]byte("GET"), []byte("POST"), []byte("BREW")}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				// Handles looked up concurrently, as after a reload.
				r := m.Route([]string{"a", "b"}[(w+i)%2])
				r.Start()
				r.BackendFailure("http://x:1", []string{"connect", "timeout"}[i%2])
				r.Retry("connect")
				r.Rejected("jwt", []string{"expired", "missing"}[i%2])
				m.BackendUp("a", "http://x:1", i%2 == 0)
				m.PoolConns("http://x:1", i, w)
				r.Done(methods[i%len(methods)], 200+i%3, time.Duration(i)*time.Microsecond)
			}
		})
	}
	// Scrapes run alongside.
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := m.Registry().Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-scraped

	var total float64
	for _, route := range []string{"a", "b"} {
		for _, meth := range []string{"GET", "POST", "OTHER"} {
			for _, code := range []string{"200", "201", "202"} {
				total += testutil.ToFloat64(m.requests.WithLabelValues(route, meth, code))
			}
		}
		if v := testutil.ToFloat64(m.inFlight.WithLabelValues(route)); v != 0 {
			t.Errorf("in flight %s = %v", route, v)
		}
	}
	if total != workers*per {
		t.Errorf("requests total %v, want %d", total, workers*per)
	}
	if v := testutil.ToFloat64(m.retries.WithLabelValues("a", "connect")) +
		testutil.ToFloat64(m.retries.WithLabelValues("b", "connect")); v != workers*per {
		t.Errorf("retries %v, want %d", v, workers*per)
	}
}

func TestMetricsDoneAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	m := NewMetrics()
	declarePolicies(t, m)
	r := m.Route("api")
	get, other := []byte("GET"), []byte("BREW")
	// Warm-up resolves the children used below.
	r.Done(get, 200, time.Millisecond)
	r.Done(other, 503, time.Millisecond)
	r.BackendFailure("http://a:1", "timeout")
	r.Retry("timeout")
	r.Rejected("jwt", "expired")
	r.Rejected("wasm", "trap")
	m.BackendUp("api", "http://a:1", true)
	m.PoolConns("http://a:1", 1, 1)

	for name, f := range map[string]func(){
		"Done": func() {
			r.Start()
			r.Done(get, 200, time.Millisecond)
			r.Start()
			r.Done(other, 503, 2*time.Second)
		},
		"BackendFailure": func() { r.BackendFailure("http://a:1", "timeout") },
		"Retry":          func() { r.Retry("timeout") },
		"Rejected": func() {
			r.Rejected("rate_limit", "x")
			r.Rejected("cors", "x")
			r.Rejected("jwt", "expired")
			r.Rejected("wasm", "trap")
		},
		"BackendUp": func() { m.BackendUp("api", "http://a:1", false) },
		"PoolConns": func() { m.PoolConns("http://a:1", 5, 6) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
}

func TestLabelCacheBounded(t *testing.T) {
	m := NewMetrics()
	r := m.Route("api")
	for i := range maxCachedLabels + 10 {
		r.Retry(string(rune('a'+i%26)) + itoa3(i%1000) + string(rune('a'+i/1000)))
	}
	if n := len(*r.retries.p.Load()); n != maxCachedLabels {
		t.Errorf("cache holds %d entries, want %d", n, maxCachedLabels)
	}
	// Past the bound, values are still recorded.
	r.Retry("z999z")
	r.Retry("z999z")
	if v := testutil.ToFloat64(m.retries.WithLabelValues("api", "z999z")); v != 2 {
		t.Errorf("uncached label recorded %v, want 2", v)
	}
}

func BenchmarkRouteDone(b *testing.B) {
	m := NewMetrics()
	r := m.Route("api")
	methods := [][]byte{[]byte("GET"), []byte("POST"), []byte("GET"), []byte("PURGE")}
	codes := []int{200, 200, 404, 502}
	for i := range methods {
		r.Done(methods[i], codes[i], time.Millisecond)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Start()
			r.Done(methods[i&3], codes[i&3], time.Duration(i&1023)*time.Microsecond)
			i++
		}
	})
}

// standardRejections are the counters the shipped middlewares declare.
var standardRejections = map[string]Rejections{
	"rate_limit": {Name: "rustygate_rate_limited_total", Help: "Requests rejected by rate limiting, by route."},
	"jwt":        {Name: "rustygate_jwt_rejected_total", Help: "Requests rejected by JWT validation, by route and reason.", ByReason: true},
	"cors":       {Name: "rustygate_cors_rejected_total", Help: "Requests rejected by the CORS policy, by route."},
	"wasm":       {Name: "rustygate_plugin_failures_total", Help: "Requests rejected or failed by a WASM plugin, by route and reason.", ByReason: true},
}

func declarePolicies(t testing.TB, m *Metrics) {
	t.Helper()
	for policy, spec := range standardRejections {
		if err := m.DeclareRejections(policy, spec); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeclareRejections: a declared family counts its policy's
// rejections; a route-only family has its routes' series at 0 whether
// the route came before or after the declaration; declaring again is
// harmless, declaring differently or under a taken name is an error.
func TestDeclareRejections(t *testing.T) {
	m := NewMetrics()
	early := m.Route("early")
	early.Rejected("mine", "x") // not declared yet: not recorded
	spec := Rejections{Name: "rustygate_mine_rejected_total", Help: "Mine."}
	if err := m.DeclareRejections("mine", spec); err != nil {
		t.Fatal(err)
	}
	late := m.Route("late")
	vec := m.rejections["mine"].vec
	if n := testutil.CollectAndCount(vec); n != 2 {
		t.Fatalf("%d series before any rejection, want 2 (early and late at 0)", n)
	}
	early.Rejected("mine", "x")
	late.Rejected("mine", "y")
	late.Rejected("mine", "z")
	if a, b := testutil.ToFloat64(vec.WithLabelValues("early")), testutil.ToFloat64(vec.WithLabelValues("late")); a != 1 || b != 2 {
		t.Fatalf("early %v late %v, want 1 and 2", a, b)
	}
	if err := m.DeclareRejections("mine", spec); err != nil {
		t.Fatalf("same declaration again: %v", err)
	}
	if err := m.DeclareRejections("mine", Rejections{Name: "rustygate_other_total"}); err == nil {
		t.Fatal("a different declaration of the same policy was accepted")
	}
	if err := m.DeclareRejections("theirs", Rejections{Name: "rustygate_requests_total", Help: "x"}); err == nil {
		t.Fatal("a family under the name of another metric was accepted")
	}
}
