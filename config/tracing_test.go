package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func allUnset(string) bool { return true }

// defaultedTracing returns t with the defaults of a file that set only
// the given keys (paths under "tracing.").
func defaultedTracing(t Tracing, set ...string) Tracing {
	defaultTracing(&t, "tracing", func(p string) bool {
		for _, s := range set {
			if p == "tracing."+s {
				return false
			}
		}
		return true
	})
	return t
}

func TestTracingDefaults(t *testing.T) {
	got := defaultedTracing(Tracing{})
	want := Tracing{
		Endpoint:     "localhost:4317",
		Protocol:     "grpc",
		Sampler:      "parentbased_traceidratio",
		Ratio:        1,
		ServiceName:  "rustygate",
		Insecure:     ptr(true),
		QueueSize:    8192,
		BatchSize:    1024,
		BatchTimeout: Duration(time.Second),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if got.Enabled {
		t.Error("tracing must be off by default")
	}

	// The http protocol has its own port.
	if got := defaultedTracing(Tracing{Protocol: "http"}); got.Endpoint != "localhost:4318" {
		t.Errorf("http endpoint = %q", got.Endpoint)
	}
	// An explicit ratio 0 is kept; an unset 0 is the default.
	if got := defaultedTracing(Tracing{}, "ratio"); got.Ratio != 0 {
		t.Errorf("explicit ratio 0 became %g", got.Ratio)
	}
	// TLS by default towards an https:// endpoint only.
	if got := defaultedTracing(Tracing{Endpoint: "https://otel.example.com"}); *got.Insecure {
		t.Error("https endpoint defaulted to insecure")
	}
	if got := defaultedTracing(Tracing{Endpoint: "HTTP://collector:4317"}); !*got.Insecure {
		t.Error("http endpoint defaulted to TLS")
	}
	// Set values are kept, and defaulting twice changes nothing.
	in := Tracing{Enabled: true, Endpoint: "jaeger:4317", Protocol: "grpc", Sampler: "always_on", Ratio: 0.25,
		ServiceName: "edge", Insecure: ptr(false), Headers: map[string]string{"X-Token": "t"},
		QueueSize: 100, BatchSize: 10, BatchTimeout: Duration(time.Minute)}
	got = defaultedTracing(in)
	if !reflect.DeepEqual(got, in) {
		t.Errorf("set values changed: %+v", got)
	}
	if again := defaultedTracing(got); !reflect.DeepEqual(again, got) {
		t.Errorf("not idempotent: %+v", again)
	}
}

// tracingErrors checks tr (defaults applied first) and returns the
// problems as "path: msg".
func tracingErrors(tr Tracing, set ...string) []string {
	tr = defaultedTracing(tr, set...)
	st := &vstate{file: "t.yaml"}
	checkTracing(&tr, "tracing", st)
	var out []string
	for _, e := range st.errs {
		if e.File != "t.yaml" {
			out = append(out, "wrong file "+e.File)
		}
		out = append(out, e.Path+": "+e.Msg)
	}
	return out
}

func TestValidateTracing(t *testing.T) {
	good := []Tracing{
		{},
		{Enabled: true},
		{Enabled: true, Endpoint: "127.0.0.1:4317", Protocol: "grpc", Ratio: 1},
		{Enabled: true, Endpoint: "[::1]:4317"},
		{Enabled: true, Endpoint: "http://jaeger:4317"},
		{Enabled: true, Endpoint: "https://otel.example.com", Insecure: ptr(false)},
		{Enabled: true, Endpoint: "otel.example.com:443", Insecure: ptr(false)},
		{Enabled: true, Protocol: "http"},
		{Enabled: true, Protocol: "http", Endpoint: "http://collector:4318/v1/traces"},
		{Enabled: true, Protocol: "http", Endpoint: "https://otel.example.com/otlp/v1/traces"},
		{Sampler: "always_on"}, {Sampler: "always_off"}, {Sampler: "traceidratio", Ratio: 0.01},
		{Ratio: 1}, {Ratio: 0.5},
		{Headers: map[string]string{"Authorization": "Bearer abc", "x-scope-orgid": "tenant\t1"}},
	}
	for _, tr := range good {
		if errs := tracingErrors(tr); len(errs) > 0 {
			t.Errorf("%+v: unexpected errors %q", tr, errs)
		}
	}
	if errs := tracingErrors(Tracing{}, "ratio"); len(errs) > 0 {
		t.Errorf("explicit ratio 0: %q", errs)
	}

	bad := []struct {
		tr   Tracing
		want string // "path: message fragment"
	}{
		{Tracing{Protocol: "thrift"}, `tracing.protocol: unknown protocol "thrift" (supported: grpc, http)`},
		{Tracing{Protocol: "GRPC"}, `tracing.protocol: unknown protocol "GRPC"`},
		{Tracing{Sampler: "sometimes"}, `tracing.sampler: unknown sampler "sometimes" (supported: parentbased_traceidratio, always_on, always_off, traceidratio)`},
		{Tracing{Ratio: 1.5}, "tracing.ratio: must be between 0 and 1 (got 1.5)"},
		{Tracing{Ratio: -0.1}, "tracing.ratio: must be between 0 and 1 (got -0.1)"},
		{Tracing{Ratio: math.NaN()}, "tracing.ratio: must be between 0 and 1 (got NaN)"},
		{Tracing{ServiceName: "a\nb"}, "tracing.service_name: must be a non-empty string"},
		{Tracing{Endpoint: "localhost"}, `tracing.endpoint: invalid endpoint "localhost" (want host:port`},
		{Tracing{Endpoint: ":4317"}, `tracing.endpoint: missing host in ":4317"`},
		{Tracing{Endpoint: "local host:4317"}, "tracing.endpoint: invalid endpoint"},
		{Tracing{Endpoint: "localhost:0"}, `tracing.endpoint: invalid port "0"`},
		{Tracing{Endpoint: "localhost:99999"}, `tracing.endpoint: invalid port "99999"`},
		{Tracing{Endpoint: "bad_host!:4317"}, `tracing.endpoint: invalid host "bad_host!"`},
		{Tracing{Endpoint: "ftp://collector:4317"}, `tracing.endpoint: unsupported scheme "ftp"`},
		{Tracing{Endpoint: "http://:4317"}, "tracing.endpoint: missing host"},
		{Tracing{Endpoint: "http://user:pw@collector:4317"}, "tracing.endpoint: user info is not allowed"},
		{Tracing{Endpoint: "http://collector:4317?x=1"}, "tracing.endpoint: a query is not allowed"},
		{Tracing{Endpoint: "http://collector:4317#f"}, "tracing.endpoint: a fragment is not allowed"},
		{Tracing{Endpoint: "http://collector:70000"}, `tracing.endpoint: invalid port "70000"`},
		{Tracing{Endpoint: "http://collector:4317/v1/traces"}, "tracing.endpoint: a path is not allowed in a grpc endpoint"},
		{Tracing{Endpoint: "https://collector", Insecure: ptr(true)}, "tracing.insecure: contradicts the https:// endpoint"},
		{Tracing{Endpoint: "http://collector", Insecure: ptr(false)}, "tracing.insecure: contradicts the http:// endpoint"},
		{Tracing{Headers: map[string]string{"Bad Name": "v"}}, `tracing.headers: invalid header name "Bad Name"`},
		{Tracing{Headers: map[string]string{"X-Token": "a\r\nInjected: 1"}}, "tracing.headers.X-Token: must not contain control characters"},
		{Tracing{QueueSize: -1}, "tracing.queue_size: must be between 1 and 1048576 (got -1)"},
		{Tracing{QueueSize: 1<<20 + 1}, "tracing.queue_size: must be between 1 and 1048576"},
		{Tracing{QueueSize: 100, BatchSize: 101}, "tracing.batch_size: must be between 1 and queue_size (100) (got 101)"},
		{Tracing{BatchTimeout: Duration(2 * time.Minute)}, "tracing.batch_timeout: must be more than 0 and at most 1m0s (got 2m0s)"},
	}
	for _, c := range bad {
		errs := tracingErrors(c.tr)
		if len(errs) != 1 || !strings.HasPrefix(errs[0], c.want) {
			t.Errorf("%+v: errors %q, want one starting with %q", c.tr, errs, c.want)
		}
	}

	// A Config built in code without defaults: every problem at once, and
	// an invalid protocol does not add endpoint noise.
	st := &vstate{file: "t.yaml"}
	checkTracing(&Tracing{Protocol: "x", Ratio: 2}, "tracing", st)
	var paths []string
	for _, e := range st.errs {
		paths = append(paths, e.Path)
	}
	if want := []string{"tracing.protocol", "tracing.sampler", "tracing.ratio", "tracing.service_name"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
	st = &vstate{file: "t.yaml"}
	checkTracing(&Tracing{Protocol: "grpc", Sampler: "always_on", ServiceName: "s"}, "tracing", st)
	if len(st.errs) != 1 || st.errs[0].Path != "tracing.endpoint" || st.errs[0].Msg != "is required" {
		t.Errorf("errors = %+v", st.errs)
	}
}

// TestTracingConfigHooks runs the Config-level hooks: once Config has its
// Tracing field, they default and check it in place.
func TestTracingConfigHooks(t *testing.T) {
	c := &Config{}
	tr := tracingOf(c)
	if tr == nil {
		// Before the field exists the hooks must be harmless no-ops.
		tracingDefaults(c, allUnset)
		st := &vstate{file: "t.yaml"}
		validateTracing(c, st)
		if len(st.errs) != 0 {
			t.Errorf("errors without a tracing section: %+v", st.errs)
		}
		t.Skip("Config has no Tracing field yet")
	}
	*tr = Tracing{Enabled: true, Protocol: "http"}
	tracingDefaults(c, allUnset)
	if tr.Endpoint != "localhost:4318" || tr.ServiceName != "rustygate" || tr.Ratio != 1 {
		t.Errorf("defaults not applied: %+v", *tr)
	}
	st := &vstate{file: "t.yaml"}
	validateTracing(c, st)
	if len(st.errs) != 0 {
		t.Errorf("defaulted section has errors: %+v", st.errs)
	}
	tr.Sampler = "nope"
	validateTracing(c, st)
	if len(st.errs) != 1 || st.errs[0].Path != "tracing.sampler" || st.errs[0].File != "t.yaml" {
		t.Errorf("errors = %+v", st.errs)
	}
}
