package observe

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NoRoute is the route label of requests no route matched.
const NoRoute = "none"

// durationBuckets are the request duration histogram's upper bounds in
// seconds: sub-millisecond proxying up to slow backends.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Method classes of the method label. Methods outside the standard set
// share methodOther, so a client cannot grow the label set.
const (
	methodGet = iota
	methodHead
	methodPost
	methodPut
	methodDelete
	methodConnect
	methodOptions
	methodTrace
	methodPatch
	methodOther
	numMethods
)

var methodLabels = [numMethods]string{
	methodGet:     "GET",
	methodHead:    "HEAD",
	methodPost:    "POST",
	methodPut:     "PUT",
	methodDelete:  "DELETE",
	methodConnect: "CONNECT",
	methodOptions: "OPTIONS",
	methodTrace:   "TRACE",
	methodPatch:   "PATCH",
	methodOther:   "OTHER",
}

// methodClass maps a request method to its class. Methods are case
// sensitive: "get" is OTHER.
func methodClass(m []byte) int {
	switch string(m) { // compared in place, no conversion
	case "GET":
		return methodGet
	case "HEAD":
		return methodHead
	case "POST":
		return methodPost
	case "PUT":
		return methodPut
	case "DELETE":
		return methodDelete
	case "CONNECT":
		return methodConnect
	case "OPTIONS":
		return methodOptions
	case "TRACE":
		return methodTrace
	case "PATCH":
		return methodPatch
	}
	return methodOther
}

// Status codes 100..599 have a counter slot of their own; anything else
// (0 when no response was sent) shares the last slot, labelled "000".
const (
	minCode      = 100
	maxCode      = 599
	codeSlots    = maxCode - minCode + 2
	otherCode    = codeSlots - 1
	otherCodeStr = "000"
)

// codeLabels holds the label of every code slot.
var codeLabels = func() (t [codeSlots]string) {
	for c := minCode; c <= maxCode; c++ {
		t[c-minCode] = strconv.Itoa(c)
	}
	t[otherCode] = otherCodeStr
	return t
}()

func codeSlot(code int) int {
	if code < minCode || code > maxCode {
		return otherCode
	}
	return code - minCode
}

// maxCachedLabels bounds each lookup cache of the label-keyed methods;
// past it, new label pairs are still recorded, only not cached.
const maxCachedLabels = 1024

// Metrics owns a Prometheus registry holding RustyGate's metrics plus the
// Go runtime and process collectors. All methods are safe for concurrent
// use; a nil *Metrics records nothing, so the proxy may run without one.
//
// Per-request recording goes through a [RouteMetrics] handle: look it up
// once with [Metrics.Route] when a route is built, not per request.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        *prometheus.GaugeVec
	backendFailures *prometheus.CounterVec
	retries         *prometheus.CounterVec
	grpcCalls       *prometheus.CounterVec
	backendUp       *prometheus.GaugeVec
	backendConns    *prometheus.GaugeVec
	reloads         *prometheus.CounterVec
	lastReload      prometheus.Gauge
	buildInfo       *prometheus.GaugeVec
	datapathInfo    *prometheus.GaugeVec

	reloadOK, reloadFailed prometheus.Counter

	routesMu sync.Mutex
	routes   map[string]*RouteMetrics // guarded by routesMu

	upCache    labelCache[prometheus.Gauge]
	connsCache labelCache[poolGauges]

	// rejections are the middlewares' declared rejection counters, by
	// policy name. Route takes rejectionsMu while it holds routesMu.
	rejectionsMu sync.Mutex
	rejections   map[string]*rejectionFamily

	infoMu sync.Mutex // serializes Info's reset-and-set
}

// NewMetrics returns a Metrics with every metric registered.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		routes: make(map[string]*RouteMetrics),
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_requests_total",
		Help: "Requests answered, by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rustygate_request_duration_seconds",
		Help:    "Time from the request head to the end of the response, by route.",
		Buckets: durationBuckets,
	}, []string{"route"})
	m.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rustygate_requests_in_flight",
		Help: "Requests being served, by route.",
	}, []string{"route"})
	m.backendFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_backend_failures_total",
		Help: "Failed attempts to get a response from a backend, by route, backend and reason.",
	}, []string{"route", "backend", "reason"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_retries_total",
		Help: "Requests resent to another backend, by route and reason.",
	}, []string{"route", "reason"})
	m.backendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rustygate_backend_up",
		Help: "Whether a backend of a route is healthy (1) or not (0).",
	}, []string{"route", "backend"})
	m.backendConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rustygate_backend_connections",
		Help: "Connections to a backend (labelled with its URL, as in the other backend metrics), by state (active or idle).",
	}, []string{"backend", "state"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_config_reloads_total",
		Help: "Configuration reloads, by result (success or failure).",
	}, []string{"result"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rustygate_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful configuration load.",
	})
	m.grpcCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_grpc_requests_total",
		Help: "gRPC calls by route and grpc-status code (the backend's, or the proxy's own answer).",
	}, []string{"route", "grpc_status"})
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rustygate_build_info",
		Help: "Always 1; the labels give the version and HTTP engine.",
	}, []string{"version", "engine"})
	m.datapathInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rustygate_datapath_info",
		Help: "Always 1; the labels give the datapath mode and why it was chosen.",
	}, []string{"mode", "reason"})

	// Both results exist from the start, so rates over them work before
	// the first reload.
	m.reloadOK = m.reloads.WithLabelValues("success")
	m.reloadFailed = m.reloads.WithLabelValues("failure")

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.inFlight,
		m.backendFailures, m.retries, m.grpcCalls,
		m.backendUp, m.backendConns,
		m.reloads, m.lastReload,
		m.buildInfo, m.datapathInfo,
	)
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Registry returns the registry, e.g. to register more collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// routeLabel is the route label of name.
func routeLabel(name string) string {
	if name == "" {
		return NoRoute
	}
	return name
}

// Route returns the handle of the named route, creating it on first use.
// The same name always gives the same handle, so a handle kept across a
// configuration reload keeps counting into the same series. "" stands
// for requests no route matched (label "none").
func (m *Metrics) Route(name string) *RouteMetrics {
	if m == nil {
		return nil
	}
	label := routeLabel(name)
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	if r := m.routes[label]; r != nil {
		return r
	}
	r := &RouteMetrics{
		m:        m,
		route:    label,
		inFlight: m.inFlight.WithLabelValues(label),
		duration: m.duration.WithLabelValues(label),
	}
	m.rejectionsMu.Lock()
	for _, f := range m.rejections {
		if !f.spec.ByReason {
			// Counted by route only: the series exists from the start.
			f.vec.WithLabelValues(label)
		}
	}
	m.rejectionsMu.Unlock()
	m.routes[label] = r
	return r
}

// counterRef holds a resolved counter child.
type counterRef struct{ prometheus.Counter }

// RouteMetrics records the requests of one route. Its methods are safe for
// concurrent use and allocate nothing once each label combination has
// been seen; a nil *RouteMetrics records nothing.
type RouteMetrics struct {
	m     *Metrics
	route string

	inFlight prometheus.Gauge
	duration prometheus.Observer

	// requests holds the requests_total children, resolved on first use.
	requests [numMethods][codeSlots]atomic.Pointer[counterRef]

	failures labelCache[prometheus.Counter] // backend, reason
	retries  labelCache[prometheus.Counter] // reason
	rejected labelCache[prometheus.Counter] // policy, reason (or "\x00")
	grpc     labelCache[prometheus.Counter] // grpc_status
}

// Name returns the route label the handle records under.
func (r *RouteMetrics) Name() string {
	if r == nil {
		return ""
	}
	return r.route
}

// Start records a request entering the route (requests in flight +1).
// Every Start must be followed by one Done.
func (r *RouteMetrics) Start() {
	if r == nil {
		return
	}
	r.inFlight.Inc()
}

// Done records the end of a request begun with Start: requests in flight
// -1, one request with method and status code, and its duration. method
// is only read during the call.
func (r *RouteMetrics) Done(method []byte, code int, d time.Duration) {
	if r == nil {
		return
	}
	r.inFlight.Dec()
	mc, cs := methodClass(method), codeSlot(code)
	c := r.requests[mc][cs].Load()
	if c == nil {
		c = r.resolveRequests(mc, cs)
	}
	c.Inc()
	if d < 0 {
		d = 0
	}
	r.duration.Observe(d.Seconds())
}

// resolveRequests resolves and caches the requests_total child of a
// method class and code slot. Concurrent first uses resolve the same child.
func (r *RouteMetrics) resolveRequests(mc, cs int) *counterRef {
	c := &counterRef{r.m.requests.WithLabelValues(r.route, methodLabels[mc], codeLabels[cs])}
	if !r.requests[mc][cs].CompareAndSwap(nil, c) {
		return r.requests[mc][cs].Load()
	}
	return c
}

// BackendFailure records a failed attempt on backend; reason should be
// short and from a bounded set ("connect", "timeout", "reset", ...).
func (r *RouteMetrics) BackendFailure(backend, reason string) {
	if r == nil {
		return
	}
	c, ok := r.failures.get(backend, reason)
	if !ok {
		c = r.failures.put(backend, reason, r.m.backendFailures.WithLabelValues(r.route, backend, reason))
	}
	c.Inc()
}

// GRPCDone records the status a gRPC call ended with (a code 0-16 as
// text; the caller keeps the set bounded).
func (r *RouteMetrics) GRPCDone(status string) {
	if r == nil {
		return
	}
	c, ok := r.grpc.get(status, "")
	if !ok {
		c = r.grpc.put(status, "", r.m.grpcCalls.WithLabelValues(r.route, status))
	}
	c.Inc()
}

// Retry records a request resent to another backend for reason.
func (r *RouteMetrics) Retry(reason string) {
	if r == nil {
		return
	}
	c, ok := r.retries.get(reason, "")
	if !ok {
		c = r.retries.put(reason, "", r.m.retries.WithLabelValues(r.route, reason))
	}
	c.Inc()
}

// Rejected records a request a middleware answered itself, in the
// counter family its module declared with DeclareRejections (by route,
// and by reason when the family has a reason label). A policy that
// declared none is not recorded.
func (r *RouteMetrics) Rejected(policy, reason string) {
	if r == nil {
		return
	}
	if c, ok := r.rejected.get(policy, reason); ok {
		c.Inc()
		return
	}
	if c, ok := r.rejected.get(policy, noReason); ok {
		c.Inc()
		return
	}
	f := r.m.rejectionFamily(policy)
	if f == nil {
		return
	}
	if f.spec.ByReason {
		r.rejected.put(policy, reason, f.vec.WithLabelValues(r.route, reason)).Inc()
	} else {
		r.rejected.put(policy, noReason, f.vec.WithLabelValues(r.route)).Inc()
	}
}

// BackendUp sets the health of backend in route ("" is "none").
func (m *Metrics) BackendUp(route, backend string, up bool) {
	if m == nil {
		return
	}
	route = routeLabel(route)
	g, ok := m.upCache.get(route, backend)
	if !ok {
		g = m.upCache.put(route, backend, m.backendUp.WithLabelValues(route, backend))
	}
	if up {
		g.Set(1)
	} else {
		g.Set(0)
	}
}

// poolGauges are the connection gauges of one backend.
type poolGauges struct{ active, idle prometheus.Gauge }

// PoolConns sets the active and idle connection counts of backend's pool.
func (m *Metrics) PoolConns(backend string, active, idle int) {
	if m == nil {
		return
	}
	g, ok := m.connsCache.get(backend, "")
	if !ok {
		g = m.connsCache.put(backend, "", poolGauges{
			active: m.backendConns.WithLabelValues(backend, "active"),
			idle:   m.backendConns.WithLabelValues(backend, "idle"),
		})
	}
	g.active.Set(float64(active))
	g.idle.Set(float64(idle))
}

// ConfigReload records a configuration load attempt; a success at time at
// also sets the last-success timestamp.
func (m *Metrics) ConfigReload(ok bool, at time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.reloadFailed.Inc()
		return
	}
	m.reloadOK.Inc()
	m.lastReload.Set(float64(at.UnixNano()) / 1e9)
}

// Info sets rustygate_build_info{version,engine} and
// rustygate_datapath_info{mode,reason} to 1, replacing any earlier values
// so each keeps a single series.
func (m *Metrics) Info(version, engine, datapathMode, reason string) {
	if m == nil {
		return
	}
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version, engine).Set(1)
	m.datapathInfo.Reset()
	m.datapathInfo.WithLabelValues(datapathMode, reason).Set(1)
}

// labelPair keys a labelCache; the second label is "" when unused.
type labelPair struct{ a, b string }

// labelCache maps label values to resolved children. Reads are one atomic
// load and a map lookup on an immutable map; a miss copies the map.
type labelCache[V any] struct {
	mu sync.Mutex
	p  atomic.Pointer[map[labelPair]V]
}

func (c *labelCache[V]) get(a, b string) (V, bool) {
	if mp := c.p.Load(); mp != nil {
		v, ok := (*mp)[labelPair{a, b}]
		return v, ok
	}
	var zero V
	return zero, false
}

// put caches v under (a, b) unless another child is already cached
// there or the cache is full, and returns the child to use.
func (c *labelCache[V]) put(a, b string, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.p.Load()
	var n int
	if old != nil {
		if cur, ok := (*old)[labelPair{a, b}]; ok {
			return cur
		}
		n = len(*old)
	}
	if n >= maxCachedLabels {
		return v
	}
	mp := make(map[labelPair]V, n+1)
	if old != nil {
		for k, x := range *old {
			mp[k] = x
		}
	}
	mp[labelPair{a, b}] = v
	c.p.Store(&mp)
	return v
}
