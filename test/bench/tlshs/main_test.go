package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer is an HTTPS server on loopback answering "hello" and counting
// the TLS connections it accepted; caFile holds its certificate.
func tlsServer(t *testing.T) (srv *httptest.Server, caFile string, conns *atomic.Int64) {
	t.Helper()
	conns = &atomic.Int64{}
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, conns
}

// foreignCA writes a self-signed ECDSA P-256 CA certificate that issued
// nothing the server serves.
func foreignCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "foreign CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "foreign.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func opts(url, caFile string) options {
	return options{url: url + "/", caFile: caFile, conc: 4, dur: 300 * time.Millisecond, bytes: 5, timeout: 2 * time.Second}
}

// TestFullHandshakes: every completed request is its own connection and
// handshake, TLS 1.3 with X25519, none resumed; the report's result line
// says so.
func TestFullHandshakes(t *testing.T) {
	srv, ca, conns := tlsServer(t)
	o := opts(srv.URL, ca)
	res, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	n := len(res.lat)
	if n < 10 || res.errs != 0 {
		t.Fatalf("completed %d, errors %d (first: %v); want at least 10 and none", n, res.errs, res.firstErr)
	}
	if res.resumed != 0 {
		t.Errorf("%d resumed handshakes with -resume=false", res.resumed)
	}
	if got := conns.Load(); got < int64(n) {
		t.Errorf("server saw %d connections for %d completed requests: connections were reused", got, n)
	}
	if st := res.state; st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519 {
		t.Errorf("negotiated %s with %s, want TLS 1.3 with X25519", tls.VersionName(st.Version), st.CurveID)
	}
	var out bytes.Buffer
	report(&out, o, res)
	line := regexp.MustCompile(`(?m)^result handshakes_per_sec=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ completed=(\d+) errors=0 resumed=0 client_cpu_us=[0-9.]+$`)
	m := line.FindStringSubmatch(out.String())
	if m == nil || m[1] != fmt.Sprint(n) {
		t.Errorf("report does not carry the result line with completed=%d:\n%s", n, out.String())
	}
}

// TestResume: with -resume the handshakes after the first ones resume.
func TestResume(t *testing.T) {
	srv, ca, _ := tlsServer(t)
	o := opts(srv.URL, ca)
	o.resume = true
	res, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.lat); n < 10 || res.errs != 0 || res.resumed < n/2 {
		t.Fatalf("completed %d, errors %d, resumed %d: want most handshakes resumed", n, res.errs, res.resumed)
	}
}

// TestVerifiesCertificate: a certificate not issued by -cacert, and a
// body of the wrong size, are errors, not completed handshakes.
func TestVerifiesCertificate(t *testing.T) {
	srv, ca, _ := tlsServer(t)
	res, err := run(opts(srv.URL, foreignCA(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.lat) != 0 || res.errs == 0 || !strings.Contains(fmt.Sprint(res.firstErr), "certificate") {
		t.Fatalf("foreign CA: completed %d, errors %d, first error %v; want only certificate errors", len(res.lat), res.errs, res.firstErr)
	}

	o := opts(srv.URL, ca)
	o.bytes = 64
	if res, err = run(o); err != nil {
		t.Fatal(err)
	}
	if len(res.lat) != 0 || res.errs == 0 || !strings.Contains(fmt.Sprint(res.firstErr), "want 64") {
		t.Fatalf("wrong body size: completed %d, errors %d, first error %v", len(res.lat), res.errs, res.firstErr)
	}
}
