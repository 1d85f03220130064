package observe

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSMetrics are the HTTPS listener's series, registered on first use.
type TLSMetrics struct {
	handshakes  *prometheus.CounterVec
	clientCerts *prometheus.CounterVec
	// hs caches the handshake counters by result and version.
	hs sync.Map // [2]string -> prometheus.Counter
}

var tlsOnce sync.Map // *Metrics -> *TLSMetrics

// TLS returns the HTTPS listener's metrics of m (nil when m is nil):
// rustygate_tls_handshakes_total{result,version} and
// rustygate_tls_client_certificate_failures_total{reason}.
func (m *Metrics) TLS() *TLSMetrics {
	if m == nil {
		return nil
	}
	if v, ok := tlsOnce.Load(m); ok {
		return v.(*TLSMetrics)
	}
	t := &TLSMetrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_tls_handshakes_total",
			Help: "TLS handshakes on the HTTPS listener, by result (full, resumed, timeout, not_tls, client_certificate, no_certificate, client_closed, error) and negotiated version (unknown when the handshake failed before one was chosen).",
		}, []string{"result", "version"}),
		clientCerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rustygate_tls_client_certificate_failures_total",
			Help: "Requests and handshakes refused for want of a valid client certificate, by reason (missing, untrusted, route_requires).",
		}, []string{"reason"}),
	}
	if v, loaded := tlsOnce.LoadOrStore(m, t); loaded {
		return v.(*TLSMetrics)
	}
	m.reg.MustRegister(t.handshakes, t.clientCerts)
	return t
}

// Handshake counts one handshake with its result and version.
func (t *TLSMetrics) Handshake(result, version string) {
	if t == nil {
		return
	}
	k := [2]string{result, version}
	if c, ok := t.hs.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := t.handshakes.WithLabelValues(result, version)
	t.hs.Store(k, c)
	c.Inc()
}

// ClientCertFailure counts a connection or request refused for its client
// certificate.
func (t *TLSMetrics) ClientCertFailure(reason string) {
	if t != nil {
		t.clientCerts.WithLabelValues(reason).Inc()
	}
}

// CertExpiry is one served certificate for the expiry gauge.
type CertExpiry struct {
	Name, File string
	NotAfter   time.Time
}

// RegisterCertificates exports
// rustygate_tls_certificate_expiry_timestamp_seconds{name,file}, read from
// list at scrape time, so a renewed certificate shows its new date at
// once.
func (m *Metrics) RegisterCertificates(list func() []CertExpiry) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&certCollector{list: list, desc: prometheus.NewDesc(
		"rustygate_tls_certificate_expiry_timestamp_seconds",
		"Unix time at which a served certificate expires (its NotAfter), by first SAN and certificate file.",
		[]string{"name", "file"}, nil)})
}

type certCollector struct {
	list func() []CertExpiry
	desc *prometheus.Desc
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[2]string]bool{}
	for _, e := range c.list() {
		k := [2]string{e.Name, e.File}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), e.Name, e.File)
	}
}
