package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/rustygate/rustygate/internal/testacme"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	pool *x509.CertPool
}

var serials atomic.Int64

func nextSerial() *big.Int { return big.NewInt(1000 + serials.Add(1)) }

func newCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pemBlock("CERTIFICATE", der), pool: pool}
}

// leafSpec describes a certificate to issue.
type leafSpec struct {
	names     []string
	ips       []net.IP
	cn        string
	keyType   string // ecdsa (default), rsa, ed25519
	keyFormat string // pkcs8 (default), pkcs1 (rsa), sec1 (ecdsa)
	notBefore time.Time
	notAfter  time.Time
	ocsp      string
	client    bool
	serial    *big.Int
}

// issued is a certificate and its key, as PEM.
type issued struct {
	cert      *x509.Certificate
	chainPEM  []byte // leaf, then the CA
	keyPEM    []byte
	tlsCert   tls.Certificate
	serialHex string
}

func (ca *testCA) issue(t testing.TB, s leafSpec) *issued {
	t.Helper()
	key := newKey(t, s.keyType)
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(12 * time.Hour)
	}
	if s.serial == nil {
		s.serial = nextSerial()
	}
	usage := x509.ExtKeyUsageServerAuth
	if s.client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: s.serial,
		Subject:      pkix.Name{CommonName: s.cn, Organization: []string{"RustyGate Test"}},
		DNSNames:     s.names,
		IPAddresses:  s.ips,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if s.ocsp != "" {
		tmpl.OCSPServer = []string{s.ocsp}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyPEM := encodeKey(t, key, s.keyFormat)
	chain := append(pemBlock("CERTIFICATE", der), ca.pem...)
	tc, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, chainPEM: chain, keyPEM: keyPEM, tlsCert: tc, serialHex: s.serial.Text(16)}
}

func newKey(t testing.TB, typ string) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch typ {
	case "", "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key type %q", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func encodeKey(t testing.TB, key crypto.Signer, format string) []byte {
	t.Helper()
	switch format {
	case "pkcs1":
		return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey)))
	case "sec1":
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("EC PRIVATE KEY", der)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile writes data to path by a rename, as editors and renewal
// tools do, so a reader never sees half a file.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writePair writes c's chain and key into dir as NAME.crt and NAME.key.
func writePair(t testing.TB, dir, name string, c *issued) PairFiles {
	t.Helper()
	f := PairFiles{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	writeFile(t, f.CertFile, c.chainPEM)
	writeFile(t, f.KeyFile, c.keyPEM)
	return f
}

// newManager starts a Manager closed at cleanup.
func startManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// serveTLS accepts TLS connections on loopback with cfg until cleanup:
// each handshakes, writes one byte (so a TLS 1.3 client reads its
// session tickets) and waits for the client to close.
func serveTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() != nil {
					return
				}
				tc.Write([]byte{'x'})
				io.Copy(io.Discard, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial handshakes with the server at addr and reads its byte; it returns
// the connection state, or the handshake (or first read) error.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// clientFor returns a client config trusting ca and asking for name.
func clientFor(ca *testCA, name string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: name}
}

// servedSerial handshakes and returns the serial of the leaf served.
func servedSerial(t testing.TB, addr string, cfg *tls.Config) string {
	t.Helper()
	cs, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.PeerCertificates[0].SerialNumber.Text(16)
}

// waitFor polls cond until it holds or limit passes.
var waitFor = testacme.WaitFor

// logBuffer is a slog handler target that tests can wait on.
type logBuffer struct{ testacme.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits up to 5s for a log line holding every part.
func (b *logBuffer) waitLog(t testing.TB, parts ...string) string {
	t.Helper()
	var found string
	ok := waitFor(5*time.Second, func() bool {
		for _, line := range strings.Split(b.String(), "\n") {
			if containsAll(line, parts) {
				found = line
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no log line with %q; log:\n%s", parts, b.String())
	}
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// pairErr returns err as a *PairError or fails.
func pairErr(t testing.TB, err error) *PairError {
	t.Helper()
	var pe *PairError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *PairError", err, err)
	}
	return pe
}
