package e2e_test

// End-to-end tests of TLS on `l4:` listeners through the real binary:
// passthrough routing by the ClientHello's server name (SNI) to TLS
// backends, which keep the session end to end, across a SIGHUP reload;
// TLS termination in front of a plain TCP service.

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testpki"
)

// sniCA issues the test's certificates.
type sniCA struct {
	*testpki.CA
	pool *x509.CertPool
}

func newSNICA(t *testing.T) *sniCA {
	ca := testpki.NewCA(t, "e2e l4 CA")
	return &sniCA{CA: ca, pool: ca.Pool}
}

// issue returns a certificate for names and writes it (with the CA after
// it) and its key as PEM files into dir.
func (ca *sniCA) issue(t *testing.T, dir string, names ...string) (tls.Certificate, string, string) {
	t.Helper()
	l := ca.Issue(t, testpki.Spec{Names: names})
	certFile, keyFile := l.Write(t, dir, strings.ReplaceAll(names[0], "*", "_"))
	c := l.TLS
	c.Leaf = l.Cert
	return c, certFile, keyFile
}

// sniBackend is a TLS server with cert that sends tag and a newline, then
// echoes until the client ends its side.
func sniBackend(t *testing.T, tag string, cert tls.Certificate) string {
	rb := newRawBackend(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			return
		}
		io.WriteString(tc, tag+"\n")
		io.Copy(tc, tc)
		tc.CloseWrite()
	})
	return rb.ln.Addr().String()
}

// sniExchange connects over TLS to addr for serverName, sends 1 MiB and
// checks the echo; it returns the backend's tag and the certificate the
// session was made with, and the client's local address.
func sniExchange(t *testing.T, addr, serverName string, roots *x509.CertPool) (string, *x509.Certificate, net.Conn) {
	t.Helper()
	raw := dialRaw(t, addr, 20*time.Second)
	tc := tls.Client(raw, &tls.Config{ServerName: serverName, RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake for %q through the gateway: %v", serverName, err)
	}
	payload := l4Data(uint64(len(serverName)), 1<<20)
	errc := make(chan error, 1)
	go func() {
		_, err := tc.Write(payload)
		if err == nil {
			err = tc.CloseWrite()
		}
		errc <- err
	}()
	r := bufio.NewReader(tc)
	tag, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%q: reading the backend's tag: %v", serverName, err)
	}
	got, err := io.ReadAll(r)
	if err != nil || <-errc != nil {
		t.Fatalf("%q: echo: %v", serverName, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("%q: echoed %d bytes, checksum differs from the %d sent", serverName, len(got), len(payload))
	}
	raw.Close()
	return strings.TrimSuffix(tag, "\n"), tc.ConnectionState().PeerCertificates[0], raw
}

// TestL4SNIPassthrough: two names reach two TLS backends, each session
// made with the backend's own certificate and the bytes intact both ways;
// an unknown name is closed; a reload moves a name to the other backend.
func TestL4SNIPassthrough(t *testing.T) {
	ca := newSNICA(t)
	dir := t.TempDir()
	dbCert, _, _ := ca.issue(t, dir, "db.example.com")
	appsCert, _, _ := ca.issue(t, dir, "*.apps.example.com", "db.example.com")
	db := sniBackend(t, "db", dbCert)
	apps := sniBackend(t, "apps", appsCert)
	listener := func(dbBackend string) string {
		return fmt.Sprintf(`  - name: edge
    listen: "127.0.0.1:0"
    handshake_timeout: 2s
    routes:
      - { name: db, sni: ["db.example.com"], backends: [ { addr: %q } ] }
      - { name: apps, sni: ["*.apps.example.com"], backends: [ { addr: %q } ] }
`, dbBackend, apps)
	}
	cfg := func(version, dbBackend string) hrCfg {
		return hrCfg{engine: hrEngine, version: version, routes: "  []\n", extra: "l4:\n" + listener(dbBackend)}
	}
	path := hrConfigFile(t, cfg("1", db))
	p := hrStart(t, path)
	lines := func() []map[string]any { return p.lines(0) }
	addr := l4Addr(t, lines, "edge")

	for _, tt := range []struct {
		sni, tag, route string
		cert            tls.Certificate
	}{
		{"db.example.com", "db", "db", dbCert},
		{"www.apps.example.com", "apps", "apps", appsCert},
	} {
		tag, peer, c := sniExchange(t, addr, tt.sni, ca.pool)
		if tag != tt.tag || !peer.Equal(tt.cert.Leaf) {
			t.Errorf("%s reached %q with the certificate of %v, want %s", tt.sni, tag, peer.DNSNames, tt.tag)
		}
		l := l4ConnLine(t, lines, "edge", c)
		if l["route"] != tt.route || l["sni"] != tt.sni || l["close"] != "eof" {
			t.Errorf("connection line %v, want route %s and sni %s", l, tt.route, tt.sni)
		}
	}

	c := dialRaw(t, addr, 5*time.Second)
	if err := tls.Client(c, &tls.Config{ServerName: "unknown.example.com", RootCAs: ca.pool}).Handshake(); err == nil {
		t.Fatal("an unknown name without default backends was proxied")
	}
	if l := l4ConnLine(t, lines, "edge", c); l["result"] != "no_route" || l["sni"] != "unknown.example.com" {
		t.Errorf("unknown name: connection line %v", l)
	}

	hrWrite(t, path, cfg("2", apps).yaml())
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("SIGHUP reload: %v", l)
	}
	if tag, peer, _ := sniExchange(t, addr, "db.example.com", ca.pool); tag != "apps" || !peer.Equal(appsCert.Leaf) {
		t.Fatalf("after the reload db.example.com reached %q", tag)
	}
}

// TestL4TLSTermination: an l4 listener with tls terminates TLS with its
// certificate and relays the plaintext to a plain TCP backend; a client
// speaking plain HTTP to it is closed at once; a reload after the
// certificate file was replaced by garbage fails and the listener goes on
// with the pair it has; a renewed pair is served after a reload.
func TestL4TLSTermination(t *testing.T) {
	ca := newSNICA(t)
	_, certFile, keyFile := ca.issue(t, t.TempDir(), "tcp.example.com")
	plain := newRawBackend(t, func(c net.Conn) {
		io.WriteString(c, "plain\n")
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	l4 := l4Listener("term", []string{plain.ln.Addr().String()},
		"tls: { cert_file: "+certFile+", key_file: "+keyFile+" }")
	path := hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: "  []\n", extra: "l4:\n" + l4})
	p := hrStart(t, path)
	lines := func() []map[string]any { return p.lines(0) }
	addr := l4Addr(t, lines, "term")
	tag, peer, _ := sniExchange(t, addr, "tcp.example.com", ca.pool)
	if tag != "plain" || peer.Subject.CommonName != "tcp.example.com" {
		t.Fatalf("got %q with the certificate of %s", tag, peer.Subject.CommonName)
	}
	c := dialRaw(t, addr, 5*time.Second)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: tcp.example.com\r\n\r\n")
	start := time.Now()
	io.Copy(io.Discard, c)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("plain HTTP closed after %s", d)
	}
	if l := l4ConnLine(t, lines, "term", c); l["result"] != "hello_failed" || l["reason"] != "not_tls" {
		t.Errorf("plain HTTP: connection line %v", l)
	}

	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := p.sighup(t)
	if l["msg"] != hrMsgFailed || !strings.Contains(fmt.Sprint(l), "l4[0].tls.cert_file") {
		t.Fatalf("reload with a broken certificate: %v", l)
	}
	if tag, got, _ := sniExchange(t, addr, "tcp.example.com", ca.pool); tag != "plain" || !got.Equal(peer) {
		t.Fatalf("after the failed reload got %q with serial %v", tag, got.SerialNumber)
	}

	// A renewed pair is served after the next reload.
	renewed, newCert, newKey := ca.issue(t, t.TempDir(), "tcp.example.com")
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		if err := os.Rename(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("reload with the renewed certificate: %v", l)
	}
	if _, got, _ := sniExchange(t, addr, "tcp.example.com", ca.pool); !got.Equal(renewed.Leaf) {
		t.Fatalf("after the reload the old certificate (serial %v) is served", got.SerialNumber)
	}
}
