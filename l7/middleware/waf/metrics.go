package waf

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustygate/rustygate/l7/middleware"
)

// maxRuleLabels bounds the rule ids a route's rule-hit counter is
// labelled with; the hits of rules beyond go to rule_id="other".
const maxRuleLabels = 100

// metrics are the WAF's collectors, shared by every route.
type metrics struct {
	requests *prometheus.CounterVec
	hits     *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// newMetrics registers (or finds) the WAF's collectors in reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	req, err := middleware.RegisterCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_waf_requests_total",
		Help: "Requests inspected by the WAF, by route and action (pass, log, detect, block, body_too_large, bad_body).",
	}, []string{"route", "action"}))
	if err != nil {
		return nil, err
	}
	hits, err := middleware.RegisterCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rustygate_waf_rule_hits_total",
		Help: "WAF rules that matched, by route and rule id (the first 100 ids seen per route; the others as \"other\").",
	}, []string{"route", "rule_id"}))
	if err != nil {
		return nil, err
	}
	secs, err := middleware.RegisterCollector(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rustygate_waf_inspection_seconds",
		Help:    "Time the WAF took to inspect a request, by route.",
		Buckets: []float64{0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05},
	}, []string{"route"}))
	if err != nil {
		return nil, err
	}
	return &metrics{requests: req, hits: hits, seconds: secs}, nil
}

// routeMetrics are one route's series, resolved once at build.
type routeMetrics struct {
	m       *metrics
	route   string
	seconds prometheus.Observer
	actions sync.Map // action -> prometheus.Counter
	rules   sync.Map // rule id -> prometheus.Counter
	nrules  atomic.Int32
}

func (m *metrics) forRoute(route string) *routeMetrics {
	return &routeMetrics{m: m, route: route, seconds: m.seconds.WithLabelValues(route)}
}

func (rm *routeMetrics) done(v *verdict, d time.Duration) {
	rm.seconds.Observe(d.Seconds())
	c, ok := rm.actions.Load(v.action)
	if !ok {
		c, _ = rm.actions.LoadOrStore(v.action, rm.m.requests.WithLabelValues(rm.route, v.action))
	}
	c.(prometheus.Counter).Inc()
	for _, id := range v.ruleIDs {
		rm.rule(id).Inc()
	}
}

func (rm *routeMetrics) rule(id string) prometheus.Counter {
	if c, ok := rm.rules.Load(id); ok {
		return c.(prometheus.Counter)
	}
	if rm.nrules.Add(1) > maxRuleLabels {
		id = "other"
	}
	c, _ := rm.rules.LoadOrStore(id, rm.m.hits.WithLabelValues(rm.route, id))
	return c.(prometheus.Counter)
}
