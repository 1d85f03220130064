package observe

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/rustygate/rustygate/config"
)

// otlpSink is an OTLP/HTTP receiver counting the spans it is sent;
// status is its answer, and every export first waits for gate to be
// closed, when set.
type otlpSink struct {
	srv     *httptest.Server
	mu      sync.Mutex
	spans   int
	exports int
	status  int
	gate    chan struct{}
}

func newOTLPSink(t *testing.T, status int, gate chan struct{}) *otlpSink {
	s := &otlpSink{status: status, gate: gate}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.gate != nil {
			<-s.gate
		}
		body, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("export body: %v", err)
		}
		names, _ := exportedSpans([]*collectortrace.ExportTraceServiceRequest{req})
		s.mu.Lock()
		s.spans += len(names)
		s.exports++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(s.status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *otlpSink) counts() (spans, exports int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spans, s.exports
}

// sinkTracer is a tracer exporting to s over OTLP/HTTP with the given
// queue, with its counters registered on a Metrics.
func sinkTracer(t *testing.T, s *otlpSink, queue, batch int, timeout time.Duration) (*Tracer, *Metrics) {
	t.Helper()
	tr, err := NewTracer(context.Background(), config.Tracing{
		Enabled: true, Endpoint: s.srv.URL, Protocol: config.TracingHTTP, Ratio: 1,
		QueueSize: queue, BatchSize: batch, BatchTimeout: config.Duration(timeout),
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	m.RegisterTracing(tr.SpanCounters)
	return tr, m
}

func spanMetric(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if len(labels) == 0 || (len(mt.GetLabel()) == 1 && mt.GetLabel()[0].GetValue() == labels[0]) {
				return mt.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s %v", name, labels)
	return 0
}

// Full batches are sent as soon as they are full, a partial one after
// batch_timeout, and the spans sent are counted.
func TestSpanQueueBatches(t *testing.T) {
	sink := newOTLPSink(t, http.StatusOK, nil)
	tr, m := sinkTracer(t, sink, 100, 10, 200*time.Millisecond)
	defer tr.Shutdown(context.Background())
	for range 25 {
		traceOneRequest(tr) // two spans
	}
	startServer(tr, nil, "GET", "/", "/", "", "http", "HTTP/1.1").End(200, "") // one more
	deadline := time.Now().Add(10 * time.Second)
	for {
		if spans, _ := sink.counts(); spans == 51 {
			break
		}
		if time.Now().After(deadline) {
			spans, exports := sink.counts()
			t.Fatalf("the receiver got %d spans in %d exports, want 51", spans, exports)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, exports := sink.counts(); exports != 6 {
		t.Errorf("%d exports, want 5 batches of 10 and one of 1", exports)
	}
	if got := spanMetric(t, m, "rustygate_tracing_spans_exported_total"); got != 51 {
		t.Errorf("exported_total %v, want 51", got)
	}
	if got := spanMetric(t, m, "rustygate_tracing_spans_dropped_total", "queue_full"); got != 0 {
		t.Errorf("dropped_total{queue_full} %v, want 0", got)
	}
}

// While the receiver stalls, requests do not wait: the spans beyond the
// queue (and the batch being sent) are dropped and counted.
func TestSpanQueueDropsWhenFull(t *testing.T) {
	gate := make(chan struct{})
	sink := newOTLPSink(t, http.StatusOK, gate)
	tr, m := sinkTracer(t, sink, 20, 10, time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			traceOneRequest(tr) // 100 spans
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("requests waited for the stalled exporter")
	}
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c := tr.SpanCounters()
	// Taken at most: the queue (20), a batch in each export (4 x 10) and
	// one waiting for an export (10).
	if c.Exported+c.Dropped != 100 || c.Dropped < 30 || c.Failed != 0 {
		t.Errorf("counters %+v: want exported + dropped = 100, at least 30 dropped", c)
	}
	if spans, _ := sink.counts(); uint64(spans) != c.Exported {
		t.Errorf("the receiver got %d spans, %d counted as exported", spans, c.Exported)
	}
	if got := spanMetric(t, m, "rustygate_tracing_spans_dropped_total", "queue_full"); got != float64(c.Dropped) {
		t.Errorf("dropped_total{queue_full} %v, want %d", got, c.Dropped)
	}
}

// The spans of a refused export are counted as failed.
func TestSpanQueueExportFailed(t *testing.T) {
	LogTracingErrors(slog.New(slog.DiscardHandler))
	sink := newOTLPSink(t, http.StatusBadRequest, nil)
	tr, m := sinkTracer(t, sink, 100, 10, time.Minute)
	for range 5 {
		traceOneRequest(tr)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := tr.SpanCounters(); c.Failed != 10 || c.Exported != 0 {
		t.Errorf("counters %+v, want 10 failed", c)
	}
	if got := spanMetric(t, m, "rustygate_tracing_spans_dropped_total", "export_failed"); got != 10 {
		t.Errorf("dropped_total{export_failed} %v, want 10", got)
	}
}

// BenchmarkExport measures a traced request (a server and a client span,
// sampled) exported over OTLP/HTTP to a receiver that reads and discards
// the exports, through NewTracer's spanQueue (the defaults of
// tracing.queue_size, batch_size and batch_timeout) and
// otlpHTTPExporter. cpu-ns/op is the process's CPU time (user + system,
// every goroutine: the exporter's included) per request, which the
// machine's other load does not inflate as it does ns/op; dropped/op is
// the share of spans not exported.
func BenchmarkExport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(srv.Close)
	cfg := config.Tracing{Enabled: true, Endpoint: srv.URL, Protocol: config.TracingHTTP, Ratio: 1}
	run := func(b *testing.B, tr *Tracer, sent func() uint64) {
		b.ReportAllocs()
		start := cpuTime()
		for b.Loop() {
			traceOneRequest(tr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		if sent != nil {
			b.ReportMetric(1-float64(sent())/float64(2*b.N), "dropped/op")
		}
	}
	b.Run("rustygate", func(b *testing.B) {
		tr, err := NewTracer(context.Background(), cfg, "bench")
		if err != nil {
			b.Fatal(err)
		}
		run(b, tr, func() uint64 { return tr.SpanCounters().Exported })
	})
}

// cpuTime returns the CPU time the process has used, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
