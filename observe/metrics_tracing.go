package observe

import "github.com/prometheus/client_golang/prometheus"

// RegisterTracing exposes the span counts of read (Tracer.SpanCounters):
// rustygate_tracing_spans_exported_total, and
// rustygate_tracing_spans_dropped_total by reason: queue_full (the
// exporter did not keep up: the request path never waits for it) or
// export_failed.
func (m *Metrics) RegisterTracing(read func() SpanCounters) {
	if m == nil || read == nil {
		return
	}
	m.reg.MustRegister(&tracingCollector{
		read: read,
		exported: prometheus.NewDesc("rustygate_tracing_spans_exported_total",
			"Sampled spans exported to the OTLP collector.", nil, nil),
		dropped: prometheus.NewDesc("rustygate_tracing_spans_dropped_total",
			"Sampled spans not exported, by reason (queue_full, export_failed).", []string{"reason"}, nil),
	})
}

type tracingCollector struct {
	read              func() SpanCounters
	exported, dropped *prometheus.Desc
}

func (c *tracingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.exported
	ch <- c.dropped
}

func (c *tracingCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.read()
	ch <- prometheus.MustNewConstMetric(c.exported, prometheus.CounterValue, float64(n.Exported))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Dropped), "queue_full")
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Failed), "export_failed")
}
