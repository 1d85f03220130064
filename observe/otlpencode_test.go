package observe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/rustygate/rustygate/config"
)

// keepSink keeps the records of the ended spans.
type keepSink struct{ recs []*spanRecord }

func (k *keepSink) push(r *spanRecord)             { k.recs = append(k.recs, r) }
func (k *keepSink) Shutdown(context.Context) error { return nil }

// varietyRecords records spans with every kind of content a record has:
// a caller's context with trace state and baggage, a route or none, a
// method the conventions do not name, IPv6 addresses, a resend, failed
// and good attempts, server errors, a user agent and a host with a port.
func varietyRecords(t *testing.T) (*spanOrigin, []*spanRecord) {
	t.Helper()
	sink := &keepSink{}
	tr, err := newTracer(config.Tracing{Ratio: 1, ServiceName: "rg"}, "1.2.3", sink)
	if err != nil {
		t.Fatal(err)
	}
	in := headers{
		"traceparent": callerSampled, "tracestate": "vendor=v1,other=o2", "baggage": "k=v",
		"host": "gw.example.com:8080", "user-agent": "curl/8 é\x00" + strings.Repeat("u", 300),
	}
	s := startServer(tr, in.get, "GET", "/api", "/api/x?q=1", "10.0.0.1", "https", "HTTP/1.1")
	s.StartAttempt("http://127.0.0.1:8001", 0, []byte("GET")).End(0, "connect")
	s.StartAttempt("http://[::1]:9/base", 1, []byte("GET")).End(503, "")
	s.End(502, "bad gateway")
	s = startServer(tr, nil, "PURGE", "", "http://h/x", "::1", "", "HTTP/2.0")
	s.StartAttempt("https://b", 0, []byte("PURGE")).End(200, "")
	s.End(200, "")
	startServer(tr, headers{}.get, "POST", "/p", "/p", "", "http", "HTTP/1.0").End(500, "")
	if len(sink.recs) != 6 {
		t.Fatalf("%d records, want 6", len(sink.recs))
	}
	return tr.origin, sink.recs
}

// The exporter's hand-written encoding decodes to the same message as the
// SDK's OTLP/HTTP exporter sends for the same spans (the ReadOnlySpans
// the records stand for, as the OTLP/gRPC exporter is given them).
func TestOTLPEncodingMatchesSDK(t *testing.T) {
	origin, recs := varietyRecords(t)
	var sdkBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sdkBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	spans := make([]sdktrace.ReadOnlySpan, len(recs))
	for i, r := range recs {
		spans[i] = origin.readOnly(r)
	}
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	exp.Shutdown(context.Background())
	want := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(sdkBody, want); err != nil {
		t.Fatal(err)
	}
	enc := otlpEncoder{origin: origin}
	got := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(enc.appendRequest(nil, recs), got); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("encodings differ\nours:\n%s\nSDK:\n%s", prototext.Format(got), prototext.Format(want))
	}
	// The scratch storage reused for the next batch gives the same bytes.
	if again := enc.appendRequest(nil, recs); !proto.Equal(mustDecode(t, again), want) {
		t.Error("a second encoding differs")
	}
	if testing.AllocsPerRun(10, func() { enc.appendRequest(make([]byte, 0, 64<<10)[:0], recs) }) > 1 {
		t.Error("encoding a batch allocates")
	}
}

func mustDecode(t *testing.T, b []byte) *collectortrace.ExportTraceServiceRequest {
	t.Helper()
	m := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A collector's refusal it may lift is retried; another one fails the
// export at once.
func TestOTLPHTTPExporterRetries(t *testing.T) {
	origin, recs := varietyRecords(t)
	calls := 0
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls++
		if calls == 1 {
			w.WriteHeader(status)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		status, calls int
		ok            bool
	}{{http.StatusServiceUnavailable, 2, true}, {http.StatusBadRequest, 1, false}} {
		calls, status = 0, tc.status
		exp, err := newExporter(context.Background(), config.Tracing{Endpoint: srv.URL, Protocol: config.TracingHTTP}, origin)
		if err != nil {
			t.Fatal(err)
		}
		err = exp.exportRecords(context.Background(), recs)
		if (err == nil) != tc.ok || calls != tc.calls {
			t.Errorf("status %d: export error %v after %d calls, want ok=%v after %d", tc.status, err, calls, tc.ok, tc.calls)
		}
		exp.Shutdown(context.Background())
	}
}

func TestOTLPHTTPURL(t *testing.T) {
	for _, tc := range []struct {
		ep       string
		insecure bool
		want     string
	}{
		{"collector:4318", true, "http://collector:4318/v1/traces"},
		{"collector:4318", false, "https://collector:4318/v1/traces"},
		{"http://collector:4318", true, "http://collector:4318/v1/traces"},
		{"https://collector/", false, "https://collector/v1/traces"},
		{"http://collector:4318/otlp/spans", true, "http://collector:4318/otlp/spans"},
	} {
		if got := otlpHTTPURL(tc.ep, tc.insecure); got != tc.want {
			t.Errorf("%s (insecure %v): %s, want %s", tc.ep, tc.insecure, got, tc.want)
		}
	}
}

// BenchmarkOTLPEncode measures the encoding of a batch of 1024 spans (a
// server span and an attempt per request), reported per span in CPU time
// (see BenchmarkExport).
func BenchmarkOTLPEncode(b *testing.B) {
	sink := &keepSink{}
	tr, err := newTracer(config.Tracing{Ratio: 1}, "bench", sink)
	if err != nil {
		b.Fatal(err)
	}
	in := headers{"host": "gw.example.com", "user-agent": "wrk"}
	for range 512 {
		s := startServer(tr, in.get, "GET", "/", "/bench?q=1", "127.0.0.1", "http", "HTTP/1.1")
		s.StartAttempt("http://127.0.0.1:8001", 0, []byte("GET")).End(200, "")
		s.End(200, "")
	}
	enc := otlpEncoder{origin: tr.origin}
	var buf []byte
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		buf = enc.appendRequest(buf[:0], sink.recs)
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N*len(sink.recs)), "cpu-ns/span")
	b.ReportMetric(float64(len(buf))/float64(len(sink.recs)), "B/span")
}
