package e2e_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// jaegerDefaultPath is where `make jaeger` builds Jaeger, from the test
// directory.
const jaegerDefaultPath = "../bin/jaeger"

// TestJaeger sends requests carrying a W3C traceparent through a gateway
// per engine, with tracing on and exporting over OTLP/gRPC to a real
// Jaeger (and once over OTLP/HTTP), and checks in Jaeger's query API that each request's trace holds
// the gateway's server span, child of the caller's span, and its
// proxy_request client span, whose id reached the backend in the
// traceparent; and that the access line gives the same trace and span ids.
func TestJaeger(t *testing.T) {
	j := startJaeger(t, jaegerBinary(t))

	var mu sync.Mutex
	seen := make(map[string]string) // X-Request-Id -> traceparent the backend got
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Request-Id")] = r.Header.Get("Traceparent")
		mu.Unlock()
		io.WriteString(w, "ok")
	})

	// The task's setup on both engines, then export over OTLP/HTTP.
	forEachEngine(t, func(t *testing.T, engine string) {
		checkJaegerTrace(t, j, engine, "grpc", j.otlpGRPC, backend.URL, &mu, seen)
	})
	t.Run("fast/http", func(t *testing.T) {
		checkJaegerTrace(t, j, "fast", "http", "http://"+j.otlpHTTP, backend.URL, &mu, seen)
	})
}

// checkJaegerTrace runs a gateway exporting to j over protocol, sends it
// one request with a traceparent and checks the trace in Jaeger, the
// traceparent the backend got (recorded in seen by request id) and the
// access line.
func checkJaegerTrace(t *testing.T, j *jaeger, engine, protocol, endpoint, backendURL string, mu *sync.Mutex, seen map[string]string) {
	g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(backendURL))+fmt.Sprintf(`tracing:
  enabled: true
  endpoint: %q
  protocol: %s
  ratio: 1.0
`, endpoint, protocol))

	traceID, callerSpan := randomHex(t, 16), randomHex(t, 8)
	reqID := randomHex(t, 16)
	req, err := http.NewRequest(http.MethodGet, g.URL()+"/api/test", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	req.Header.Set("X-Request-Id", reqID)
	req.Header.Set("User-Agent", "rustygate-e2e")
	if resp, body := do(t, newClient(t), req); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}

	tr := j.waitTrace(t, traceID, 2)
	server := tr.span(t, "GET /api/test")
	client := tr.span(t, "proxy_request")

	if k := server.tag("span.kind"); k != "server" {
		t.Errorf("server span kind %v", k)
	}
	if k := client.tag("span.kind"); k != "client" {
		t.Errorf("proxy_request span kind %v", k)
	}
	if p := server.parent(); p != callerSpan {
		t.Errorf("server span parent %q, want the caller's span %s", p, callerSpan)
	}
	if p := client.parent(); p != server.SpanID {
		t.Errorf("proxy_request parent %q, want the server span %s", p, server.SpanID)
	}
	for span, want := range map[*jaegerSpan]map[string]any{
		server: {
			"http.request.method":       "GET",
			"http.route":                "/api/test",
			"url.path":                  "/api/test",
			"http.response.status_code": float64(200),
			"user_agent.original":       "rustygate-e2e",
		},
		client: {
			"http.request.method":       "GET",
			"rustygate.backend":         backendURL,
			"url.full":                  backendURL,
			"http.response.status_code": float64(200),
		},
	} {
		for k, v := range want {
			if got := span.tag(k); got != v {
				t.Errorf("span %s: tag %s = %#v, want %#v", span.OperationName, k, got, v)
			}
		}
	}
	if svc := tr.Processes[server.ProcessID].ServiceName; svc != "rustygate" {
		t.Errorf("service name %q, want rustygate", svc)
	}

	// The backend was called in the proxy_request span.
	mu.Lock()
	got := seen[reqID]
	mu.Unlock()
	if want := "00-" + traceID + "-" + client.SpanID + "-01"; got != want {
		t.Errorf("backend traceparent %q, want %q", got, want)
	}

	// The access line leads to the trace.
	line := g.accessLine(t, reqID)
	if line["trace_id"] != traceID {
		t.Errorf("access line trace_id %v, want %s", line["trace_id"], traceID)
	}
	if line["span_id"] != server.SpanID {
		t.Errorf("access line span_id %v, want the server span %s", line["span_id"], server.SpanID)
	}
}

// jaegerBinary returns the Jaeger binary to run: $RUSTYGATE_JAEGER, else
// bin/jaeger. Without one the test skips, unless CI=true and
// RUSTYGATE_REQUIRE_JAEGER=1, where it fails.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RUSTYGATE_JAEGER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RUSTYGATE_JAEGER: %v", err)
		}
		return p
	}
	if p, err := filepath.Abs(jaegerDefaultPath); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" && os.Getenv("RUSTYGATE_REQUIRE_JAEGER") == "1" {
		t.Fatalf("no Jaeger binary at bin/jaeger and RUSTYGATE_REQUIRE_JAEGER=1: run make jaeger or set RUSTYGATE_JAEGER")
	}
	t.Skip("no Jaeger binary: run `make jaeger` (or set RUSTYGATE_JAEGER=path)")
	return ""
}

// jaeger is a running Jaeger with in-memory storage.
type jaeger struct {
	otlpGRPC string // OTLP/gRPC receiver, host:port
	otlpHTTP string // OTLP/HTTP receiver, host:port
	query    string // query API base URL
	client   *http.Client
}

// jaegerConfig is Jaeger's all-in-one configuration cut down to the OTLP
// receivers, memory storage and the query service, each on a loopback
// port of its own, so that runs in parallel do not collide on Jaeger's
// fixed default ports (and the query API is not exposed beyond the host).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: "%s"
    grpc:
      endpoint: "%s"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "%s"
      http:
        endpoint: "%s"
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// freeAddr returns a 127.0.0.1 address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startJaeger runs bin on a configuration of its own and waits until its
// query API answers and its OTLP/gRPC receiver accepts connections. At
// cleanup it is stopped with SIGTERM and killed after 10 s.
func startJaeger(t *testing.T, bin string) *jaeger {
	t.Helper()
	queryHTTP, queryGRPC, otlpGRPC, otlpHTTP := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, queryHTTP, queryGRPC, otlpGRPC, otlpHTTP), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		select {
		case <-exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("jaeger did not stop within 10s of SIGTERM; killing it")
				cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("jaeger log:\n%s", logs.String())
		}
	})
	j := &jaeger{otlpGRPC: otlpGRPC, otlpHTTP: otlpHTTP, query: "http://" + queryHTTP, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("jaeger exited at startup:\n%s", logs.String())
		default:
		}
		if j.ready() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready within 60s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (j *jaeger) ready() bool {
	resp, err := j.client.Get(j.query + "/api/services")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", j.otlpGRPC, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// jaegerTrace is a trace of the query API (/api/traces).
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

func (s *jaegerSpan) tag(key string) any {
	for _, tg := range s.Tags {
		if tg.Key == key {
			return tg.Value
		}
	}
	return nil
}

// parent returns the span id of the CHILD_OF reference ("" when none).
func (s *jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// span returns the one span named name.
func (tr *jaegerTrace) span(t *testing.T, name string) *jaegerSpan {
	t.Helper()
	var found *jaegerSpan
	for i := range tr.Spans {
		if tr.Spans[i].OperationName == name {
			if found != nil {
				t.Fatalf("trace %s has more than one span %q", tr.TraceID, name)
			}
			found = &tr.Spans[i]
		}
	}
	if found == nil {
		t.Fatalf("trace %s has no span %q (spans %+v)", tr.TraceID, name, tr.Spans)
	}
	return found
}

// waitTrace polls the service rustygate's traces for traceID until it
// holds at least n spans (the gateway batches its exports every few
// seconds).
func (j *jaeger) waitTrace(t *testing.T, traceID string, n int) *jaegerTrace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		tr, err := j.findTrace(traceID)
		switch {
		case err != nil:
			last = err.Error()
		case tr != nil && len(tr.Spans) >= n:
			return tr
		case tr != nil:
			last = fmt.Sprintf("trace has %d spans", len(tr.Spans))
		default:
			last = "trace not found"
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s with %d spans not in Jaeger within 30s: %s", traceID, n, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (j *jaeger) findTrace(traceID string) (*jaegerTrace, error) {
	resp, err := j.client.Get(j.query + "/api/traces?service=rustygate&lookback=1h&limit=100")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query API status %d: %s", resp.StatusCode, body)
	}
	var r struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query API answer %q: %v", body, err)
	}
	for i := range r.Data {
		if strings.EqualFold(r.Data[i].TraceID, traceID) {
			return &r.Data[i], nil
		}
	}
	return nil, nil
}

// randomHex returns n random bytes in hex; the first byte is never 0, so
// the id keeps its full width wherever leading zeros would be trimmed.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] |= 0x10
	return hex.EncodeToString(b)
}
