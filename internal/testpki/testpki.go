// Package testpki makes the certificate authorities, server and client
// certificates that tests serve and trust, and writes them as PEM files
// the gateway's configuration can name. It is for tests only.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made by a test.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is the CA certificate; Pool trusts it.
	PEM  []byte
	Pool *x509.CertPool
}

// NewCA makes an ECDSA P-256 CA valid from an hour ago for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
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
	return &CA{Cert: cert, Key: key, PEM: PEMBlock("CERTIFICATE", der), Pool: pool}
}

// Spec describes a certificate to issue.
type Spec struct {
	// Names are the DNS SANs; IPs the IP SANs; CN the subject's common
	// name (default: the first name).
	Names []string
	IPs   []net.IP
	CN    string
	// Client issues a client (not server) authentication certificate.
	Client bool
	// NotAfter defaults to 12 hours from now.
	NotAfter time.Time
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	Cert *x509.Certificate
	// ChainPEM is the leaf then the CA; KeyPEM the PKCS #8 key.
	ChainPEM, KeyPEM []byte
	TLS              tls.Certificate
}

// Serial is the leaf's serial number in hex.
func (l *Leaf) Serial() string { return l.Cert.SerialNumber.Text(16) }

// Issue issues an ECDSA P-256 certificate signed by ca.
func (ca *CA) Issue(t testing.TB, s Spec) *Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.CN == "" && len(s.Names) > 0 {
		s.CN = s.Names[0]
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Now().Add(12 * time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if s.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: s.CN, Organization: []string{"RustyGate Test"}},
		DNSNames:     s.Names,
		IPAddresses:  s.IPs,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     s.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{ChainPEM: append(PEMBlock("CERTIFICATE", der), ca.PEM...), KeyPEM: PEMBlock("PRIVATE KEY", kder)}
	l.Cert, _ = x509.ParseCertificate(der)
	if l.TLS, err = tls.X509KeyPair(l.ChainPEM, l.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return l
}

// Write writes the chain and key into dir as NAME.crt and NAME.key, each
// by a rename (a reader never sees half a file), and returns the paths.
func (l *Leaf) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	WriteFile(t, keyFile, l.KeyPEM)
	WriteFile(t, certFile, l.ChainPEM)
	return certFile, keyFile
}

// WriteFile writes data to path by a rename.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// PEMBlock encodes der as one PEM block.
func PEMBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}
