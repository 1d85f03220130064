//go:build linux

package main

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the gateway side when the test binary is started as the
// child (see Run).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serveArg {
		os.Exit(serveChild(os.Args[2:]))
	}
	goleak.VerifyTestMain(m)
}

// TestIdleConnectionsHoldNoGoroutine: on the event loops, 300 idle
// keep-alive connections add no goroutine to the gateway, and they are
// still served afterwards (Run checks a sample).
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	res, err := Run(Options{Levels: []int{0, 300}, Loops: "2", Timeout: time.Minute, Settle: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Table())
	if d := res.Steps[1].Goroutines - res.Steps[0].Goroutines; d > 10 {
		t.Errorf("300 idle connections added %d goroutines, want none (parked)", d)
	}
}

// BenchmarkIdleConnMemory reports what an idle keep-alive connection
// costs the gateway (RSS, RSS without the free pages a burst of activity
// left, and Go heap+stacks per connection, at 5,000),
// on the event loops and, as the baseline, with a goroutine per
// connection, and their ratio.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 5000
	var rss, freed, goMem [2]float64
	for range b.N {
		for i, loops := range []string{"off", "auto"} {
			res, err := Run(Options{Levels: []int{0, n}, Loops: loops, Timeout: 2 * time.Minute, Settle: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			rss[i], freed[i], goMem[i] = res.PerConn(1)
		}
	}
	b.ReportMetric(rss[1], "rss-B/conn")
	b.ReportMetric(freed[1], "rss-freed-B/conn")
	b.ReportMetric(goMem[1], "go-B/conn")
	b.ReportMetric(rss[0], "rss-B/conn-goroutines")
	b.ReportMetric(rss[1]/rss[0], "rss-ratio")
}
