package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testpki"
	"github.com/rustygate/rustygate/observe"
)

// tlsBackend is an HTTPS backend that counts its handshakes.
type tlsBackend struct {
	*httptest.Server
	handshakes, resumed atomic.Int64
	// clientCN is the CN of the last verified client certificate.
	clientCN atomic.Pointer[string]
	// alpn is the protocol the last handshake negotiated.
	alpn atomic.Pointer[string]
}

// startTLSBackend serves "ok" over TLS with cert; edit may change the
// server's config (ask for client certificates).
func startTLSBackend(t testing.TB, cert tls.Certificate, edit func(*tls.Config)) *tlsBackend {
	t.Helper()
	return startTLSBackendHandler(t, cert, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.URL.Path)
	}, edit)
}

// startTLSBackendHandler is startTLSBackend serving h.
func startTLSBackendHandler(t testing.TB, cert tls.Certificate, h http.HandlerFunc, edit func(*tls.Config)) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(h)
	b.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		VerifyConnection: func(cs tls.ConnectionState) error {
			b.handshakes.Add(1)
			if cs.DidResume {
				b.resumed.Add(1)
			}
			b.alpn.Store(&cs.NegotiatedProtocol)
			if len(cs.PeerCertificates) > 0 {
				cn := cs.PeerCertificates[0].Subject.CommonName
				b.clientCN.Store(&cn)
			}
			return nil
		},
	}
	if edit != nil {
		edit(b.TLS)
	}
	if b.TLS.NextProtos == nil {
		// h2 offered too, so the tests see the proxy choose HTTP/1.1.
		b.TLS.NextProtos = []string{"h2", "http/1.1"}
	}
	b.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

// syncBuffer is a bytes.Buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logGateway is a gateway whose process and access logs are kept.
type logGateway struct {
	addr    string
	lg      *observe.Logger
	logs    *syncBuffer
	metrics *observe.Metrics
	tr      *Transport
	srv     *Server
}

func startLogGateway(t testing.TB, engine, routes string) *logGateway {
	t.Helper()
	yaml := fmt.Sprintf("server: { listen: \"127.0.0.1:0\", %s }\nadmin: { listen: \"127.0.0.1:0\" }\nroutes:\n%s", engineYAML(engine), routes)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	g := &logGateway{logs: &syncBuffer{}, metrics: observe.NewMetrics()}
	g.lg, err = observe.NewLogger(g.logs, observe.LogOptions{Format: "json", Level: "info", Access: true})
	if err != nil {
		t.Fatal(err)
	}
	g.tr = NewTransport(g.lg.Slog(), g.metrics)
	snap, err := NewSnapshot(cfg, g.tr, g.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(snap, g.tr, g.lg, g.metrics)
	g.srv = srv
	g.tr.Activate(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		g.tr.Close()
		g.lg.Close()
	})
	g.addr = ln.Addr().String()
	return g
}

// reload swaps in a configuration with these routes, as a reload does.
func (g *logGateway) reload(t testing.TB, engine, routes string) {
	t.Helper()
	yaml := fmt.Sprintf("server: { listen: \"127.0.0.1:0\", %s }\nadmin: { listen: \"127.0.0.1:0\" }\nroutes:\n%s", engineYAML(engine), routes)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	prev := g.srv.Snapshot()
	snap, err := NewSnapshot(cfg, g.tr, g.metrics, prev)
	if err != nil {
		t.Fatal(err)
	}
	g.srv.SetSnapshot(snap)
	g.tr.Activate(snap)
	prev.Close()
}

// get sends GET path and returns the status and the whole answer.
func (g *logGateway) get(t testing.TB, path string) (int, string) {
	t.Helper()
	raw, _ := rawExchange(t, g.addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	return statusOf(raw), raw
}

// log returns the log lines so far.
func (g *logGateway) log() string {
	g.lg.Flush()
	return g.logs.String()
}

// failures returns rustygate_backend_failures_total for a reason.
func (g *logGateway) failures(t testing.TB, backend, reason string) float64 {
	t.Helper()
	mfs, err := g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rustygate_backend_failures_total" {
			continue
		}
		for _, m := range mf.Metric {
			if label(m, "backend") == backend && label(m, "reason") == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// httpsURL is the https:// URL of a test backend.
func httpsURL(b *tlsBackend) string { return b.URL }

// testPKI is a CA and a server certificate for 127.0.0.1 and
// backend.test, written to files.
type testPKI struct {
	ca             *testpki.CA
	caFile         string
	server         *testpki.Issued
	dir            string
	clientCert     string
	clientKey      string
	clientCA       *testpki.CA
	foreignCAFile  string
	foreignCA      *testpki.CA
	foreignBackend *testpki.Issued
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.ca = testpki.NewCA(t, "backend CA")
	p.caFile = p.ca.WriteCA(t, p.dir, "ca")
	p.server = p.ca.Issue(t, testpki.Spec{CN: "backend", Hosts: []string{"127.0.0.1", "backend.test"}})
	p.clientCA = testpki.NewCA(t, "client CA")
	client := p.clientCA.Issue(t, testpki.Spec{CN: "rustygate", Client: true})
	p.clientCert, p.clientKey = client.WriteFiles(t, p.dir, "client")
	p.foreignCA = testpki.NewCA(t, "foreign CA")
	p.foreignCAFile = p.foreignCA.WriteCA(t, p.dir, "foreign")
	return p
}

// TestBackendTLSPrivateCA: an https:// backend whose certificate a
// private CA issued answers through the gateway, on every engine; the
// backend connections are pooled, so N requests cost one handshake.
func TestBackendTLSPrivateCA(t *testing.T) {
	pki := newTestPKI(t)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			b := startTLSBackend(t, pki.server.TLS, nil)
			g := startLogGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q } }\n", httpsURL(b), pki.caFile))
			const n = 20
			for i := range n {
				code, raw := g.get(t, fmt.Sprintf("/r%d", i))
				if code != 200 || !strings.HasSuffix(raw, fmt.Sprintf("ok /r%d", i)) {
					t.Fatalf("request %d: %d\n%s\nlog:\n%s", i, code, raw, g.log())
				}
			}
			if h := b.handshakes.Load(); h != 1 {
				t.Errorf("%d handshakes with the backend for %d requests, want 1 (pooled connection)", h, n)
			}
			if p := b.alpn.Load(); p == nil || *p != "http/1.1" {
				t.Errorf("ALPN %q, want http/1.1 (the backend offers h2 too)", *p)
			}
			t.Logf("%d requests, %d backend handshakes", n, b.handshakes.Load())
		})
	}
}

// TestBackendTLSServerName: server_name is sent as SNI and verified; the
// URL may then name the backend by address. A backend's own server_name
// replaces the route's (min_version differs so that the second route has
// a pool of its own and handshakes).
func TestBackendTLSServerName(t *testing.T) {
	pki := newTestPKI(t)
	var sni atomic.Pointer[string]
	b := startTLSBackend(t, pki.server.TLS, func(c *tls.Config) {
		c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni.Store(&h.ServerName)
			return nil, nil
		}
	})
	g := startLogGateway(t, "fast", fmt.Sprintf(`  - { path: "/route", backend: %q, tls: { ca_file: %q, server_name: backend.test } }
  - { path: "/backend", backends: [ { url: %q, tls: { server_name: backend.test } } ], tls: { ca_file: %q, server_name: wrong.test, min_version: "1.3" } }
`, httpsURL(b), pki.caFile, httpsURL(b), pki.caFile))
	for _, path := range []string{"/route", "/backend"} {
		sni.Store(nil)
		if code, raw := g.get(t, path); code != 200 {
			t.Fatalf("%s: status %d\n%s", path, code, raw)
		}
		if got := sni.Load(); got == nil || *got != "backend.test" {
			t.Errorf("%s: SNI %v, want backend.test", path, got)
		}
	}
}

// TestBackendTLSFailures: a backend the proxy cannot verify, or that
// refuses the proxy, gets 502; the access line names the backend and what
// went wrong, and rustygate_backend_failures_total counts reason "tls".
func TestBackendTLSFailures(t *testing.T) {
	pki := newTestPKI(t)
	requireClient := func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pki.clientCA.Pool
	}
	cases := []struct {
		name   string
		server func(*tls.Config)
		tls    string
		want   string
	}{
		{"wrong server_name", nil, fmt.Sprintf("ca_file: %q, server_name: other.test", pki.caFile), "name mismatch"},
		{"unknown CA", nil, fmt.Sprintf("ca_file: %q", pki.foreignCAFile), "unknown authority"},
		{"system roots", nil, "{}", "unknown authority"},
		{"no client certificate", requireClient, fmt.Sprintf("ca_file: %q", pki.caFile), "refused by the backend"},
		{"TLS 1.3 only against a TLS 1.2 backend", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			fmt.Sprintf("ca_file: %q, min_version: \"1.3\"", pki.caFile), "refused by the backend"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startTLSBackend(t, pki.server.TLS, tc.server)
			tlsYAML := tc.tls
			if tlsYAML != "{}" {
				tlsYAML = "{ " + tlsYAML + " }"
			}
			g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, tls: %s, retries: { attempts: 0 } }\n", b.URL, tlsYAML))
			code, raw := g.get(t, "/")
			if code != 502 || !strings.Contains(raw, "backend TLS handshake failed") {
				t.Fatalf("status %d, want 502\n%s", code, raw)
			}
			line := accessLine(t, g)
			if !strings.Contains(line, "TLS to backend "+b.URL+": "+tc.want) {
				t.Errorf("access line does not say %q:\n%s", tc.want, line)
			}
			if v := g.failures(t, b.URL, "tls"); v != 1 {
				t.Errorf("rustygate_backend_failures_total{reason=tls} = %v, want 1", v)
			}
		})
	}
}

// accessLine returns the gateway's access line of its only request.
func accessLine(t testing.TB, g *logGateway) string {
	t.Helper()
	for _, l := range strings.Split(g.log(), "\n") {
		if strings.Contains(l, `"status":`) {
			return l
		}
	}
	t.Fatalf("no access line in\n%s", g.log())
	return ""
}

// TestBackendTLSInsecureSkipVerify: insecure_skip_verify accepts a
// certificate nothing verifies, and says so in the log at load.
func TestBackendTLSInsecureSkipVerify(t *testing.T) {
	pki := newTestPKI(t)
	b := startTLSBackend(t, pki.server.TLS, nil)
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { insecure_skip_verify: true } }\n", b.URL))
	if code, raw := g.get(t, "/"); code != 200 {
		t.Fatalf("status %d\n%s", code, raw)
	}
	if log := g.log(); !strings.Contains(log, "insecure_skip_verify") || !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, b.URL) {
		t.Errorf("no warning naming the backend at load:\n%s", log)
	}
}

// TestBackendMutualTLS: a backend that requires a client certificate
// accepts the one client_cert_file names.
func TestBackendMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	b := startTLSBackend(t, pki.server.TLS, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pki.clientCA.Pool
	})
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q, client_cert_file: %q, client_key_file: %q } }\n",
		b.URL, pki.caFile, pki.clientCert, pki.clientKey))
	if code, raw := g.get(t, "/"); code != 200 {
		t.Fatalf("status %d\n%s\n%s", code, raw, g.log())
	}
	if cn := b.clientCN.Load(); cn == nil || *cn != "rustygate" {
		t.Errorf("backend saw client certificate %v, want CN rustygate", cn)
	}
}

// TestBackendTLSResumption: connections the backend closes after each
// response are dialled again, and resume the session instead of a full
// handshake.
func TestBackendTLSResumption(t *testing.T) {
	pki := newTestPKI(t)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			b := startTLSBackend(t, pki.server.TLS, func(c *tls.Config) { c.MaxVersion = version })
			b.Config.SetKeepAlivesEnabled(false)
			g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q } }\n", b.URL, pki.caFile))
			const n = 10
			for i := range n {
				if code, raw := g.get(t, "/"); code != 200 {
					t.Fatalf("request %d: status %d\n%s", i, code, raw)
				}
			}
			h, r := b.handshakes.Load(), b.resumed.Load()
			t.Logf("%d requests on connections closed by the backend: %d handshakes, %d resumed", n, h, r)
			if h != n || r != n-1 {
				t.Errorf("%d handshakes, %d resumed; want %d and %d (all but the first resumed)", h, r, n, n-1)
			}
		})
	}
}

// TestBackendTLSHandshakeTimeout: a backend that accepts the connection
// but never answers the ClientHello gets 504 once timeouts.connect has
// passed, counted as a TLS failure.
func TestBackendTLSHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	url := "https://" + ln.Addr().String()
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, timeouts: { connect: 300ms }, retries: { attempts: 0 } }\n", url))
	start := time.Now()
	code, raw := g.get(t, "/")
	took := time.Since(start)
	t.Logf("504 after %v (connect timeout 300ms)", took)
	if code != 504 || !strings.Contains(raw, "backend TLS handshake timeout") {
		t.Fatalf("status %d, want 504\n%s", code, raw)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("answered after %v, want about the 300ms connect timeout", took)
	}
	if line := accessLine(t, g); !strings.Contains(line, "TLS to backend "+url+": handshake timeout") {
		t.Errorf("access line: %s", line)
	}
	if v := g.failures(t, url, "tls"); v != 1 {
		t.Errorf("failures{reason=tls} = %v, want 1", v)
	}
}

// TestBackendTLSRetry: a backend whose certificate does not verify is
// skipped for one that does: the request never reached it, so it is
// retried as a connect failure.
func TestBackendTLSRetry(t *testing.T) {
	pki := newTestPKI(t)
	foreign := pki.foreignCA.Issue(t, testpki.Spec{CN: "impostor", Hosts: []string{"127.0.0.1"}})
	bad := startTLSBackend(t, foreign.TLS, nil)
	good := startTLSBackend(t, pki.server.TLS, nil)
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backends: [ { url: %q }, { url: %q } ], tls: { ca_file: %q } }\n", bad.URL, good.URL, pki.caFile))
	for i := range 4 {
		if code, raw := g.get(t, "/"); code != 200 {
			t.Fatalf("request %d: status %d\n%s", i, code, raw)
		}
	}
	if v := g.failures(t, bad.URL, "tls"); v != 2 {
		t.Errorf("failures{backend=bad,reason=tls} = %v, want 2 (every other first attempt)", v)
	}
	if !strings.Contains(g.log(), `"reason":"tls"`) {
		t.Errorf("no retry logged with reason tls:\n%s", g.log())
	}
}

// TestBackendTLSReload: a configuration reload reads the client
// certificate files again: a renewed certificate is presented on the
// connections made after it, and connections verified before it are not
// reused.
func TestBackendTLSReload(t *testing.T) {
	pki := newTestPKI(t)
	b := startTLSBackend(t, pki.server.TLS, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pki.clientCA.Pool
	})
	routes := fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q, client_cert_file: %q, client_key_file: %q } }\n",
		b.URL, pki.caFile, pki.clientCert, pki.clientKey)
	g := startLogGateway(t, "fast", routes)
	if code, raw := g.get(t, "/"); code != 200 || *b.clientCN.Load() != "rustygate" {
		t.Fatalf("status %d, client %q\n%s", code, *b.clientCN.Load(), raw)
	}
	renewed := pki.clientCA.Issue(t, testpki.Spec{CN: "rustygate-renewed", Client: true})
	renewed.WriteFiles(t, pki.dir, "client")
	g.reload(t, "fast", routes)
	if code, raw := g.get(t, "/"); code != 200 {
		t.Fatalf("after reload: status %d\n%s", code, raw)
	}
	if cn := *b.clientCN.Load(); cn != "rustygate-renewed" {
		t.Errorf("after reload the backend saw %q, want the renewed certificate", cn)
	}
	if h := b.handshakes.Load(); h != 2 {
		t.Errorf("%d handshakes, want 2 (one per certificate)", h)
	}
}

// TestBackendClientCloseKeepsPool: a client that closes its connection
// after each request does not cost a new backend connection each time.
func TestBackendClientCloseKeepsPool(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			var conns atomic.Int64
			b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			b.Start()
			t.Cleanup(b.Close)
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", b.URL))
			for i := range 10 {
				raw, _ := rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				if statusOf(raw) != 200 {
					t.Fatalf("request %d:\n%s", i, raw)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d backend connections for 10 requests of closing clients, want 1", n)
			}
		})
	}
}

// TestBackendTLSHealthCheck: health checks of an https:// backend use the
// route's TLS settings: a backend whose certificate does not verify is
// marked down, with the reason, and requests get 503.
func TestBackendTLSHealthCheck(t *testing.T) {
	pki := newTestPKI(t)
	foreign := pki.foreignCA.Issue(t, testpki.Spec{CN: "impostor", Hosts: []string{"127.0.0.1"}})
	bad := startTLSBackend(t, foreign.TLS, nil)
	good := startTLSBackend(t, pki.server.TLS, nil)
	hc := "health_check: { path: /health, interval: 1s, timeout: 900ms, unhealthy_threshold: 1 }"
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/bad\", backend: %q, tls: { ca_file: %q }, %s }\n  - { path: \"/good\", backend: %q, tls: { ca_file: %q }, %s }\n",
		bad.URL, pki.caFile, hc, good.URL, pki.caFile, hc))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.log(), `"msg":"backend down"`) {
		if time.Now().After(deadline) {
			t.Fatalf("backend not marked down:\n%s", g.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range strings.Split(g.log(), "\n") {
		if strings.Contains(l, `"msg":"backend down"`) && (!strings.Contains(l, bad.URL) || !strings.Contains(l, "unknown authority")) {
			t.Errorf("down line does not name the bad backend and the reason: %s", l)
		}
	}
	if code, raw := g.get(t, "/bad"); code != 503 {
		t.Errorf("/bad: status %d, want 503\n%s", code, raw)
	}
	if code, raw := g.get(t, "/good"); code != 200 {
		t.Errorf("/good: status %d, want 200\n%s", code, raw)
	}
	if n := good.handshakes.Load(); n < 2 {
		t.Errorf("good backend: %d handshakes, want probes over TLS too", n)
	}
}

// BenchmarkProxyBackendTLS compares a keep-alive request through the fast
// engine to an HTTPS backend (TLS 1.3) with the same request to a plain
// HTTP backend, same server, in the same run: on a pooled backend
// connection ("pooled"), and on a new backend connection per request
// ("new-conn": the backend closes after each response; TLS resumes the
// session).
func BenchmarkProxyBackendTLS(b *testing.B) {
	pki := newTestPKI(b)
	body := strings.Repeat("x", 64)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	for _, reuse := range []string{"pooled", "new-conn"} {
		for _, scheme := range []string{"http", "https"} {
			b.Run(reuse+"/"+scheme, func(b *testing.B) {
				be := httptest.NewUnstartedServer(handler)
				be.Config.SetKeepAlivesEnabled(reuse == "pooled")
				routes := fmt.Sprintf("  - { path: \"/\", backend: %q }\n", "http://"+be.Listener.Addr().String())
				if scheme == "https" {
					be.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server.TLS}}
					be.StartTLS()
					routes = fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q } }\n", be.URL, pki.caFile)
				} else {
					be.Start()
				}
				b.Cleanup(be.Close)
				benchmarkGET(b, startGateway(b, "fast", routes).addr)
			})
		}
	}
}

// benchmarkGET sends GET requests on one keep-alive connection to addr.
func benchmarkGET(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestBackendTLSStalePooledConn: a pooled TLS connection the backend
// closed while idle (close_notify) is noticed, and the request goes out
// on a new connection that resumes the session.
func TestBackendTLSStalePooledConn(t *testing.T) {
	pki := newTestPKI(t)
	closed := make(chan struct{}, 4)
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Config.IdleTimeout = 100 * time.Millisecond
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	var resumed atomic.Int64
	b.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server.TLS}, VerifyConnection: func(cs tls.ConnectionState) error {
		if cs.DidResume {
			resumed.Add(1)
		}
		return nil
	}}
	b.StartTLS()
	t.Cleanup(b.Close)
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q } }\n", b.URL, pki.caFile))
	if code, raw := g.get(t, "/"); code != 200 {
		t.Fatalf("status %d\n%s", code, raw)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not close its idle connection")
	}
	if code, raw := g.get(t, "/"); code != 200 {
		t.Fatalf("after the backend closed the pooled connection: status %d\n%s\n%s", code, raw, g.log())
	}
	if resumed.Load() != 1 {
		t.Errorf("%d resumed handshakes, want 1", resumed.Load())
	}
}

// TestBackendTLSUpgrade: an Upgrade exchange with an https:// backend
// becomes a tunnel whose backend side is the TLS connection.
func TestBackendTLSUpgrade(t *testing.T) {
	pki := newTestPKI(t)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			b := startTLSBackendHandler(t, pki.server.TLS, func(w http.ResponseWriter, r *http.Request) {
				conn, rw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				rw.Flush()
				io.Copy(conn, rw) // echo until the client ends
			}, nil)
			g := startLogGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q, tls: { ca_file: %q } }\n", b.URL, pki.caFile))
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			for _, msg := range []string{"ping 1\n", "ping 2\n"} {
				io.WriteString(c, msg)
				if got, err := br.ReadString('\n'); got != msg {
					t.Fatalf("echo %q, %v; want %q", got, err, msg)
				}
			}
		})
	}
}
