package e2e_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rustygate/rustygate/internal/testpki"
)

// TestBackendTLS: the gateway process speaks HTTPS to a backend whose
// certificate a private CA issued and that requires a client certificate;
// connections are pooled and reused. A route with a wrong server_name
// answers 502, and the access line and
// rustygate_backend_failures_total{reason="tls"} say why.
func TestBackendTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "backend CA")
	caFile := ca.WriteCA(t, dir, "ca")
	clientCA := testpki.NewCA(t, "client CA")
	clientCert, clientKey := clientCA.Issue(t, testpki.Spec{CN: "gateway", Client: true}).WriteFiles(t, dir, "client")
	var handshakes atomic.Int64
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over %s", r.TLS.PeerCertificates[0].Subject.CommonName, tls.VersionName(r.TLS.Version))
	}))
	b.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, testpki.Spec{CN: "backend", Hosts: []string{"127.0.0.1"}}).TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool,
		VerifyConnection: func(tls.ConnectionState) error {
			handshakes.Add(1)
			return nil
		},
	}
	b.Config.ErrorLog = log.New(io.Discard, "", 0) // the wrong-name route's refusals
	b.StartTLS()
	t.Cleanup(b.Close)

	tlsKeys := fmt.Sprintf("ca_file: %q, client_cert_file: %q, client_key_file: %q", caFile, clientCert, clientKey)
	routes := fmt.Sprintf(`  - { path: "/good", backend: %q, tls: { %s } }
  - { path: "/wrong-name", backend: %q, tls: { %s, server_name: other.test }, retries: { attempts: 0 } }
`, b.URL, tlsKeys, b.URL, tlsKeys)
	g := startGateway(t, "fast", upConfig("fast", true, routes))
	c := newClient(t)
	const n = 10
	for i := range n {
		resp, body := get(t, c, g.URL()+"/good")
		if resp.StatusCode != 200 || string(body) != "hello gateway over TLS 1.3" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if h := handshakes.Load(); h != 1 {
		t.Errorf("%d backend handshakes for %d requests, want 1", h, n)
	}

	resp, _ := get(t, c, g.URL()+"/wrong-name")
	if resp.StatusCode != 502 {
		t.Fatalf("wrong server_name: status %d, want 502", resp.StatusCode)
	}
	l := g.accessLine(t, resp.Header.Get("X-Request-Id"))
	if msg, _ := l["error"].(string); !strings.Contains(msg, "TLS to backend "+b.URL+": name mismatch") {
		t.Errorf("access line error %q", msg)
	}
	m := upScrape(t, c, adminAddr(t, g))
	if v, _ := upMetricSum(m, "rustygate_backend_failures_total", map[string]string{"route": "/wrong-name", "backend": b.URL, "reason": "tls"}); v != 1 {
		t.Errorf(`rustygate_backend_failures_total{reason="tls"} = %v, want 1`, v)
	}
}

// TestValidateBackendTLS: `rustygate validate` reads the files of a
// backend's tls section and reports a mismatched client key and a CA file
// without certificates at their lines.
func TestValidateBackendTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "client CA")
	cert, _ := ca.Issue(t, testpki.Spec{CN: "a", Client: true}).WriteFiles(t, dir, "a")
	_, otherKey := ca.Issue(t, testpki.Spec{CN: "b", Client: true}).WriteFiles(t, dir, "b")
	emptyCA := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyCA, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfig("fast", fmt.Sprintf(`  - path: /a
    backend: https://127.0.0.1:9443
    tls:
      ca_file: %s
      client_cert_file: %s
      client_key_file: %s
`, emptyCA, cert, otherKey))
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runValidate(t, path)
	out := stdout + stderr
	if code == 0 {
		t.Fatalf("validate accepted the file:\n%s", out)
	}
	lines := strings.Split(cfg, "\n")
	lineOf := func(key string) int {
		for i, l := range lines {
			if strings.Contains(l, key+":") {
				return i + 1
			}
		}
		return 0
	}
	for _, want := range []string{
		fmt.Sprintf("%s:%d: routes[0].tls.ca_file: %s: no certificate", path, lineOf("ca_file"), emptyCA),
		fmt.Sprintf("%s:%d: routes[0].tls.client_key_file: %s: key does not match certificate", path, lineOf("client_key_file"), otherKey),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}
