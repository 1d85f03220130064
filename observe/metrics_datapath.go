package observe

import "github.com/prometheus/client_golang/prometheus"

// DatapathCounters are the connection limiter's totals.
type DatapathCounters struct {
	Passed, Limited, Denied, Banned uint64
}

// RegisterDatapath exports the connection limiter's counters, read at
// scrape time (in kernel mode from the per-CPU BPF maps):
// rustygate_kernel_passed_total{mode} and
// rustygate_kernel_dropped_total{mode,reason}.
func (m *Metrics) RegisterDatapath(mode string, read func() (DatapathCounters, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&datapathCollector{
		mode: mode,
		read: read,
		passed: prometheus.NewDesc("rustygate_kernel_passed_total",
			"New connections to the gateway's ports let through by the connection limiter.", []string{"mode"}, nil),
		dropped: prometheus.NewDesc("rustygate_kernel_dropped_total",
			"New connections dropped by the connection limiter, by reason (limited, denied, banned).", []string{"mode", "reason"}, nil),
	})
}

type datapathCollector struct {
	mode    string
	read    func() (DatapathCounters, error)
	passed  *prometheus.Desc
	dropped *prometheus.Desc
}

func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.passed
	ch <- c.dropped
}

func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.read()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.passed, prometheus.CounterValue, float64(n.Passed), c.mode)
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Limited), c.mode, "limited")
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Denied), c.mode, "denied")
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n.Banned), c.mode, "banned")
}

// SpliceCounters are the L4 kernel splicer's totals.
type SpliceCounters struct {
	Connections, Fallbacks, RedirectedBytes, DuplicateBytes, Overlaps, IntegrityFailures uint64
}

// RegisterL4Splice exports the kernel splicer's counters, read at scrape
// time: rustygate_l4_kernel_splice_total{event} (connections spliced in
// the kernel, fallbacks to splice(2), segments trimmed of repeated bytes,
// connections reset on an integrity failure) and
// rustygate_l4_kernel_splice_bytes_total{kind} (redirected, duplicate).
func (m *Metrics) RegisterL4Splice(read func() SpliceCounters) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&spliceCollector{
		read: read,
		events: prometheus.NewDesc("rustygate_l4_kernel_splice_total",
			"L4 kernel splicing events: connections, fallbacks, overlaps, integrity_failures.", []string{"event"}, nil),
		bytes: prometheus.NewDesc("rustygate_l4_kernel_splice_bytes_total",
			"Bytes moved by L4 kernel splicing (redirected) and repeated bytes it dropped (duplicate).", []string{"kind"}, nil),
	})
}

type spliceCollector struct {
	read          func() SpliceCounters
	events, bytes *prometheus.Desc
}

func (c *spliceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.bytes
}

func (c *spliceCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.read()
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.Connections), "connections")
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.Fallbacks), "fallbacks")
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.Overlaps), "overlaps")
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n.IntegrityFailures), "integrity_failures")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(n.RedirectedBytes), "redirected")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(n.DuplicateBytes), "duplicate")
}
