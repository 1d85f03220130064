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
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testpki"
)

// sniCA issues the test's certificates.
type sniCA struct{ *testpki.CA }

func newSNICA(t *testing.T) sniCA { return sniCA{testpki.NewCA(t, "e2e l4 CA")} }

// issue returns a certificate for names and writes it and its key as PEM
// files into dir.
func (ca sniCA) issue(t *testing.T, dir string, names ...string) (tls.Certificate, string, string) {
	t.Helper()
	c := ca.Issue(t, testpki.Spec{CN: names[0], Hosts: names})
	certFile, keyFile := c.WriteFiles(t, dir, strings.ReplaceAll(names[0], "*", "_"))
	return c.TLS, certFile, keyFile
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
		tag, peer, c := sniExchange(t, addr, tt.sni, ca.Pool)
		if tag != tt.tag || !peer.Equal(tt.cert.Leaf) {
			t.Errorf("%s reached %q with the certificate of %v, want %s", tt.sni, tag, peer.DNSNames, tt.tag)
		}
		l := l4ConnLine(t, lines, "edge", c)
		if l["route"] != tt.route || l["sni"] != tt.sni || l["close"] != "eof" {
			t.Errorf("connection line %v, want route %s and sni %s", l, tt.route, tt.sni)
		}
	}

	c := dialRaw(t, addr, 5*time.Second)
	if err := tls.Client(c, &tls.Config{ServerName: "unknown.example.com", RootCAs: ca.Pool}).Handshake(); err == nil {
		t.Fatal("an unknown name without default backends was proxied")
	}
	if l := l4ConnLine(t, lines, "edge", c); l["result"] != "no_route" || l["sni"] != "unknown.example.com" {
		t.Errorf("unknown name: connection line %v", l)
	}

	hrWrite(t, path, cfg("2", apps).yaml())
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("SIGHUP reload: %v", l)
	}
	if tag, peer, _ := sniExchange(t, addr, "db.example.com", ca.Pool); tag != "apps" || !peer.Equal(appsCert.Leaf) {
		t.Fatalf("after the reload db.example.com reached %q", tag)
	}
}

// TestL4TLSTermination: an l4 listener with tls terminates TLS with its
// certificate and relays the plaintext to a plain TCP backend; a client
// speaking plain HTTP to it is closed at once. The certificate files are
// watched: garbage written over the certificate is refused with a log
// line naming the file while the pair loaded keeps serving (and a reload
// then fails at the config line naming the file); a renewed pair renamed
// into place is served within 2 s, with no reload.
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
	path := hrConfigFile(t, hrCfg{engine: hrEngine, admin: "127.0.0.1:0", version: "1", routes: "  []\n", extra: "l4:\n" + l4})
	p := hrStart(t, path)
	lines := func() []map[string]any { return p.lines(0) }
	addr := l4Addr(t, lines, "term")
	tag, peer, _ := sniExchange(t, addr, "tcp.example.com", ca.Pool)
	if tag != "plain" || peer.Subject.CommonName != "tcp.example.com" {
		t.Fatalf("got %q with the certificate of %s", tag, peer.Subject.CommonName)
	}
	series := fmt.Sprintf(`rustygate_tls_certificate_expiry_timestamp_seconds{file=%q,name=%q}`, certFile, "tcp.example.com")
	if v := hrMetric(t, newClient(t), p.admin, series); int64(v) != peer.NotAfter.Unix() {
		t.Errorf("%s = %v, want %d", series, v, peer.NotAfter.Unix())
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

	l4Garbage(t, p, ca, addr, certFile, peer)
	l4Renewal(t, p, ca, addr, certFile, keyFile)
}

// l4Garbage writes garbage over the certificate of the listener at addr,
// which serves peer: the watcher refuses it with a log line, peer keeps
// serving, and a reload fails at the line of l4[0].tls.cert_file.
func l4Garbage(t *testing.T, p *hrProc, ca sniCA, addr, certFile string, peer *x509.Certificate) {
	t.Helper()
	from := p.lineCount()
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := p.waitLine(t, from, 5*time.Second, "the refused certificate", func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "certificate reload refused") && l["file"] == certFile
	})
	if l["listener"] != "term" || l["reason"] != "no certificate" {
		t.Errorf("refusal line %v", l)
	}
	if tag, got, _ := sniExchange(t, addr, "tcp.example.com", ca.Pool); tag != "plain" || !got.Equal(peer) {
		t.Fatalf("after the garbage file got %q with serial %v", tag, got.SerialNumber)
	}
	l = p.sighup(t)
	if l["msg"] != hrMsgFailed || !strings.Contains(fmt.Sprint(l), "l4[0].tls.cert_file: "+certFile+": no certificate") {
		t.Fatalf("reload with a broken certificate: %v", l)
	}
	if got := servedLeaf(t, addr, "tcp.example.com"); !got.Equal(peer) {
		t.Fatalf("after the failed reload serial %v is served", got.SerialNumber)
	}
}

// l4Renewal renames a renewed pair over the files of the listener at
// addr and polls handshakes until it is served: within 2 s, with no
// reload.
func l4Renewal(t *testing.T, p *hrProc, ca sniCA, addr, certFile, keyFile string) {
	t.Helper()
	renewed, newCert, newKey := ca.issue(t, t.TempDir(), "tcp.example.com")
	written := time.Now()
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		if err := os.Rename(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	for !servedLeaf(t, addr, "tcp.example.com").Equal(renewed.Leaf) {
		if time.Since(written) > 2*time.Second {
			t.Fatal("the renewed certificate is not served 2s after the files were replaced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("renewed certificate served %v after the files were replaced", time.Since(written).Round(time.Millisecond))
	if tag, got, _ := sniExchange(t, addr, "tcp.example.com", ca.Pool); tag != "plain" || !got.Equal(renewed.Leaf) {
		t.Fatalf("with the renewed certificate got %q with serial %v", tag, got.SerialNumber)
	}
	for _, l := range p.lines(0) {
		if l["msg"] == hrMsgReloaded {
			t.Fatalf("the gateway reloaded its configuration: %v", l)
		}
	}
}

// TestL4TLSValidate: rustygate validate reads the pair of an l4
// listener's tls and reports a key that does not match its certificate,
// and an expired certificate, at the config line of the entry.
func TestL4TLSValidate(t *testing.T) {
	ca := newSNICA(t)
	dir := t.TempDir()
	_, certFile, _ := ca.issue(t, dir, "tcp.example.com")
	_, _, otherKey := ca.issue(t, dir, "other.example.com")
	old := ca.Issue(t, testpki.Spec{Hosts: []string{"old.example.com"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	oldCert, oldKey := old.WriteFiles(t, dir, "old.example.com")
	for _, tt := range []struct{ name, cert, key, want string }{
		{"mismatched key", certFile, otherKey, "l4[0].tls.key_file: " + otherKey + ": key does not match certificate"},
		{"expired", oldCert, oldKey, "l4[0].tls.cert_file: " + oldCert + ": expired (not after "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l4 := l4Listener("term", []string{"127.0.0.1:9"}, "tls: { cert_file: "+tt.cert+", key_file: "+tt.key+" }")
			cfg := hrCfg{engine: hrEngine, version: "1", routes: "  []\n", extra: "l4:\n" + l4}
			path := hrConfigFile(t, cfg)
			line := 1 + slices.IndexFunc(strings.Split(cfg.yaml(), "\n"), func(s string) bool {
				return strings.Contains(s, "tls: { cert_file:")
			})
			out, err := exec.Command(gatewayBin, "validate", path).CombinedOutput()
			if want := fmt.Sprintf("%s:%d: %s", path, line, tt.want); err == nil || !strings.Contains(string(out), want) {
				t.Errorf("validate: %v\n%s\nwant a line starting %q", err, out, want)
			}
		})
	}
}
