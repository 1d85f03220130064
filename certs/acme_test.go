package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testacme"
)

const acmeHost = "app.test"

// acmeOptions are the ACME settings of a gateway served by front,
// ordering from p.
func acmeOptions(p *testacme.Pebble, front *acmeFront, storage string, challenges ...string) *ACME {
	return &ACME{
		Hosts: []string{acmeHost}, Email: "ops@example.com", CA: p.DirURL,
		Storage: storage, Challenges: challenges, CARootFile: p.CAFile,
		HTTPPort: front.httpPort(), TLSALPNPort: front.httpsPort(),
		renewCheck: 250 * time.Millisecond,
		retry:      []time.Duration{200 * time.Millisecond},
	}
}

// waitACMECert waits for m to hold an ACME certificate other than the
// serial not, and returns it.
func waitACMECert(t testing.TB, m *Manager, limit time.Duration, not string) CertInfo {
	t.Helper()
	var got CertInfo
	ok := waitFor(limit, func() bool {
		for _, c := range m.Certificates() {
			if c.ACME && c.Serial != not {
				got = c
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no new acme certificate within %s (have %+v)", limit, m.Certificates())
	}
	return got
}

// getHTTPS requests / from front as host, verifying the chain against
// roots, and returns the leaf served and the body.
func getHTTPS(t testing.TB, front *acmeFront, host string, roots *x509.CertPool) (*x509.Certificate, string) {
	t.Helper()
	leaf, body, err := tryHTTPS(front, &tls.Config{RootCAs: roots, ServerName: host})
	if err != nil {
		t.Fatalf("https %s: %v", host, err)
	}
	return leaf, body
}

// tryHTTPS requests / from front with the client config cfg.
func tryHTTPS(front *acmeFront, cfg *tls.Config) (*x509.Certificate, string, error) {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + front.httpsAddr() + "/")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.TLS.PeerCertificates[0], string(body), nil
}

// TestACMEHTTP01ObtainAndRenew obtains a certificate from Pebble, which
// validates http-01 against the plain listener for real, serves it over
// HTTPS with a chain that verifies against Pebble's root, and serves the
// renewed certificate (new serial) without a restart when the short
// lifetime Pebble gives comes near its end.
func TestACMEHTTP01ObtainAndRenew(t *testing.T) {
	front := newACMEFront(t)
	p := testacme.Start(t, testacme.Options{HTTPPort: front.httpPort(), TLSPort: front.httpsPort(), Validity: 12 * time.Second})
	logs := newTestLog(t)
	start := time.Now()
	var changes atomic.Int32
	m := startManager(t, Options{ACME: acmeOptions(p, front, t.TempDir(), ChallengeHTTP01), Logger: logs.logger(),
		OnChange: func() { changes.Add(1) }})
	front.serve(t, m)
	first := waitACMECert(t, m, 20*time.Second, "")
	t.Logf("certificate obtained from pebble in %s", time.Since(start).Round(time.Millisecond))
	if first.Name != acmeHost || first.NotAfter.Sub(first.NotBefore) > 13*time.Second {
		t.Fatalf("acme certificate %+v", first)
	}
	logs.waitLog(t, "served key authentication", "http-01", acmeHost)
	roots := p.IssuerRoots(t)
	leaf, body := getHTTPS(t, front, acmeHost, roots)
	if leaf.SerialNumber.Text(16) != first.Serial || body != "hello over HTTP/2.0" {
		t.Fatalf("served serial %s body %q, want %s over h2", leaf.SerialNumber.Text(16), body, first.Serial)
	}
	renewed := waitACMECert(t, m, 20*time.Second, first.Serial)
	t.Logf("renewed %s after %s", renewed.Serial, time.Since(start).Round(time.Millisecond))
	ok := waitFor(5*time.Second, func() bool {
		l, _ := getHTTPS(t, front, acmeHost, roots)
		return l.SerialNumber.Text(16) == renewed.Serial
	})
	if !ok || p.Issued() < 2 {
		t.Fatalf("renewed certificate %s not served (pebble issued %d)", renewed.Serial, p.Issued())
	}
	if !waitFor(2*time.Second, func() bool { return changes.Load() >= 2 }) {
		t.Fatalf("OnChange called %d times, want once for the certificate and once for its renewal", changes.Load())
	}
	checkChallengeRouting(t, front)
}

// checkChallengeRouting checks that a request under the challenge path
// that answers no challenge is routed, not swallowed.
func checkChallengeRouting(t testing.TB, front *acmeFront) {
	t.Helper()
	for _, host := range []string{acmeHost, "other.test"} {
		req, _ := http.NewRequest("GET", "http://"+front.plain.Addr().String()+"/.well-known/acme-challenge/unknowntoken", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "routed") {
			t.Fatalf("%s: unknown challenge token: %s %q, want it routed", host, resp.Status, body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestACMETLSALPN01 obtains a certificate validated by tls-alpn-01 on
// the HTTPS listener itself, beside a certificate file: the file serves
// its name, ACME the other, and a name neither covers fails the
// handshake without an order reaching the CA. The first request comes
// before the certificate: its handshake waits for it, and the storage
// lock keeps that wait from placing a second order.
func TestACMETLSALPN01(t *testing.T) {
	front := newACMEFront(t)
	p := testacme.Start(t, testacme.Options{HTTPPort: front.httpPort(), TLSPort: front.httpsPort(), Validity: time.Hour})
	ca := newCA(t, "files CA")
	files := writePair(t, t.TempDir(), "file", ca.issue(t, leafSpec{names: []string{"file.test"}}))
	logs := newTestLog(t)
	o := acmeOptions(p, front, t.TempDir(), ChallengeTLSALPN01)
	o.Hosts = append(o.Hosts, "file.test") // covered by the file: never ordered
	m := startManager(t, Options{Certificates: []PairFiles{files}, StrictSNI: true, ACME: o, Logger: logs.logger()})
	front.serve(t, m)
	roots := p.IssuerRoots(t)
	leaf, body := getHTTPS(t, front, acmeHost, roots)
	got := waitACMECert(t, m, 20*time.Second, "")
	logs.waitLog(t, "served key authentication", "tls-alpn-01", acmeHost)
	logs.waitLog(t, "acme host covered by a certificate file", "file.test")
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	if leaf.SerialNumber.Text(16) != got.Serial || body != "hello over HTTP/2.0" {
		t.Fatalf("served %s %q, want %s over h2", leaf.SerialNumber.Text(16), body, got.Serial)
	}
	if leaf, _ := getHTTPS(t, front, "file.test", ca.pool); leaf.DNSNames[0] != "file.test" {
		t.Fatalf("file.test served %v", leaf.DNSNames)
	}
	orders := p.Orders()
	_, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", front.httpsAddr(), &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "remote error: tls") {
		t.Fatalf("handshake for a name no certificate covers: %v, want it refused", err)
	}
	time.Sleep(200 * time.Millisecond) // an order would have reached the CA by now
	if n := p.Orders(); n != orders || len(m.Certificates()) != 2 {
		t.Fatalf("orders %d -> %d, certificates %+v", orders, n, m.Certificates())
	}
}

// TestACMESharedStorage runs two gateways on one storage directory, both
// starting at once for the same host: the storage lock lets one order
// reach the CA, and both serve the certificate it got. Pebble validates
// on the first gateway's listener, which answers the other's challenge
// too, from the shared storage.
func TestACMESharedStorage(t *testing.T) {
	a, b := newACMEFront(t), newACMEFront(t)
	p := testacme.Start(t, testacme.Options{HTTPPort: a.httpPort(), TLSPort: a.httpsPort(), Validity: time.Hour})
	storage := t.TempDir()
	oa := acmeOptions(p, a, storage, ChallengeHTTP01)
	ob := *oa
	ma := startManager(t, Options{ACME: oa})
	mb := startManager(t, Options{ACME: &ob})
	a.serve(t, ma)
	b.serve(t, mb)
	ca := waitACMECert(t, ma, 20*time.Second, "")
	cb := waitACMECert(t, mb, 20*time.Second, "")
	orders := p.Orders()
	if ca.Serial != cb.Serial || p.Issued() != 1 || orders != 1 {
		t.Fatalf("serials %s and %s, pebble took %d orders and issued %d certificates, want one shared", ca.Serial, cb.Serial, orders, p.Issued())
	}
	roots := p.IssuerRoots(t)
	la, _ := getHTTPS(t, a, acmeHost, roots)
	lb, _ := getHTTPS(t, b, acmeHost, roots)
	if la.SerialNumber.Cmp(lb.SerialNumber) != 0 || la.SerialNumber.Text(16) != ca.Serial {
		t.Fatalf("served %s and %s, want %s", la.SerialNumber.Text(16), lb.SerialNumber.Text(16), ca.Serial)
	}
}

// newTestLog returns a log buffer shown when the test fails.
func newTestLog(t testing.TB) *logBuffer {
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", b)
		}
	})
	return b
}

// TestACMEOptionsFromConfig maps server.tls.acme onto Options, with the
// Let's Encrypt shortcuts resolved, and a Manager refuses ACME settings
// that cannot work before starting anything.
func TestACMEOptionsFromConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse("acme.yaml", []byte("server:\n  tls:\n    acme: {email: ops@example.com, ca: staging, storage: "+dir+", challenges: [tls-alpn-01]}\nroutes:\n  - {path: /, host: www.example.com, backend: http://a}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := OptionsFromConfig(c.Server.TLS)
	if err != nil {
		t.Fatal(err)
	}
	want := &ACME{Hosts: []string{"www.example.com"}, Email: "ops@example.com", CA: LetsEncryptStaging, Storage: dir, Challenges: []string{ChallengeTLSALPN01}}
	if !reflect.DeepEqual(o.ACME, want) || len(o.Certificates) != 0 {
		t.Fatalf("acme options %+v, want %+v", o.ACME, want)
	}
	if ACMEDirectory("production") != LetsEncryptProduction || ACMEDirectory("https://ca.test/dir") != "https://ca.test/dir" {
		t.Error("ACMEDirectory")
	}
	for _, bad := range []ACME{
		{Storage: dir},
		{Hosts: []string{"a.test"}},
		{Hosts: []string{"a.test"}, Storage: dir, Challenges: []string{"dns-01"}},
		{Hosts: []string{"a.test"}, Storage: dir, CARootFile: filepath.Join(dir, "missing.pem")},
	} {
		if m, err := New(Options{ACME: &bad, Logger: slog.New(slog.DiscardHandler)}); err == nil {
			m.Close()
			t.Errorf("New accepted %+v", bad)
		}
	}
	m := startManager(t, Options{Certificates: []PairFiles{writePair(t, dir, "a", newCA(t, "ca").issue(t, leafSpec{names: []string{"a.test"}}))}})
	req, _ := http.NewRequest("GET", "http://a.test/.well-known/acme-challenge/token", nil)
	if m.HandleHTTPChallenge(nil, req) {
		t.Error("a manager without acme answered a challenge")
	}
}

// TestACMEUpdate changes the ACME hosts in a configuration reload: the
// new host gets its certificate, the old one keeps serving the one in
// storage without a new order, and dropping acme stops serving it.
func TestACMEUpdate(t *testing.T) {
	front := newACMEFront(t)
	p := testacme.Start(t, testacme.Options{HTTPPort: front.httpPort(), TLSPort: front.httpsPort(), Validity: time.Hour})
	o := acmeOptions(p, front, t.TempDir(), ChallengeHTTP01)
	m := startManager(t, Options{ACME: o})
	front.serve(t, m)
	first := waitACMECert(t, m, 20*time.Second, "")
	two := *o
	two.Hosts = []string{acmeHost, "two.test"}
	if err := m.Update(Options{ACME: &two}); err != nil {
		t.Fatal(err)
	}
	roots := p.IssuerRoots(t)
	if leaf, _ := getHTTPS(t, front, "two.test", roots); leaf.DNSNames[0] != "two.test" {
		t.Fatalf("two.test served %v", leaf.DNSNames)
	}
	if leaf, _ := getHTTPS(t, front, acmeHost, roots); leaf.SerialNumber.Text(16) != first.Serial {
		t.Fatalf("%s served %s after the reload, want %s", acmeHost, leaf.SerialNumber.Text(16), first.Serial)
	}
	if n := p.Orders(); n != 2 {
		t.Fatalf("%d orders, want 2", n)
	}
	ca := newCA(t, "files CA")
	files := writePair(t, t.TempDir(), "other", ca.issue(t, leafSpec{names: []string{"other.test"}}))
	if err := m.Update(Options{Certificates: []PairFiles{files}, StrictSNI: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tryHTTPS(front, &tls.Config{RootCAs: roots, ServerName: acmeHost}); err == nil || !strings.Contains(err.Error(), "remote error: tls") {
		t.Fatalf("acme host after acme was removed: %v, want the handshake refused", err)
	}
	if c := m.Certificates(); len(c) != 1 || c[0].ACME {
		t.Fatalf("certificates %+v", c)
	}
}

// TestACMETLSALPN01WithClientAuth validates tls-alpn-01 on a listener
// that requires client certificates: the CA's validation handshake
// carries none and must still succeed, while a client without one is
// refused the ACME certificate.
func TestACMETLSALPN01WithClientAuth(t *testing.T) {
	front := newACMEFront(t)
	p := testacme.Start(t, testacme.Options{HTTPPort: front.httpPort(), TLSPort: front.httpsPort(), Validity: time.Hour})
	clients := newCA(t, "client CA")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	writeFile(t, caFile, clients.pem)
	m := startManager(t, Options{ClientAuth: &ClientAuth{CAFile: caFile}, ACME: acmeOptions(p, front, t.TempDir(), ChallengeTLSALPN01)})
	front.serve(t, m)
	got := waitACMECert(t, m, 20*time.Second, "")
	roots := p.IssuerRoots(t)
	// TLS 1.3 clients learn of the refusal after their Finished: from the
	// alert, or from the closed connection when they write first.
	_, _, err := tryHTTPS(front, &tls.Config{RootCAs: roots, ServerName: acmeHost})
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("client without a certificate: %v, want the handshake refused", err)
	}
	c := clients.issue(t, leafSpec{cn: "alice", client: true})
	leaf, body, err := tryHTTPS(front, &tls.Config{RootCAs: roots, ServerName: acmeHost, Certificates: []tls.Certificate{c.tlsCert}})
	if err != nil || leaf.SerialNumber.Text(16) != got.Serial || body != "hello over HTTP/2.0" {
		t.Fatalf("client with a certificate: %v %q", err, body)
	}
}
