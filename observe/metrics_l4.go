package observe

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// L4Metrics are the TCP proxy's series, registered on first use.
type L4Metrics struct {
	active   *prometheus.GaugeVec
	conns    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	failures *prometheus.CounterVec
	routes   *prometheus.CounterVec
	hellos   *prometheus.CounterVec
}

var l4Once sync.Map // *Metrics -> *L4Metrics

// L4 returns the TCP proxy metrics of m (nil when m is nil):
// rustygate_l4_connections_active{listener},
// rustygate_l4_connections_total{listener,result},
// rustygate_l4_bytes_total{listener,direction},
// rustygate_l4_route_connections_total{listener,route},
// rustygate_l4_tls_hello_failures_total{listener,reason} and
// rustygate_backend_failures_total{route=listener,backend,reason}.
func (m *Metrics) L4() *L4Metrics {
	if m == nil {
		return nil
	}
	if v, ok := l4Once.Load(m); ok {
		return v.(*L4Metrics)
	}
	l := &L4Metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rustygate_l4_connections_active",
			Help: "TCP connections being proxied, by listener.",
		}, []string{"listener"}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_l4_connections_total",
			Help: "TCP connections accepted, by listener and result (proxied, rejected, backend_failed, hello_failed, no_route).",
		}, []string{"listener", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_l4_bytes_total",
			Help: "Bytes relayed by the TCP proxy, by listener and direction (to_backend, to_client).",
		}, []string{"listener", "direction"}),
		routes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_l4_route_connections_total",
			Help: "Connections of SNI listeners by the route their server name chose (default: the listener's own backends).",
		}, []string{"listener", "route"}),
		hellos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_l4_tls_hello_failures_total",
			Help: "Connections of SNI or TLS listeners closed before a backend was chosen, by reason (not_tls, malformed, too_large, timeout, client_closed, handshake_failed).",
		}, []string{"listener", "reason"}),
		failures: m.backendFailures,
	}
	if v, loaded := l4Once.LoadOrStore(m, l); loaded {
		return v.(*L4Metrics)
	}
	m.reg.MustRegister(l.active, l.conns, l.bytes, l.routes, l.hellos)
	return l
}

// ConnOpened counts a proxied connection starting.
func (l *L4Metrics) ConnOpened(listener string) {
	if l != nil {
		l.active.WithLabelValues(listener).Inc()
	}
}

// ConnClosed counts a connection ending with its result and bytes.
func (l *L4Metrics) ConnClosed(listener, result string, toBackend, toClient int64, opened bool) {
	if l == nil {
		return
	}
	if opened {
		l.active.WithLabelValues(listener).Dec()
	}
	l.conns.WithLabelValues(listener, result).Inc()
	if toBackend > 0 {
		l.bytes.WithLabelValues(listener, "to_backend").Add(float64(toBackend))
	}
	if toClient > 0 {
		l.bytes.WithLabelValues(listener, "to_client").Add(float64(toClient))
	}
}

// BackendFailure counts a failed connect to a backend.
func (l *L4Metrics) BackendFailure(listener, backend, reason string) {
	if l != nil {
		l.failures.WithLabelValues(listener, backend, reason).Inc()
	}
}

// RouteConnection counts a connection of an SNI listener sent to route.
func (l *L4Metrics) RouteConnection(listener, route string) {
	if l != nil {
		l.routes.WithLabelValues(listener, route).Inc()
	}
}

// HelloFailure counts a connection closed because its ClientHello or TLS
// handshake failed, with a bounded reason.
func (l *L4Metrics) HelloFailure(listener, reason string) {
	if l != nil {
		l.hellos.WithLabelValues(listener, reason).Inc()
	}
}
