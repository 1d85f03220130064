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
