package observe

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/rustygate/rustygate/config"
)

// AttemptSpanName is the name of the client span of one backend attempt.
const AttemptSpanName = "proxy_request"

// instrumentationName names the tracer that creates RustyGate's spans.
const instrumentationName = "github.com/rustygate/rustygate/observe"

// RustyGate's own span attributes.
const (
	attrBackend = attribute.Key("rustygate.backend")
	attrRoute   = attribute.Key("rustygate.route")
)

// Span start options of the two kinds of span.
var (
	serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// defaultOTLPPath is where OTLP/HTTP posts traces when the endpoint URL
// gives no path.
const defaultOTLPPath = "/v1/traces"

// Tracer creates the spans of proxied requests and exports them over OTLP
// in batches, from a bounded queue that a request never waits on (see
// spanQueue; the spans dropped when it is full are counted, see
// Metrics.RegisterTracing). A nil *Tracer is valid and traces nothing:
// its methods return nil spans, whose methods do nothing, so the proxy
// pays a nil check per call when tracing is off.
type Tracer struct {
	q      *spanQueue
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewTracer returns a Tracer exporting to cfg.Endpoint, or nil, nil when
// tracing is disabled. The exporter connects lazily: an unreachable
// collector is not an error here, its failed exports are reported to the
// OpenTelemetry error handler (see [LogTracingErrors]). Call Shutdown to
// flush the spans still buffered.
//
// The Tracer is the gateway's own: it does not install a global tracer
// provider or propagator.
func NewTracer(ctx context.Context, cfg config.Tracing, version string) (*Tracer, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	if _, err := newSampler(cfg.Sampler, cfg.Ratio); err != nil {
		return nil, err
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	q := newSpanQueue(exp, cfg.QueueSize, cfg.BatchSize, cfg.BatchTimeout.D())
	t, err := newTracer(cfg, version, q)
	if err != nil {
		q.Shutdown(ctx) // stops its goroutine and closes the exporter
		return nil, err
	}
	t.q = q
	return t, nil
}

// newTracer returns a Tracer whose spans go to sp, with cfg's sampler
// and service name.
func newTracer(cfg config.Tracing, version string, sp sdktrace.SpanProcessor) (*Tracer, error) {
	sampler, err := newSampler(cfg.Sampler, cfg.Ratio)
	if err != nil {
		return nil, err
	}
	service := cfg.ServiceName
	if service == "" {
		service = "rustygate"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(service)}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	// resource.Default holds the SDK's own attributes (telemetry.sdk.*)
	// and those of OTEL_RESOURCE_ATTRIBUTES; the configuration wins.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(sp),
	)
	return &Tracer{
		tp:     tp,
		tracer: tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(version)),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// newSampler returns the sampler named as in config.Tracing.Sampler ("" is
// the default, parentbased_traceidratio).
func newSampler(name string, ratio float64) (sdktrace.Sampler, error) {
	switch name {
	case config.SamplerParentBasedRatio, "":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	case config.SamplerRatio:
		return sdktrace.TraceIDRatioBased(ratio), nil
	case config.SamplerAlwaysOn:
		return sdktrace.AlwaysSample(), nil
	case config.SamplerAlwaysOff:
		return sdktrace.NeverSample(), nil
	}
	return nil, fmt.Errorf("tracing: unknown sampler %q", name)
}

// newExporter returns the OTLP exporter of cfg.Protocol ("" is grpc).
// The endpoint is host:port or an http(s) URL; a nil Insecure means
// plaintext unless the URL scheme is https.
func newExporter(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error) {
	ep := cfg.Endpoint
	isURL := strings.Contains(ep, "://")
	insecure := !isURL || !strings.HasPrefix(strings.ToLower(ep), "https://")
	if cfg.Insecure != nil {
		insecure = *cfg.Insecure
	}
	switch cfg.Protocol {
	case config.TracingGRPC, "":
		if ep == "" {
			ep = "localhost:4317"
		}
		var opts []otlptracegrpc.Option
		if isURL {
			opts = append(opts, otlptracegrpc.WithEndpointURL(ep))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(ep))
		}
		if insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case config.TracingHTTP:
		// RustyGate's own exporter: the same requests as the SDK's
		// otlptracehttp, encoded at a fraction of the cost.
		if ep == "" {
			ep = "localhost:4318"
		}
		if isURL {
			if _, err := url.Parse(ep); err != nil {
				return nil, fmt.Errorf("tracing: endpoint: %w", err)
			}
		}
		return newOTLPHTTPExporter(otlpHTTPURL(ep, insecure), cfg.Headers), nil
	}
	return nil, fmt.Errorf("tracing: unknown protocol %q (supported: grpc, http)", cfg.Protocol)
}

// SpanCounters returns the counts of the spans exported and dropped (zero
// for a nil Tracer).
func (t *Tracer) SpanCounters() SpanCounters {
	if t == nil || t.q == nil {
		return SpanCounters{}
	}
	return t.q.counters()
}

// Shutdown ends the batch span processor after exporting the spans it
// still holds, and closes the exporter; ctx bounds the wait. Spans
// started afterwards are not exported. A nil Tracer has nothing to flush.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// LogTracingErrors sends the errors of the OpenTelemetry SDK (failed
// exports, mostly) to l at warn level instead of the standard log
// package. The SDK's error handler is process-wide.
func LogTracingErrors(l *slog.Logger) {
	if l == nil {
		return
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		l.Warn("tracing error", "error", err.Error())
	}))
}

// Span is a span of a proxied request: the server span of the request, or
// the client span of one attempt on a backend. A nil *Span is valid and
// does nothing. A Span is used by one goroutine at a time.
//
// The attributes known at the start are kept in the Span and set with the
// outcome at End, in a single call, which spares the SDK a second growth
// of the span's attribute slice.
type Span struct {
	t      *Tracer
	ctx    context.Context // holds span and the incoming baggage
	span   trace.Span
	client bool
	route  string

	// Start attributes, for End.
	method   string
	target   string // server: request target; client: backend URL
	host     string // server: Host header
	scheme   string // server
	clientIP string // server
	proto    string // server
	ua       string // server: User-Agent header
	attempt  int    // client
}

// headerGetter adapts a header lookup to a propagation.TextMapCarrier.
type headerGetter func(name string) string

func (g headerGetter) Get(key string) string { return g(key) }
func (g headerGetter) Set(string, string)    {}
func (g headerGetter) Keys() []string        { return nil }

// headerSetter adapts a header setter to a propagation.TextMapCarrier.
type headerSetter func(name, value string)

func (s headerSetter) Get(string) string     { return "" }
func (s headerSetter) Set(key, value string) { s(key, value) }
func (s headerSetter) Keys() []string        { return nil }

// StartServer starts the server span of a request. get looks a request
// header up by its lower-case name (case-insensitively, "" when absent):
// "traceparent", "tracestate" and "baggage" give the caller's trace
// context, which becomes the parent; "host" and "user-agent" give
// attributes. route is the matched route ("" when none), target the
// request target as received, scheme "http" or "https", proto the
// protocol as in "HTTP/1.1". get is only called during StartServer; the
// strings are kept until End, so they must not alias reused buffers.
//
// The span is named "METHOD route" (just "METHOD" without a route), as
// the HTTP semantic conventions name server spans.
func (t *Tracer) StartServer(get func(name string) string, method, route, target, clientIP, scheme, proto string) *Span {
	if t == nil {
		return nil // inlined: tracing off costs the caller a nil check
	}
	return t.startServer(get, method, route, target, clientIP, scheme, proto)
}

func (t *Tracer) startServer(get func(name string) string, method, route, target, clientIP, scheme, proto string) *Span {
	ctx := context.Background()
	if get != nil {
		ctx = t.prop.Extract(ctx, headerGetter(get))
	}
	known := isKnownMethod(method)
	ctx, span := t.tracer.Start(ctx, spanMethod(method, known), serverKind...)
	s := &Span{t: t, ctx: ctx, span: span, route: route}
	if !span.IsRecording() {
		return s
	}
	if route != "" {
		span.SetName(spanMethod(method, known) + " " + route)
	}
	s.method, s.target, s.clientIP, s.scheme, s.proto = method, target, clientIP, scheme, proto
	if get != nil {
		s.host, s.ua = get("host"), get("user-agent")
	}
	return s
}

// StartAttempt starts the client span of one attempt of the request on a
// backend, a child of s. backendURL is the backend as configured
// (http://host:port[/base]); attempt counts from 0, and a resend (attempt
// > 0) is recorded as http.request.resend_count. Inject the returned
// span into the request sent to the backend.
func (s *Span) StartAttempt(backendURL string, attempt int, method string) *Span {
	if s == nil {
		return nil
	}
	return s.startAttempt(backendURL, attempt, method)
}

func (s *Span) startAttempt(backendURL string, attempt int, method string) *Span {
	ctx, span := s.t.tracer.Start(s.ctx, AttemptSpanName, clientKind...)
	c := &Span{t: s.t, ctx: ctx, span: span, client: true, route: s.route}
	if span.IsRecording() {
		c.method, c.target, c.attempt = method, backendURL, attempt
	}
	return c
}

// Inject writes the span's trace context through set: traceparent, and
// tracestate and baggage when there are any (baggage is the one the
// request came with). Inject the attempt span, so the backend's spans
// are its children. An unsampled span still propagates its trace id,
// flagged as not sampled.
func (s *Span) Inject(set func(name, value string)) {
	if s != nil && set != nil {
		s.t.prop.Inject(s.ctx, headerSetter(set))
	}
}

// End ends the span with the response status (0 when none was received
// or sent) and errMsg, a short reason of a failure ("" when none). A
// server span is an error when status is 5xx or no response was sent
// after a failure; a client span when status is 4xx or 5xx or errMsg is
// set. An error sets error.type to errMsg, else to the status code, as
// the HTTP conventions have it, so errMsg should come from a small set.
func (s *Span) End(status int, errMsg string) {
	if s != nil {
		s.end(status, errMsg)
	}
}

func (s *Span) end(status int, errMsg string) {
	span := s.span
	if !span.IsRecording() {
		span.End()
		return
	}
	// The buffer passed to SetAttributes (which copies it) would escape:
	// it comes from a pool.
	buf := attrBufs.Get().(*[16]attribute.KeyValue)
	defer attrBufs.Put(buf)
	var a []attribute.KeyValue
	var failed bool
	if s.client {
		a = s.clientAttrs(buf[:0])
		failed = status >= 400 || errMsg != ""
	} else {
		a = s.serverAttrs(buf[:0])
		failed = status >= 500 || (status <= 0 && errMsg != "")
	}
	if status > 0 {
		a = append(a, semconv.HTTPResponseStatusCode(status))
	}
	if failed {
		errType := errMsg
		if errType == "" {
			errType = codeLabels[codeSlot(status)]
		}
		a = append(a, semconv.ErrorTypeKey.String(errType))
		span.SetStatus(codes.Error, errMsg)
	}
	span.SetAttributes(a...)
	clear(buf[:])
	span.End()
}

// attrBufs hold the end attributes of a span being ended.
var attrBufs = sync.Pool{New: func() any { return new([16]attribute.KeyValue) }}

// serverAttrs appends the request attributes of a server span.
func (s *Span) serverAttrs(a []attribute.KeyValue) []attribute.KeyValue {
	a = appendMethod(a, s.method)
	if s.route != "" {
		a = append(a, semconv.HTTPRoute(s.route))
	}
	a = append(a, semconv.URLPath(targetPath(s.target)))
	if s.scheme != "" {
		a = append(a, semconv.URLScheme(s.scheme))
	}
	if h, port := splitHostPort(s.host, s.scheme); h != "" {
		a = append(a, semconv.ServerAddress(h))
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	if s.clientIP != "" {
		a = append(a, semconv.ClientAddress(s.clientIP))
	}
	if v := protocolVersion(s.proto); v != "" {
		a = append(a, semconv.NetworkProtocolVersion(v))
	}
	if s.ua != "" {
		a = append(a, semconv.UserAgentOriginal(s.ua))
	}
	return a
}

// clientAttrs appends the request attributes of an attempt span.
func (s *Span) clientAttrs(a []attribute.KeyValue) []attribute.KeyValue {
	a = appendMethod(a, s.method)
	scheme, hostport := splitURL(s.target)
	if h, port := splitHostPort(hostport, scheme); h != "" {
		a = append(a, semconv.ServerAddress(h))
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	a = append(a, semconv.URLFull(s.target))
	if s.attempt > 0 {
		a = append(a, semconv.HTTPRequestResendCount(s.attempt))
	}
	a = append(a, attrBackend.String(s.target))
	if s.route != "" {
		a = append(a, attrRoute.String(s.route))
	}
	return a
}

// TraceID returns the span's trace id; ok is false when the span is not
// sampled (it is then not exported, so the id leads nowhere).
func (s *Span) TraceID() (id [16]byte, ok bool) {
	if s == nil {
		return id, false
	}
	return s.traceID()
}

func (s *Span) traceID() (id [16]byte, ok bool) {
	sc := s.span.SpanContext()
	if !sc.IsSampled() || !sc.IsValid() {
		return id, false
	}
	return sc.TraceID(), true
}

// SpanID returns the span's id; ok is false when the span is not sampled.
func (s *Span) SpanID() (id [8]byte, ok bool) {
	if s == nil {
		return id, false
	}
	return s.spanID()
}

func (s *Span) spanID() (id [8]byte, ok bool) {
	sc := s.span.SpanContext()
	if !sc.IsSampled() || !sc.IsValid() {
		return id, false
	}
	return sc.SpanID(), true
}

// AppendTraceID appends the trace id in lower-case hex (32 digits) to
// dst, or nothing when TraceID's ok is false. It allocates nothing when
// dst has room.
func (s *Span) AppendTraceID(dst []byte) []byte {
	if s == nil {
		return dst
	}
	return s.appendTraceID(dst)
}

func (s *Span) appendTraceID(dst []byte) []byte {
	id, ok := s.traceID()
	if !ok {
		return dst
	}
	return hex.AppendEncode(dst, id[:])
}

// AppendSpanID appends the span id in lower-case hex (16 digits) to dst,
// or nothing when SpanID's ok is false.
func (s *Span) AppendSpanID(dst []byte) []byte {
	if s == nil {
		return dst
	}
	return s.appendSpanID(dst)
}

func (s *Span) appendSpanID(dst []byte) []byte {
	id, ok := s.spanID()
	if !ok {
		return dst
	}
	return hex.AppendEncode(dst, id[:])
}

// Context returns a context holding the span and the incoming baggage,
// for code that starts spans of its own under it.
func (s *Span) Context() context.Context {
	if s == nil {
		return context.Background()
	}
	return s.ctx
}

// isKnownMethod reports the methods the HTTP semantic conventions name;
// others are recorded as "_OTHER".
func isKnownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY":
		return true
	}
	return false
}

// spanMethod is the method part of a span name: "HTTP" for an unknown method.
func spanMethod(m string, known bool) string {
	if known {
		return m
	}
	return "HTTP"
}

// appendMethod appends http.request.method, and the original method when
// it is not a known one.
func appendMethod(a []attribute.KeyValue, m string) []attribute.KeyValue {
	if isKnownMethod(m) {
		return append(a, semconv.HTTPRequestMethodKey.String(m))
	}
	return append(a, semconv.HTTPRequestMethodKey.String("_OTHER"), semconv.HTTPRequestMethodOriginal(m))
}

// targetPath returns the path of a request target: the origin form
// without its query, or the path of an absolute form.
func targetPath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if target == "" || target[0] == '/' || target == "*" {
		return target
	}
	if i := strings.Index(target, "://"); i >= 0 {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	return target // authority form (CONNECT)
}

// splitURL returns the scheme and the authority of a URL such as
// "http://host:port/base".
func splitURL(u string) (scheme, hostport string) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", u
	}
	scheme, rest := u[:i], u[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	return scheme, rest
}

// splitHostPort splits a Host header or URL authority into its host and
// port; without a port, the scheme's default port (0 when unknown).
func splitHostPort(hp, scheme string) (string, int) {
	if hp == "" {
		return "", 0
	}
	host, portStr := hp, ""
	if hp[0] == '[' { // [v6] or [v6]:port
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return hp, 0
		}
		host = hp[1:end]
		if rest := hp[end+1:]; len(rest) > 1 && rest[0] == ':' {
			portStr = rest[1:]
		}
	} else if i := strings.LastIndexByte(hp, ':'); i >= 0 && strings.IndexByte(hp[:i], ':') < 0 {
		host, portStr = hp[:i], hp[i+1:]
	}
	if portStr != "" {
		if p, err := strconv.Atoi(portStr); err == nil && p > 0 && p <= 65535 {
			return host, p
		}
		return host, 0
	}
	switch strings.ToLower(scheme) {
	case "http":
		return host, 80
	case "https":
		return host, 443
	}
	return host, 0
}

// protocolVersion maps "HTTP/1.1" to the network.protocol.version value
// "1.1" ("2" and "3" for HTTP/2 and HTTP/3).
func protocolVersion(proto string) string {
	v, ok := strings.CutPrefix(proto, "HTTP/")
	if !ok {
		return ""
	}
	switch v {
	case "2.0":
		return "2"
	case "3.0":
		return "3"
	}
	return v
}
