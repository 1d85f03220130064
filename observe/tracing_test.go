package observe

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rustygate/rustygate/config"
)

// Trace context of a caller, as a client would send it.
const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	callerSampled = "00-" + callerTraceID + "-" + callerSpanID + "-01"
	callerDropped = "00-" + callerTraceID + "-" + callerSpanID + "-00"
)

// testRecorder is the sink of a test Tracer: it keeps every ended span,
// as the ReadOnlySpan the OTLP/gRPC exporter is given.
type testRecorder struct {
	mu     sync.Mutex
	origin *spanOrigin
	ended  []sdktrace.ReadOnlySpan
}

func (r *testRecorder) push(rec *spanRecord) {
	r.mu.Lock()
	r.ended = append(r.ended, r.origin.readOnly(rec))
	r.mu.Unlock()
	rec.recycle()
}

func (r *testRecorder) Shutdown(context.Context) error { return nil }

func (r *testRecorder) Ended() []sdktrace.ReadOnlySpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), r.ended...)
}

// testTracer returns a Tracer recording into a testRecorder.
func testTracer(t testing.TB, cfg config.Tracing) (*Tracer, *testRecorder) {
	t.Helper()
	if cfg.Sampler == "" {
		cfg.Sampler = config.SamplerParentBasedRatio
	}
	rec := &testRecorder{}
	tr, err := newTracer(cfg, "1.2.3", rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.origin = tr.origin
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, rec
}

// startServer starts a server span of a request with these fields.
func startServer(tr *Tracer, get func(string) []byte, method, route, target, clientIP, scheme, proto string) *Span {
	return tr.StartServer(nil, &ServerRequest{
		Method: []byte(method), Route: route, Target: []byte(target),
		ClientIP: clientIP, Scheme: scheme, Proto: proto,
	}, get)
}

// headers is a request header set keyed by lower-case name.
type headers map[string]string

func (h headers) get(name string) []byte {
	if v, ok := h[name]; ok {
		return []byte(v)
	}
	return nil
}

// byteHeaders is headers, without a conversion per lookup.
type byteHeaders map[string][]byte

func (h byteHeaders) get(name string) []byte { return h[name] }

// injected collects what Inject writes.
type injected map[string]string

func (h injected) set(name, value string) { h[name] = value }

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[string]any) {
	t.Helper()
	m := attrMap(got)
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s: attribute %s = %#v, want %#v", what, k, m[k], v)
		}
	}
	for k := range m {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected attribute %s = %#v", what, k, m[k])
		}
	}
}

// spanNamed returns the ended spans named name.
func spansNamed(rec *testRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func TestTracerDisabledIsNil(t *testing.T) {
	tr, err := NewTracer(context.Background(), config.Tracing{Enabled: false, Protocol: "bogus"}, "v")
	if tr != nil || err != nil {
		t.Fatalf("disabled tracing: %v, %v", tr, err)
	}
	s := startServer(tr, headers{"traceparent": callerSampled}.get, "GET", "/api", "/api", "127.0.0.1", "http", "HTTP/1.1")
	if s != nil {
		t.Fatal("nil tracer started a span")
	}
	a := s.StartAttempt("http://b:1", 0, []byte("GET"))
	if a != nil {
		t.Fatal("nil span started an attempt")
	}
	out := injected{}
	a.Inject(out.set)
	if len(out) != 0 {
		t.Errorf("nil span injected %v", out)
	}
	a.End(200, "")
	s.End(500, "x")
	if _, ok := s.TraceID(); ok {
		t.Error("nil span has a trace id")
	}
	if _, ok := s.SpanID(); ok {
		t.Error("nil span has a span id")
	}
	if got := s.AppendTraceID([]byte("x")); string(got) != "x" {
		t.Errorf("AppendTraceID = %q", got)
	}
	if got := s.AppendSpanID(nil); len(got) != 0 {
		t.Errorf("AppendSpanID = %q", got)
	}
	if s.Context() == nil {
		t.Error("nil span has a nil context")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if allocs := traceAllocs(tr, getNone); allocs != 0 {
		t.Errorf("disabled tracing allocates %v per request", allocs)
	}
}

// traceAllocs returns the allocations of a traced request as the proxy
// makes it: a server span in reused storage, an attempt, its headers,
// the access log's trace id.
func traceAllocs(tr *Tracer, get func(string) []byte) float64 {
	var out [32]byte
	var head [256]byte
	var mem Span
	req := ServerRequest{
		Method: []byte("GET"), Target: []byte("/api/x?q=1"), Route: "/api",
		ClientIP: "127.0.0.1", Scheme: "http", Proto: "HTTP/1.1",
	}
	return testing.AllocsPerRun(1000, func() {
		s := tr.StartServer(&mem, &req, get)
		a := s.StartAttempt("http://b:1", 0, req.Method)
		_ = a.AppendHeaders(head[:0])
		_ = s.AppendTraceID(out[:0])
		a.End(200, "")
		s.End(200, "")
	})
}

// A sampled request allocates nothing once the span storage and the
// record pool are warm, with or without a caller's traceparent.
func TestTracerAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	tr, err := newTracer(config.Tracing{Ratio: 1}, "", discardSink{})
	if err != nil {
		t.Fatal(err)
	}
	for name, get := range map[string]func(string) []byte{
		"root": getNone, "traceparent": byteHeaders{"traceparent": []byte(callerSampled), "host": []byte("h:1"), "user-agent": []byte("ua")}.get,
	} {
		if n := traceAllocs(tr, get); n != 0 {
			t.Errorf("%s: a traced request allocates %v", name, n)
		}
	}
}

func TestTracerSpanTree(t *testing.T) {
	tr, rec := testTracer(t, config.Tracing{Enabled: true, Ratio: 1, ServiceName: "edge"})
	in := headers{"host": "gw.example.com:8080", "user-agent": "curl/8"}
	s := startServer(tr, in.get, "GET", "/api/test", "/api/test/x?q=1", "10.1.2.3", "http", "HTTP/1.1")
	a0 := s.StartAttempt("http://127.0.0.1:8001", 0, []byte("GET"))
	a0.End(0, "connect")
	a1 := s.StartAttempt("http://backend.internal/base", 1, []byte("GET"))
	a1.End(200, "")
	s.End(200, "")

	if n := len(rec.Ended()); n != 3 {
		t.Fatalf("%d spans ended, want 3", n)
	}
	servers := spansNamed(rec, "GET /api/test")
	if len(servers) != 1 {
		t.Fatalf("no single server span in %v", rec.Ended())
	}
	srv := servers[0]
	if srv.SpanKind() != trace.SpanKindServer || srv.Parent().IsValid() {
		t.Errorf("server span kind %v, parent %v", srv.SpanKind(), srv.Parent())
	}
	checkAttrs(t, "server", srv.Attributes(), map[string]any{
		"http.request.method":       "GET",
		"http.route":                "/api/test",
		"url.path":                  "/api/test/x",
		"url.scheme":                "http",
		"server.address":            "gw.example.com",
		"server.port":               int64(8080),
		"client.address":            "10.1.2.3",
		"network.protocol.version":  "1.1",
		"user_agent.original":       "curl/8",
		"http.response.status_code": int64(200),
	})
	if srv.Status().Code != codes.Unset {
		t.Errorf("server status %v", srv.Status())
	}
	res := attrMap(srv.Resource().Attributes())
	if res["service.name"] != "edge" || res["service.version"] != "1.2.3" {
		t.Errorf("resource %v", res)
	}
	if got := srv.InstrumentationScope().Name; got != instrumentationName {
		t.Errorf("scope %q", got)
	}

	attempts := spansNamed(rec, "proxy_request")
	if len(attempts) != 2 {
		t.Fatalf("%d proxy_request spans, want 2", len(attempts))
	}
	for _, a := range attempts {
		if a.SpanKind() != trace.SpanKindClient {
			t.Errorf("attempt kind %v", a.SpanKind())
		}
		if a.Parent().SpanID() != srv.SpanContext().SpanID() || a.SpanContext().TraceID() != srv.SpanContext().TraceID() {
			t.Errorf("attempt parent %v, server %v", a.Parent(), srv.SpanContext())
		}
	}
	checkAttrs(t, "attempt 0", attempts[0].Attributes(), map[string]any{
		"http.request.method": "GET",
		"server.address":      "127.0.0.1",
		"server.port":         int64(8001),
		"url.full":            "http://127.0.0.1:8001",
		"rustygate.backend":   "http://127.0.0.1:8001",
		"rustygate.route":     "/api/test",
		"error.type":          "connect",
	})
	if st := attempts[0].Status(); st.Code != codes.Error || st.Description != "connect" {
		t.Errorf("failed attempt status %+v", st)
	}
	checkAttrs(t, "attempt 1", attempts[1].Attributes(), map[string]any{
		"http.request.method":       "GET",
		"server.address":            "backend.internal",
		"server.port":               int64(80),
		"url.full":                  "http://backend.internal/base",
		"http.request.resend_count": int64(1),
		"rustygate.backend":         "http://backend.internal/base",
		"rustygate.route":           "/api/test",
		"http.response.status_code": int64(200),
	})
	if st := attempts[1].Status(); st.Code != codes.Unset {
		t.Errorf("good attempt status %+v", st)
	}

	// The access log ids are those of the server span.
	id, ok := s.TraceID()
	if !ok || id != srv.SpanContext().TraceID() {
		t.Errorf("TraceID = %x, %v", id, ok)
	}
	sid, ok := s.SpanID()
	if !ok || sid != srv.SpanContext().SpanID() {
		t.Errorf("SpanID = %x, %v", sid, ok)
	}
	if got, want := string(s.AppendTraceID([]byte("t="))), "t="+srv.SpanContext().TraceID().String(); got != want {
		t.Errorf("AppendTraceID = %q, want %q", got, want)
	}
	if got, want := string(s.AppendSpanID(nil)), srv.SpanContext().SpanID().String(); got != want {
		t.Errorf("AppendSpanID = %q, want %q", got, want)
	}
}

func TestTracerNoRouteAndOddMethod(t *testing.T) {
	tr, rec := testTracer(t, config.Tracing{Enabled: true, Ratio: 1})
	s := startServer(tr, nil, "PURGE", "", "http://h/x?y", "::1", "", "HTTP/2.0")
	s.StartAttempt("https://[::1]/", 0, []byte("PURGE")).End(503, "")
	s.End(404, "")
	srv := spansNamed(rec, "HTTP")
	if len(srv) != 1 {
		t.Fatalf("spans %v", rec.Ended())
	}
	checkAttrs(t, "server", srv[0].Attributes(), map[string]any{
		"http.request.method":          "_OTHER",
		"http.request.method_original": "PURGE",
		"url.path":                     "/x",
		"client.address":               "::1",
		"network.protocol.version":     "2",
		"http.response.status_code":    int64(404),
	})
	if srv[0].Status().Code != codes.Unset {
		t.Error("a 404 is not a server error")
	}
	a := spansNamed(rec, "proxy_request")[0]
	checkAttrs(t, "attempt", a.Attributes(), map[string]any{
		"http.request.method":          "_OTHER",
		"http.request.method_original": "PURGE",
		"server.address":               "::1",
		"server.port":                  int64(443),
		"url.full":                     "https://[::1]/",
		"rustygate.backend":            "https://[::1]/",
		"http.response.status_code":    int64(503),
		"error.type":                   "503",
	})
}

func TestTracerEndStatus(t *testing.T) {
	cases := []struct {
		client  bool
		status  int
		errMsg  string
		errType string // "" when not an error
	}{
		{false, 200, "", ""},
		{false, 429, "rate limited", ""},
		{false, 500, "", "500"},
		{false, 504, "backend timeout", "backend timeout"},
		{false, 0, "client closed", "client closed"},
		{false, 0, "", ""},
		{true, 200, "", ""},
		{true, 404, "", "404"},
		{true, 0, "timeout", "timeout"},
		{true, 502, "reset", "reset"},
	}
	for _, c := range cases {
		tr, rec := testTracer(t, config.Tracing{Enabled: true, Ratio: 1})
		s := startServer(tr, nil, "GET", "/r", "/r", "", "http", "HTTP/1.1")
		if c.client {
			s.StartAttempt("http://b:1", 0, []byte("GET")).End(c.status, c.errMsg)
		} else {
			s.End(c.status, c.errMsg)
		}
		sp := rec.Ended()[0]
		m := attrMap(sp.Attributes())
		if c.status > 0 && m["http.response.status_code"] != int64(c.status) {
			t.Errorf("%+v: status code attribute %v", c, m["http.response.status_code"])
		}
		if c.status == 0 && m["http.response.status_code"] != nil {
			t.Errorf("%+v: status code without a response", c)
		}
		if c.errType == "" {
			if sp.Status().Code != codes.Unset || m["error.type"] != nil {
				t.Errorf("%+v: status %+v, error.type %v; want no error", c, sp.Status(), m["error.type"])
			}
			continue
		}
		if sp.Status().Code != codes.Error || sp.Status().Description != c.errMsg || m["error.type"] != c.errType {
			t.Errorf("%+v: status %+v, error.type %v", c, sp.Status(), m["error.type"])
		}
	}
}

func TestTracerPropagation(t *testing.T) {
	tr, rec := testTracer(t, config.Tracing{Enabled: true, Ratio: 1})
	in := headers{
		"traceparent": callerSampled,
		"tracestate":  "vendor=abc",
		"baggage":     "tenant=acme,plan=gold",
	}
	s := startServer(tr, in.get, "POST", "/api", "/api", "", "http", "HTTP/1.1")
	a := s.StartAttempt("http://b:1", 0, []byte("POST"))
	out := injected{}
	a.Inject(out.set)
	a.End(201, "")
	s.End(201, "")

	srv := spansNamed(rec, "POST /api")[0]
	if got := srv.SpanContext().TraceID().String(); got != callerTraceID {
		t.Errorf("server trace id %s, want the caller's %s", got, callerTraceID)
	}
	if !srv.Parent().IsRemote() || srv.Parent().SpanID().String() != callerSpanID {
		t.Errorf("server parent %v, want the caller's span %s", srv.Parent(), callerSpanID)
	}
	att := spansNamed(rec, "proxy_request")[0]
	want := "00-" + callerTraceID + "-" + att.SpanContext().SpanID().String() + "-01"
	if out["traceparent"] != want {
		t.Errorf("injected traceparent %q, want %q", out["traceparent"], want)
	}
	if out["tracestate"] != "vendor=abc" {
		t.Errorf("injected tracestate %q", out["tracestate"])
	}
	if b := out["baggage"]; !strings.Contains(b, "tenant=acme") || !strings.Contains(b, "plan=gold") {
		t.Errorf("injected baggage %q", b)
	}
	if len(out) != 3 {
		t.Errorf("injected %v", out)
	}
	if got := string(s.AppendTraceID(nil)); got != callerTraceID {
		t.Errorf("access log trace id %q", got)
	}

	// Without incoming context: a fresh trace, and only traceparent.
	out = injected{}
	s = startServer(tr, headers{}.get, "GET", "/api", "/api", "", "http", "HTTP/1.1")
	s.Inject(out.set)
	s.End(200, "")
	id, _ := s.TraceID()
	sid, _ := s.SpanID()
	if want := "00-" + hex.EncodeToString(id[:]) + "-" + hex.EncodeToString(sid[:]) + "-01"; out["traceparent"] != want || len(out) != 1 {
		t.Errorf("injected %v, want traceparent %q only", out, want)
	}
	if id == [16]byte{} || hex.EncodeToString(id[:]) == callerTraceID {
		t.Errorf("fresh trace id %x", id)
	}

	// A malformed traceparent is ignored: a new root.
	s = startServer(tr, headers{"traceparent": "00-zz-yy-01"}.get, "GET", "/api", "/api", "", "http", "HTTP/1.1")
	s.End(200, "")
	if p := rec.Ended()[len(rec.Ended())-1].Parent(); p.IsValid() {
		t.Errorf("malformed traceparent gave parent %v", p)
	}
}

func TestTracerSampling(t *testing.T) {
	run := func(t *testing.T, cfg config.Tracing, in headers) (recorded int, s *Span, out injected) {
		tr, rec := testTracer(t, cfg)
		s = startServer(tr, in.get, "GET", "/api", "/api", "", "http", "HTTP/1.1")
		a := s.StartAttempt("http://b:1", 0, []byte("GET"))
		out = injected{}
		a.Inject(out.set)
		a.End(200, "")
		s.End(200, "")
		return len(rec.Ended()), s, out
	}

	t.Run("ratio 0 drops new traces", func(t *testing.T) {
		n, s, out := run(t, config.Tracing{Ratio: 0}, headers{})
		if n != 0 {
			t.Errorf("%d spans recorded", n)
		}
		if _, ok := s.TraceID(); ok {
			t.Error("unsampled span has a trace id for the log")
		}
		if got := s.AppendTraceID([]byte{}); len(got) != 0 {
			t.Errorf("AppendTraceID = %q", got)
		}
		// The trace id still travels, flagged unsampled.
		if tp := out["traceparent"]; len(tp) != 55 || !strings.HasSuffix(tp, "-00") {
			t.Errorf("traceparent %q", tp)
		}
	})
	t.Run("parentbased honours a sampled caller", func(t *testing.T) {
		n, s, out := run(t, config.Tracing{Ratio: 0}, headers{"traceparent": callerSampled})
		if n != 2 {
			t.Errorf("%d spans recorded, want 2", n)
		}
		if got := string(s.AppendTraceID(nil)); got != callerTraceID {
			t.Errorf("trace id %q", got)
		}
		if !strings.HasPrefix(out["traceparent"], "00-"+callerTraceID+"-") || !strings.HasSuffix(out["traceparent"], "-01") {
			t.Errorf("traceparent %q", out["traceparent"])
		}
	})
	t.Run("parentbased honours an unsampled caller", func(t *testing.T) {
		n, _, out := run(t, config.Tracing{Ratio: 1}, headers{"traceparent": callerDropped})
		if n != 0 {
			t.Errorf("%d spans recorded, want 0", n)
		}
		if !strings.HasPrefix(out["traceparent"], "00-"+callerTraceID+"-") || !strings.HasSuffix(out["traceparent"], "-00") {
			t.Errorf("traceparent %q", out["traceparent"])
		}
	})
	t.Run("traceidratio ignores the caller", func(t *testing.T) {
		n, _, _ := run(t, config.Tracing{Sampler: config.SamplerRatio, Ratio: 0}, headers{"traceparent": callerSampled})
		if n != 0 {
			t.Errorf("%d spans recorded, want 0", n)
		}
	})
	t.Run("always_off", func(t *testing.T) {
		n, _, _ := run(t, config.Tracing{Sampler: config.SamplerAlwaysOff, Ratio: 1}, headers{"traceparent": callerSampled})
		if n != 0 {
			t.Errorf("%d spans recorded, want 0", n)
		}
	})
	t.Run("always_on", func(t *testing.T) {
		n, _, _ := run(t, config.Tracing{Sampler: config.SamplerAlwaysOn, Ratio: 0}, headers{"traceparent": callerDropped})
		if n != 2 {
			t.Errorf("%d spans recorded, want 2", n)
		}
	})
}

func TestTracerBadConfig(t *testing.T) {
	if _, err := newTracer(config.Tracing{Sampler: "sometimes"}, "", &testRecorder{}); err == nil {
		t.Error("unknown sampler accepted")
	}
	if _, err := NewTracer(context.Background(), config.Tracing{Enabled: true, Protocol: "thrift"}, ""); err == nil {
		t.Error("unknown protocol accepted")
	}
	// Checked before an exporter is built (nothing to leak).
	if _, err := NewTracer(context.Background(), config.Tracing{Enabled: true, Sampler: "sometimes"}, ""); err == nil {
		t.Error("unknown sampler accepted")
	}
}

func TestTraceHelpers(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/a/b?x=1", "/a/b"}, {"/a#f", "/a"}, {"/", "/"}, {"*", "*"}, {"", ""},
		{"http://h:1/p?q", "/p"}, {"http://h", "/"}, {"h:443", "h:443"},
	} {
		if got := targetPath(c.in); got != c.want {
			t.Errorf("targetPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		hp, scheme string
		host       string
		port       int
	}{
		{"example.com", "http", "example.com", 80},
		{"example.com", "HTTPS", "example.com", 443},
		{"example.com", "", "example.com", 0},
		{"example.com:8080", "https", "example.com", 8080},
		{"[::1]:9", "http", "::1", 9},
		{"[::1]", "https", "::1", 443},
		{"::1", "http", "::1", 80},
		{"h:99999", "http", "h", 0},
		{"h:x", "http", "h", 0},
		{"", "http", "", 0},
	} {
		if h, p := splitHostPort(c.hp, c.scheme); h != c.host || p != c.port {
			t.Errorf("splitHostPort(%q, %q) = %q, %d", c.hp, c.scheme, h, p)
		}
	}
	for _, c := range []struct{ in, scheme, hp string }{
		{"http://a:1/base", "http", "a:1"}, {"https://a", "https", "a"}, {"a:1", "", "a:1"}, {"http://a?x", "http", "a"},
	} {
		if s, hp := splitURL(c.in); s != c.scheme || hp != c.hp {
			t.Errorf("splitURL(%q) = %q, %q", c.in, s, hp)
		}
	}
	for in, want := range map[string]string{"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2.0": "2", "HTTP/2": "2", "HTTP/3": "3", "": "", "SPDY/3": ""} {
		if got := protocolVersion(in); got != want {
			t.Errorf("protocolVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccessTraceIDs(t *testing.T) {
	tr, _ := testTracer(t, config.Tracing{Enabled: true, Ratio: 1})
	s := startServer(tr, headers{"traceparent": callerSampled}.get, "GET", "/api/test", "/api/test", "", "http", "HTTP/1.1")
	defer s.End(200, "")
	var tb [32]byte
	var sb [16]byte
	e := sampleEntry()
	e.TraceID = s.AppendTraceID(tb[:0])
	e.SpanID = s.AppendSpanID(sb[:0])
	if &e.TraceID[0] != &tb[0] || &e.SpanID[0] != &sb[0] {
		t.Error("ids were not appended in place")
	}
	sid, _ := s.SpanID()

	var buf bytes.Buffer
	l, err := newLogger(&buf, LogOptions{Access: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l.Access(e)
	e2 := sampleEntry() // no ids: no fields
	l.Access(e2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["trace_id"] != callerTraceID || m["span_id"] != hex.EncodeToString(sid[:]) {
		t.Errorf("access line %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") || strings.Contains(lines[1], "span_id") {
		t.Errorf("line without ids has id fields: %s", lines[1])
	}

	text := string(appendAccessText(nil, e))
	if !strings.Contains(text, " request_id=0123456789abcdef0123456789abcdef trace_id="+callerTraceID+" span_id="+hex.EncodeToString(sid[:])+" client_ip=") {
		t.Errorf("text line %s", text)
	}

	if !raceEnabled {
		var dst [64]byte
		if n := testing.AllocsPerRun(100, func() {
			_ = s.AppendTraceID(dst[:0])
			_ = s.AppendSpanID(dst[:0])
		}); n != 0 {
			t.Errorf("AppendTraceID/AppendSpanID allocate %v", n)
		}
		l, _ := newLogger(io.Discard, LogOptions{Access: true}, time.Hour)
		defer l.Close()
		if n := testing.AllocsPerRun(100, func() { l.Access(e) }); n != 0 {
			t.Errorf("access line with trace ids allocates %v", n)
		}
	}
}

// fakeCollector is an OTLP/gRPC trace collector.
type fakeCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	reqs  []*collectortrace.ExportTraceServiceRequest
	token []string
}

func (c *fakeCollector) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	c.token = append(c.token, md.Get("x-token")...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// exportedSpans lists the span names and the service.name of each
// resource in an export request.
func exportedSpans(reqs []*collectortrace.ExportTraceServiceRequest) (names []string, services []string) {
	for _, r := range reqs {
		for _, rs := range r.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					services = append(services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					names = append(names, sp.GetName())
				}
			}
		}
	}
	return names, services
}

// traceOneRequest records a request with one attempt on tr.
func traceOneRequest(tr *Tracer) {
	s := startServer(tr, headers{}.get, "GET", "/api/test", "/api/test", "127.0.0.1", "http", "HTTP/1.1")
	s.StartAttempt("http://127.0.0.1:8001", 0, []byte("GET")).End(200, "")
	s.End(200, "")
}

func TestNewTracerExportsGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &fakeCollector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, col)
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	defer func() { srv.Stop(); <-served }()

	for _, ep := range []string{ln.Addr().String(), "http://" + ln.Addr().String()} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tr, err := NewTracer(ctx, config.Tracing{
			Enabled: true, Endpoint: ep, Protocol: config.TracingGRPC, Sampler: config.SamplerParentBasedRatio,
			Ratio: 1, ServiceName: "rg-test", Headers: map[string]string{"X-Token": "s3cret"},
		}, "9.9.9")
		if err != nil || tr == nil {
			t.Fatalf("%s: NewTracer: %v, %v", ep, tr, err)
		}
		traceOneRequest(tr)
		if err := tr.Shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown: %v", ep, err)
		}
		cancel()
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	names, services := exportedSpans(col.reqs)
	if strings.Join(names, ",") != "proxy_request,GET /api/test,proxy_request,GET /api/test" {
		t.Errorf("exported spans %q", names)
	}
	if len(services) != 2 || services[0] != "rg-test" || services[1] != "rg-test" {
		t.Errorf("services %q", services)
	}
	if len(col.token) != 2 || col.token[0] != "s3cret" {
		t.Errorf("x-token metadata %q", col.token)
	}
}

func TestNewTracerExportsHTTP(t *testing.T) {
	type got struct {
		path, ctype, token string
		req                *collectortrace.ExportTraceServiceRequest
	}
	var mu sync.Mutex
	var reqs []got
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("export body: %v", err)
		}
		mu.Lock()
		reqs = append(reqs, got{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("X-Token"), req})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	hostport := strings.TrimPrefix(srv.URL, "http://")

	endpoints := map[string]string{
		hostport:                   "/v1/traces",
		srv.URL:                    "/v1/traces",
		srv.URL + "/":              "/v1/traces",
		srv.URL + "/otlp/v1/spans": "/otlp/v1/spans",
	}
	for ep, wantPath := range endpoints {
		mu.Lock()
		reqs = nil
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tr, err := NewTracer(ctx, config.Tracing{
			Enabled: true, Endpoint: ep, Protocol: config.TracingHTTP, Ratio: 1,
			Headers: map[string]string{"X-Token": "t0k"},
		}, "")
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
		traceOneRequest(tr)
		if err := tr.Shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown: %v", ep, err)
		}
		cancel()
		mu.Lock()
		if len(reqs) != 1 {
			t.Errorf("%s: %d exports", ep, len(reqs))
		} else {
			r := reqs[0]
			names, services := exportedSpans([]*collectortrace.ExportTraceServiceRequest{r.req})
			if r.path != wantPath || r.ctype != "application/x-protobuf" || r.token != "t0k" ||
				len(names) != 2 || len(services) != 1 || services[0] != "rustygate" {
				t.Errorf("%s: export to %s (%s, token %q): spans %q, services %q", ep, r.path, r.ctype, r.token, names, services)
			}
		}
		mu.Unlock()
	}
}

// getNone is a header lookup that finds nothing.
func getNone(string) []byte { return nil }

func setNone(string, string) {}

// discardSink recycles the records of the ended spans.
type discardSink struct{}

func (discardSink) push(r *spanRecord)             { r.recycle() }
func (discardSink) Shutdown(context.Context) error { return nil }

func BenchmarkStartEnd(b *testing.B) {
	bench := func(b *testing.B, tr *Tracer, get func(string) []byte) {
		var tb [32]byte
		var head [256]byte
		method := []byte("GET")
		b.ReportAllocs()
		for b.Loop() {
			s := startServer(tr, get, "GET", "/api/test", "/api/test?q=1", "127.0.0.1", "http", "HTTP/1.1")
			a := s.StartAttempt("http://127.0.0.1:8001", 0, method)
			_ = a.AppendHeaders(head[:0])
			a.End(200, "")
			_ = s.AppendTraceID(tb[:0])
			s.End(200, "")
		}
	}
	enabled := func(b *testing.B, sampler string, ratio float64) *Tracer {
		tr, err := newTracer(config.Tracing{Sampler: sampler, Ratio: ratio}, "bench", discardSink{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Shutdown(context.Background()) })
		return tr
	}
	b.Run("disabled", func(b *testing.B) { bench(b, nil, getNone) })
	b.Run("ratio=1", func(b *testing.B) {
		bench(b, enabled(b, config.SamplerParentBasedRatio, 1), getNone)
	})
	b.Run("ratio=1/traceparent", func(b *testing.B) {
		bench(b, enabled(b, config.SamplerParentBasedRatio, 1), headers{"traceparent": callerSampled}.get)
	})
	b.Run("ratio=0", func(b *testing.B) {
		bench(b, enabled(b, config.SamplerParentBasedRatio, 0), getNone)
	})
}

func TestLogTracingErrors(t *testing.T) {
	var buf bytes.Buffer
	LogTracingErrors(slog.New(slog.NewJSONHandler(&buf, nil)))
	defer LogTracingErrors(slog.New(slog.DiscardHandler))
	LogTracingErrors(nil) // ignored
	otel.Handle(errors.New("traces export: connection refused"))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("log %q: %v", buf.String(), err)
	}
	if m["level"] != "WARN" || m["msg"] != "tracing error" || m["error"] != "traces export: connection refused" {
		t.Errorf("log line %v", m)
	}
}
