package observe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/rustygate/rustygate/config"
)

// varietySpans records spans with every kind of content the OTLP
// encoding has: attributes of every type, events, links, statuses, a
// remote parent, trace state, two scopes (one with a version, attributes
// and a schema URL) and a resource with a schema URL.
func varietySpans(t *testing.T) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "rg"), attribute.Int("pid", 42))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	a := tp.Tracer("scope-a", trace.WithInstrumentationVersion("1.2.3"),
		trace.WithInstrumentationAttributes(attribute.Bool("x", true)), trace.WithSchemaURL("https://example.com/s"))
	b := tp.Tracer("scope-b")

	ts, err := trace.ParseTraceState("vendor=v1,other=o2")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled,
		TraceState: ts, Remote: true,
	})
	link := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, s1 := a.Start(ctx, "GET /api", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithLinks(trace.Link{SpanContext: link, Attributes: []attribute.KeyValue{attribute.String("l", "v")}}))
	s1.SetAttributes(
		attribute.String("s", "é\x00x"), attribute.String("", "empty key"), attribute.String("empty", ""),
		attribute.Bool("b", false), attribute.Int64("i", -7), attribute.Float64("f", 0.5),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.Int64Slice("is", []int64{1, -1}),
		attribute.Float64Slice("fs", []float64{}), attribute.StringSlice("ss", []string{"a", ""}),
	)
	s1.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 1)))
	s1.AddEvent("")
	_, s2 := b.Start(ctx, "proxy_request", trace.WithSpanKind(trace.SpanKindClient))
	s2.SetStatus(codes.Error, "connect_failure")
	s2.End()
	_, s3 := a.Start(context.Background(), "internal")
	s3.SetStatus(codes.Ok, "")
	s3.End()
	s1.End()
	return rec.Ended()
}

// The exporter's hand-written encoding decodes to the same message as the
// SDK's OTLP/HTTP exporter sends for the same spans.
func TestOTLPEncodingMatchesSDK(t *testing.T) {
	spans := varietySpans(t)
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
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	exp.Shutdown(context.Background())
	want := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(sdkBody, want); err != nil {
		t.Fatal(err)
	}
	got := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(appendTraceRequest(nil, spans), got); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("encodings differ\nours:\n%s\nSDK:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// A collector's refusal it may lift is retried; another one fails the
// export at once.
func TestOTLPHTTPExporterRetries(t *testing.T) {
	spans := varietySpans(t)
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
		exp, err := newExporter(context.Background(), config.Tracing{Endpoint: srv.URL, Protocol: config.TracingHTTP})
		if err != nil {
			t.Fatal(err)
		}
		err = exp.ExportSpans(context.Background(), spans)
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
