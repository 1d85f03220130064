package l7

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2BenchBatch is the number of streams a benchmark client keeps in
// flight on its connection (h2load's -m 10).
const h2BenchBatch = 10

// h2BatchClient returns a function that sends h2BenchBatch GETs at once on
// one prior-knowledge connection to addr and reads their responses.
func h2BatchClient(b *testing.B, addr string) func() {
	h := dialH2(b, addr)
	h.c.SetDeadline(time.Time{})
	if err := h.fr.WriteSettingsAck(); err != nil {
		b.Fatal(err)
	}
	if err := h.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		b.Fatal(err)
	}
	// Without the dynamic table every block is the same bytes.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.SetMaxDynamicTableSizeLimit(0)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/bench"}, {":authority", "gw.test"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	block := hb.Bytes()
	id := uint32(1)
	return func() {
		for range h2BenchBatch {
			err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
			if err != nil {
				b.Fatal(err)
			}
			id += 2
		}
		for done := 0; done < h2BenchBatch; {
			f, err := h.fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				if f.StreamEnded() {
					done++
				}
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				b.Fatalf("unexpected %v", f)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					h.fr.WriteSettingsAck()
				}
			}
		}
	}
}

// BenchmarkH2Front measures the HTTP/2 front of the fast engine against
// net/http's (engine: standard) in the same run: each operation is one
// batch of h2BenchBatch pipelined GETs on each, in front of rawBackend.
// It reports ns per request of both and their ratio (speedup > 1: the
// fast engine's front is faster).
func BenchmarkH2Front(b *testing.B) {
	be := rawBackend(b)
	route := "  - { path: /bench, backend: \"http://" + be + "\" }\n"
	fast := h2BatchClient(b, startGateway(b, "fast", route).addr)
	std := h2BatchClient(b, startGateway(b, "standard", route).addr)
	fast()
	std()
	var tf, ts time.Duration
	for b.Loop() {
		t0 := time.Now()
		fast()
		t1 := time.Now()
		std()
		tf += t1.Sub(t0)
		ts += time.Since(t1)
	}
	n := float64(b.N * h2BenchBatch)
	b.ReportMetric(float64(tf.Nanoseconds())/n, "fast-ns/req")
	b.ReportMetric(float64(ts.Nanoseconds())/n, "standard-ns/req")
	b.ReportMetric(float64(ts)/float64(tf), "speedup")
}
