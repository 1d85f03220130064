package certs

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// clientAuthFixture serves a.example.com asking for client certificates
// issued by clientCA.
type clientAuthFixture struct {
	serverCA, clientCA, foreignCA *testCA
	addr                          string
}

func newClientAuthFixture(t *testing.T, mode string) *clientAuthFixture {
	f := &clientAuthFixture{serverCA: newCA(t, "Server CA"), clientCA: newCA(t, "Client CA"), foreignCA: newCA(t, "Foreign CA")}
	dir := t.TempDir()
	pair := writePair(t, dir, "a", f.serverCA.issue(t, leafSpec{names: []string{"a.example.com"}}))
	caFile := filepath.Join(dir, "clients.pem")
	writeFile(t, caFile, f.clientCA.pem)
	m := startManager(t, Options{Certificates: []PairFiles{pair}, ClientAuth: &ClientAuth{CAFile: caFile, Mode: mode}})
	f.addr = serveTLS(t, m.TLSConfig(nil))
	return f
}

// client returns a client config presenting a certificate of ca (none
// when ca is nil).
func (f *clientAuthFixture) client(t *testing.T, ca *testCA, v uint16) *tls.Config {
	cfg := clientFor(f.serverCA, "a.example.com")
	cfg.MaxVersion = v
	if ca != nil {
		c := ca.issue(t, leafSpec{
			cn: "alice", names: []string{"alice.clients.example.com"}, ips: []net.IP{net.IPv4(192, 0, 2, 7)}, client: true,
		})
		// Presented whatever CAs the server names, as a client that
		// does not look at them would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c.tlsCert, nil }
	}
	return cfg
}

func TestClientAuthRequire(t *testing.T) {
	f := newClientAuthFixture(t, ClientAuthRequire)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if _, err := dial(f.addr, f.client(t, f.clientCA, v)); err != nil {
			t.Errorf("%s: a good client certificate was refused: %v", tls.VersionName(v), err)
		}
		if _, err := dial(f.addr, f.client(t, nil, v)); err == nil {
			t.Errorf("%s: a client without a certificate was accepted", tls.VersionName(v))
		}
		if _, err := dial(f.addr, f.client(t, f.foreignCA, v)); err == nil {
			t.Errorf("%s: a certificate of a foreign CA was accepted", tls.VersionName(v))
		}
	}
}

func TestClientAuthOptional(t *testing.T) {
	f := newClientAuthFixture(t, ClientAuthOptional)
	if _, err := dial(f.addr, f.client(t, nil, 0)); err != nil {
		t.Errorf("optional: a client without a certificate was refused: %v", err)
	}
	if _, err := dial(f.addr, f.client(t, f.clientCA, 0)); err != nil {
		t.Errorf("optional: a good certificate was refused: %v", err)
	}
	if _, err := dial(f.addr, f.client(t, f.foreignCA, 0)); err == nil {
		t.Error("optional: a certificate of a foreign CA was accepted")
	}
}

// TestClientIdentityHelpers checks what a server sees of a verified
// client: it handshakes with a server-side tls.Conn to read its state.
func TestClientIdentityHelpers(t *testing.T) {
	serverCA, clientCA := newCA(t, "Server CA"), newCA(t, "Client CA")
	dir := t.TempDir()
	pair := writePair(t, dir, "a", serverCA.issue(t, leafSpec{names: []string{"a.example.com"}}))
	caFile := filepath.Join(dir, "clients.pem")
	writeFile(t, caFile, clientCA.pem)
	m := startManager(t, Options{Certificates: []PairFiles{pair}, ClientAuth: &ClientAuth{CAFile: caFile}})
	alice := clientCA.issue(t, leafSpec{cn: "alice\r\nX-Admin: 1", names: []string{"alice.example.com"}, ips: []net.IP{net.IPv4(192, 0, 2, 7)}, client: true})

	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	done := make(chan tls.ConnectionState, 1)
	go func() {
		sc := tls.Server(server, m.TLSConfig(nil))
		sc.Handshake()
		done <- sc.ConnectionState()
	}()
	cfg := clientFor(serverCA, "a.example.com")
	cfg.Certificates = []tls.Certificate{alice.tlsCert}
	if err := tls.Client(client, cfg).Handshake(); err != nil {
		t.Fatal(err)
	}
	cs := <-done
	if got := ClientSubject(&cs); got != `CN=alice\x0D\x0AX-Admin: 1,O=RustyGate Test` {
		t.Errorf("subject %q", got)
	}
	if got := ClientSANHeader(&cs); got != "DNS:alice.example.com, IP:192.0.2.7" {
		t.Errorf("SANs %q", got)
	}
	if ClientSubject(&tls.ConnectionState{}) != "" || ClientSANs(nil) != nil {
		t.Error("helpers report an identity for a connection without a verified certificate")
	}
	if got := HeaderSafe("caf\xc3\xa9\x00\x7f ok"); got != `caf\xC3\xA9\x00\x7F ok` || strings.ContainsAny(got, "\x00\r\n") {
		t.Errorf("HeaderSafe = %q", got)
	}
}

func TestLoadClientCAs(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "CA")
	good, garbage := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "garbage.pem")
	writeFile(t, good, append(append([]byte{}, ca.pem...), newCA(t, "CA2").pem...))
	writeFile(t, garbage, []byte("hello"))
	if _, err := LoadClientCAs(good); err != nil {
		t.Error(err)
	}
	for file, reason := range map[string]string{garbage: ReasonNoCertificate, filepath.Join(dir, "none.pem"): ReasonUnreadable} {
		if _, err := LoadClientCAs(file); err == nil || !strings.HasPrefix(err.Error(), file+": "+reason) {
			t.Errorf("LoadClientCAs(%s) = %v, want %q", file, err, reason)
		}
	}
	if _, err := New(Options{Certificates: []PairFiles{{"x", "y"}}, ClientAuth: &ClientAuth{CAFile: good, Mode: "sometimes"}}); err == nil {
		t.Error("unknown mode accepted")
	}
}
