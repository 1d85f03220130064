package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Values of tracing.protocol and tracing.sampler. The sampler names are
// those of OTEL_TRACES_SAMPLER.
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http"

	SamplerParentBasedRatio = "parentbased_traceidratio"
	SamplerAlwaysOn         = "always_on"
	SamplerAlwaysOff        = "always_off"
	SamplerRatio            = "traceidratio"
)

// Tracing defaults.
const (
	defaultTracingGRPCEndpoint = "localhost:4317"
	defaultTracingHTTPEndpoint = "localhost:4318"
	defaultTracingProtocol     = TracingGRPC
	defaultTracingSampler      = SamplerParentBasedRatio
	defaultTracingRatio        = 1.0
	defaultTracingService      = "rustygate"
	defaultTracingQueueSize    = 8192
	defaultTracingBatchSize    = 1024
	defaultTracingBatchTimeout = Duration(time.Second)
	maxTracingQueueSize        = 1 << 20
	maxTracingBatchTimeout     = Duration(time.Minute)
)

var (
	tracingProtocols = []string{TracingGRPC, TracingHTTP}
	tracingSamplers  = []string{SamplerParentBasedRatio, SamplerAlwaysOn, SamplerAlwaysOff, SamplerRatio}
)

// Tracing configures distributed tracing: OpenTelemetry spans exported
// over OTLP, with W3C trace context propagated to the backends.
type Tracing struct {
	// Enabled turns tracing on. Default false: no tracer is built and the
	// request path pays nothing.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP collector: "host:port", or a URL whose scheme
	// selects plaintext (http://) or TLS (https://); with protocol http
	// a URL may also give the path (default /v1/traces). Default
	// localhost:4317 for grpc, localhost:4318 for http.
	Endpoint string `yaml:"endpoint"`
	// Protocol is the OTLP transport: "grpc" (default) or "http"
	// (protobuf over HTTP).
	Protocol string `yaml:"protocol"`
	// Sampler decides which new traces are recorded:
	// "parentbased_traceidratio" (default: follow the caller's sampled
	// flag, else sample Ratio of traces), "traceidratio" (Ratio of
	// traces, ignoring the caller), "always_on" or "always_off".
	Sampler string `yaml:"sampler"`
	// Ratio is the fraction of traces sampled by the ratio samplers,
	// 0 to 1. Default 1.
	Ratio float64 `yaml:"ratio"`
	// ServiceName is the service.name resource attribute. Default "rustygate".
	ServiceName string `yaml:"service_name"`
	// Insecure exports without TLS. Default: true, unless Endpoint is an
	// https:// URL.
	Insecure *bool `yaml:"insecure"`
	// Headers are sent with every export (gRPC metadata or HTTP
	// headers), e.g. an authorization token for the collector.
	Headers map[string]string `yaml:"headers"`
	// QueueSize bounds the ended spans waiting for export; a span that
	// finds the queue full is dropped (and counted). Default 8192 (also
	// for 0, as for the other two).
	QueueSize int `yaml:"queue_size"`
	// BatchSize is the number of spans sent in one export. Default 1024.
	BatchSize int `yaml:"batch_size"`
	// BatchTimeout is how long a span waits for its batch to fill before
	// the batch is sent anyway. Default 1s.
	BatchTimeout Duration `yaml:"batch_timeout"`
}

// tracingOf returns c's tracing section, or nil while Config has no
// Tracing field (the section is then neither defaulted nor checked).
func tracingOf(c *Config) *Tracing { return &c.Tracing }

// tracingDefaults fills the tracing section's defaults.
func tracingDefaults(c *Config, unset func(string) bool) {
	if t := tracingOf(c); t != nil {
		defaultTracing(t, "tracing", unset)
	}
}

// validateTracing checks the tracing section.
func validateTracing(c *Config, st *vstate) {
	if t := tracingOf(c); t != nil {
		checkTracing(t, "tracing", st)
	}
}

// defaultTracing fills the defaults of the tracing section at path. The
// defaults are filled whether or not tracing is enabled, so a dumped
// configuration shows what enabling it would do. An explicit ratio: 0 is
// kept: it samples no new trace.
func defaultTracing(t *Tracing, path string, unset func(string) bool) {
	setString(&t.Protocol, defaultTracingProtocol)
	if t.Protocol == TracingHTTP {
		setString(&t.Endpoint, defaultTracingHTTPEndpoint)
	} else {
		setString(&t.Endpoint, defaultTracingGRPCEndpoint)
	}
	setString(&t.Sampler, defaultTracingSampler)
	if t.Ratio == 0 && unset(path+".ratio") {
		t.Ratio = defaultTracingRatio
	}
	setString(&t.ServiceName, defaultTracingService)
	setInt(&t.QueueSize, defaultTracingQueueSize, unset(path+".queue_size"))
	setInt(&t.BatchSize, min(defaultTracingBatchSize, max(t.QueueSize, 1)), unset(path+".batch_size"))
	setDuration(&t.BatchTimeout, defaultTracingBatchTimeout, unset(path+".batch_timeout"))
	if t.Insecure == nil {
		t.Insecure = ptr(endpointScheme(t.Endpoint) != "https")
	}
}

// endpointScheme returns the lower-cased scheme of an endpoint given as
// a URL, or "" for host:port.
func endpointScheme(ep string) string {
	i := strings.Index(ep, "://")
	if i < 0 {
		return ""
	}
	return strings.ToLower(ep[:i])
}

// checkTracing checks the tracing section at path. The section is checked
// even when tracing is off, so a mistake does not wait for the day it is
// turned on.
func checkTracing(t *Tracing, path string, st *vstate) {
	protocolOK := oneOf(t.Protocol, tracingProtocols...)
	if !protocolOK {
		st.add(path+".protocol", "unknown protocol %q (supported: %s)", t.Protocol, strings.Join(tracingProtocols, ", "))
	}
	if !oneOf(t.Sampler, tracingSamplers...) {
		st.add(path+".sampler", "unknown sampler %q (supported: %s)", t.Sampler, strings.Join(tracingSamplers, ", "))
	}
	if !(t.Ratio >= 0 && t.Ratio <= 1) {
		st.add(path+".ratio", "must be between 0 and 1 (got %s)", strconv.FormatFloat(t.Ratio, 'g', -1, 64))
	}
	if t.ServiceName == "" || strings.ContainsFunc(t.ServiceName, isControl) {
		st.add(path+".service_name", "must be a non-empty string without control characters")
	}
	// 0 (a Config built in code) means the default.
	if t.QueueSize < 0 || t.QueueSize > maxTracingQueueSize {
		st.add(path+".queue_size", "must be between 1 and %d (got %d)", maxTracingQueueSize, t.QueueSize)
	}
	if t.BatchSize < 0 || (t.QueueSize > 0 && t.BatchSize > t.QueueSize) {
		st.add(path+".batch_size", "must be between 1 and queue_size (%d) (got %d)", t.QueueSize, t.BatchSize)
	}
	if t.BatchTimeout < 0 || t.BatchTimeout > maxTracingBatchTimeout {
		st.add(path+".batch_timeout", "must be more than 0 and at most %s (got %s)", maxTracingBatchTimeout, t.BatchTimeout)
	}
	if protocolOK {
		if msg := checkTracingEndpoint(t.Endpoint, t.Protocol); msg != "" {
			st.add(path+".endpoint", "%s", msg)
		} else if t.Insecure != nil {
			switch scheme := endpointScheme(t.Endpoint); {
			case scheme == "https" && *t.Insecure:
				st.add(path+".insecure", "contradicts the https:// endpoint %q (use http:// for plaintext)", t.Endpoint)
			case scheme == "http" && !*t.Insecure:
				st.add(path+".insecure", "contradicts the http:// endpoint %q (use https:// for TLS)", t.Endpoint)
			}
		}
	}
	names := make([]string, 0, len(t.Headers))
	for name := range t.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !isToken(name):
			st.add(path+".headers", "invalid header name %q", name)
		case strings.ContainsFunc(t.Headers[name], isHeaderValueControl):
			st.add(path+".headers."+name, "must not contain control characters")
		}
	}
}

// isHeaderValueControl reports the characters a header value may not
// hold: controls other than tab.
func isHeaderValueControl(r rune) bool { return r != '\t' && isControl(r) }

// checkTracingEndpoint checks an OTLP endpoint: host:port, or an http(s)
// URL with a host, whose path (protocol http only) is where traces are
// posted.
func checkTracingEndpoint(ep, protocol string) string {
	if ep == "" {
		return "is required"
	}
	if strings.ContainsFunc(ep, isSpaceOrControl) {
		return fmt.Sprintf("invalid endpoint %q (no spaces or control characters)", ep)
	}
	if !strings.Contains(ep, "://") {
		host, port, err := net.SplitHostPort(ep)
		switch {
		case err != nil:
			return fmt.Sprintf("invalid endpoint %q (want host:port or http(s)://host:port)", ep)
		case host == "":
			return fmt.Sprintf("missing host in %q", ep)
		case !validIP(host) && !validHostname(host, false):
			return fmt.Sprintf("invalid host %q in %q", host, ep)
		}
		if _, ok := parsePort(port); !ok {
			return fmt.Sprintf("invalid port %q in %q (want 1-65535)", port, ep)
		}
		return ""
	}
	u, err := url.Parse(ep)
	switch {
	case err != nil || u.Opaque != "":
		return fmt.Sprintf("invalid endpoint %q (want host:port or http(s)://host:port)", ep)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("unsupported scheme %q in %q (supported: http, https)", u.Scheme, ep)
	case u.User != nil:
		return fmt.Sprintf("user info is not allowed in %q (use tracing.headers for credentials)", ep)
	case u.Hostname() == "":
		return fmt.Sprintf("missing host in %q", ep)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Sprintf("a query is not allowed in %q", ep)
	case u.Fragment != "" || strings.Contains(ep, "#"):
		return fmt.Sprintf("a fragment is not allowed in %q", ep)
	case protocol == TracingGRPC && u.Path != "" && u.Path != "/":
		return fmt.Sprintf("a path is not allowed in a grpc endpoint (got %q)", ep)
	}
	if h := u.Hostname(); !validIP(h) && !validHostname(h, false) {
		return fmt.Sprintf("invalid host %q in %q", h, ep)
	}
	if p := u.Port(); p != "" {
		if _, ok := parsePort(p); !ok {
			return fmt.Sprintf("invalid port %q in %q (want 1-65535)", p, ep)
		}
	}
	return ""
}
