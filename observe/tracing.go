package observe

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

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

// defaultOTLPPath is where OTLP/HTTP posts traces when the endpoint URL
// gives no path.
const defaultOTLPPath = "/v1/traces"

// Tracer creates the spans of proxied requests and exports them over OTLP
// in batches, from a bounded queue that a request never waits on (see
// spanQueue; the spans dropped when it is full are counted, see
// Metrics.RegisterTracing). A nil *Tracer is valid and traces nothing:
// its methods return nil spans, whose methods do nothing, so the proxy
// pays a nil check per call when tracing is off.
//
// The spans are the gateway's own (Span, and the spanRecord a sampled
// span fills): the OpenTelemetry SDK's span objects cost a dozen
// allocations per request. What they export is what the SDK would
// export for the same spans (same names, kinds, attributes, status,
// resource and scope); the sampling and the W3C propagation are those
// of the SDK's samplers and propagators.
type Tracer struct {
	sink    spanSink
	q       *spanQueue // nil when sink is not a queue (tests)
	origin  *spanOrigin
	sampler sampler
}

// spanSink takes the records of the sampled spans that ended.
type spanSink interface {
	push(r *spanRecord)
	Shutdown(ctx context.Context) error
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
	smp, err := newSampler(cfg.Sampler, cfg.Ratio)
	if err != nil {
		return nil, err
	}
	origin, err := newOrigin(cfg, version)
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(ctx, cfg, origin)
	if err != nil {
		return nil, err
	}
	q := newSpanQueue(exp, cfg.QueueSize, cfg.BatchSize, cfg.BatchTimeout.D())
	return &Tracer{sink: q, q: q, origin: origin, sampler: smp}, nil
}

// newTracer returns a Tracer whose ended spans go to sink, with cfg's
// sampler and service name.
func newTracer(cfg config.Tracing, version string, sink spanSink) (*Tracer, error) {
	smp, err := newSampler(cfg.Sampler, cfg.Ratio)
	if err != nil {
		return nil, err
	}
	origin, err := newOrigin(cfg, version)
	if err != nil {
		return nil, err
	}
	return &Tracer{sink: sink, origin: origin, sampler: smp}, nil
}

// newOrigin returns the resource (service name and version) and scope
// of the spans.
func newOrigin(cfg config.Tracing, version string) (*spanOrigin, error) {
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
	return &spanOrigin{res: res, scope: instrumentation.Scope{Name: instrumentationName, Version: version}}, nil
}

// newExporter returns the OTLP exporter of cfg.Protocol ("" is grpc).
// The endpoint is host:port or an http(s) URL; a nil Insecure means
// plaintext unless the URL scheme is https.
func newExporter(ctx context.Context, cfg config.Tracing, origin *spanOrigin) (recordExporter, error) {
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
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, err
		}
		return &sdkExporter{exp: exp, origin: origin}, nil
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
		return newOTLPHTTPExporter(otlpHTTPURL(ep, insecure), cfg.Headers, origin), nil
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

// Shutdown exports the spans still queued, stops the export and closes
// the exporter; ctx bounds the wait. Spans that end afterwards are not
// exported. A nil Tracer has nothing to flush.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.sink.Shutdown(ctx)
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

// isKnownMethod reports the methods the HTTP semantic conventions name;
// others are recorded as "_OTHER".
func isKnownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY":
		return true
	}
	return false
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
