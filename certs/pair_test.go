package certs

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPairKeyFormats(t *testing.T) {
	ca := newCA(t, "Test CA")
	for _, tc := range []struct{ keyType, format string }{
		{"ecdsa", "pkcs8"}, {"ecdsa", "sec1"}, {"rsa", "pkcs1"}, {"rsa", "pkcs8"}, {"ed25519", "pkcs8"},
	} {
		t.Run(tc.keyType+"/"+tc.format, func(t *testing.T) {
			c := ca.issue(t, leafSpec{names: []string{"Api.Example.com"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, keyType: tc.keyType, keyFormat: tc.format})
			f := writePair(t, t.TempDir(), "a", c)
			p, err := LoadPair(f.CertFile, f.KeyFile, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(p.Certificate.Certificate); n != 2 {
				t.Errorf("chain has %d certificates, want leaf and CA", n)
			}
			if p.Leaf().SerialNumber.Text(16) != c.serialHex {
				t.Errorf("leaf serial %s, want %s", p.Leaf().SerialNumber.Text(16), c.serialHex)
			}
			if len(p.DNSNames) != 1 || p.DNSNames[0] != "api.example.com" {
				t.Errorf("DNS names %q, want lower-cased [api.example.com]", p.DNSNames)
			}
			if len(p.IPs) != 1 || p.IPs[0].String() != "127.0.0.1" {
				t.Errorf("IPs %v", p.IPs)
			}
		})
	}
}

func TestLoadPairRefusals(t *testing.T) {
	ca := newCA(t, "Test CA")
	dir := t.TempDir()
	good := ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	other := ca.issue(t, leafSpec{names: []string{"b.example.com"}})
	expired := ca.issue(t, leafSpec{names: []string{"a.example.com"}, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	future := ca.issue(t, leafSpec{names: []string{"a.example.com"}, notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(48 * time.Hour)})
	noSAN := ca.issue(t, leafSpec{cn: "a.example.com"})
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	goodCert, goodKey := write("good.crt", good.chainPEM), write("good.key", good.keyPEM)
	badDER := pemBlock("CERTIFICATE", []byte("not DER"))
	tests := []struct {
		name       string
		cert, key  string
		wantFile   string
		wantReason string
	}{
		{"cert missing", filepath.Join(dir, "none.crt"), goodKey, filepath.Join(dir, "none.crt"), ReasonUnreadable},
		{"key missing", goodCert, filepath.Join(dir, "none.key"), filepath.Join(dir, "none.key"), ReasonUnreadable},
		{"garbage cert", write("garbage.crt", []byte("garbage\n")), goodKey, filepath.Join(dir, "garbage.crt"), ReasonNoCertificate},
		{"bad DER", write("der.crt", badDER), goodKey, filepath.Join(dir, "der.crt"), ReasonBadCertificate},
		{"key file with a certificate only", goodCert, write("nokey.key", good.chainPEM), filepath.Join(dir, "nokey.key"), ReasonNoKey},
		{"bad key", goodCert, write("bad.key", pemBlock("PRIVATE KEY", []byte("junk"))), filepath.Join(dir, "bad.key"), ReasonBadKey},
		{"encrypted key", goodCert, write("enc.key", pemBlock("ENCRYPTED PRIVATE KEY", []byte("x"))), filepath.Join(dir, "enc.key"), ReasonBadKey},
		{"mismatched key", goodCert, write("other.key", other.keyPEM), filepath.Join(dir, "other.key"), ReasonKeyMismatch},
		{"expired", write("expired.crt", expired.chainPEM), write("expired.key", expired.keyPEM), filepath.Join(dir, "expired.crt"), ReasonExpired},
		{"not yet valid", write("future.crt", future.chainPEM), write("future.key", future.keyPEM), filepath.Join(dir, "future.crt"), ReasonNotYetValid},
		{"no SANs", write("nosan.crt", noSAN.chainPEM), write("nosan.key", noSAN.keyPEM), filepath.Join(dir, "nosan.crt"), ReasonNoSANs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPair(tc.cert, tc.key, time.Now())
			pe := pairErr(t, err)
			if pe.File != tc.wantFile || pe.Reason != tc.wantReason {
				t.Fatalf("got file %q reason %q, want %q %q (%v)", pe.File, pe.Reason, tc.wantFile, tc.wantReason, err)
			}
			if !strings.HasPrefix(err.Error(), tc.wantFile+": "+tc.wantReason) {
				t.Errorf("message %q does not start with the file and the reason", err)
			}
		})
	}
	// A chain written CA first: the key matches the second certificate.
	reversed := write("reversed.crt", append(append([]byte{}, ca.pem...), good.chainPEM[:len(good.chainPEM)-len(ca.pem)]...))
	if _, err := LoadPair(reversed, goodKey, time.Now()); pairErr(t, err).Reason != ReasonKeyMismatch ||
		!strings.Contains(err.Error(), "the key matches certificate 2 of "+reversed+": the leaf must come first") {
		t.Errorf("reversed chain: %v", err)
	}
	// A combined file (certificate and key in one) loads.
	combined := write("combined.pem", append(append([]byte{}, good.chainPEM...), good.keyPEM...))
	if _, err := LoadPair(combined, combined, time.Now()); err != nil {
		t.Errorf("combined file: %v", err)
	}
	if err := os.Chmod(goodCert, 0); err == nil && os.Geteuid() != 0 {
		if _, err := LoadPair(goodCert, goodKey, time.Now()); pairErr(t, err).Reason != ReasonUnreadable {
			t.Errorf("unreadable file: %v", err)
		}
	}
}
