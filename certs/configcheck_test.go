package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
)

// tlsYAML is a configuration whose server.tls lists the pairs; extra
// lines go under server.tls.
func tlsYAML(pairs []PairFiles, extra string) []byte {
	var b strings.Builder
	b.WriteString("server:\n  tls:\n    certificates:\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "      - cert_file: %s\n        key_file: %s\n", p.CertFile, p.KeyFile)
	}
	b.WriteString(extra)
	b.WriteString("routes:\n  - path: /\n    backend: http://127.0.0.1:9\n")
	return []byte(b.String())
}

func TestConfigValidationChecksFiles(t *testing.T) {
	ca := newCA(t, "CA")
	dir := t.TempDir()
	good := writePair(t, dir, "good", ca.issue(t, leafSpec{names: []string{"*.example.com"}}))
	expired := writePair(t, dir, "expired", ca.issue(t, leafSpec{names: []string{"a.example.com"},
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)}))
	other := writePair(t, dir, "other", ca.issue(t, leafSpec{names: []string{"b.example.com"}}))
	mismatched := PairFiles{CertFile: other.CertFile, KeyFile: good.KeyFile}
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.pem)

	if _, err := config.Parse("ok.yaml", tlsYAML([]PairFiles{good}, "    default_certificate: www.example.com\n    client_auth: {ca_file: "+caFile+"}\n")); err != nil {
		t.Fatalf("good pair: %v", err)
	}
	cfg := tlsYAML([]PairFiles{good, expired, mismatched, {CertFile: filepath.Join(dir, "none.crt"), KeyFile: good.KeyFile}},
		"    default_certificate: c.example.org\n    client_auth: {ca_file: "+good.KeyFile+"}\n")
	_, err := config.Parse("bad.yaml", cfg)
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want *config.Errors", err)
	}
	want := []string{
		"bad.yaml:6: server.tls.certificates[1].cert_file: " + expired.CertFile + ": expired (not after ",
		"bad.yaml:9: server.tls.certificates[2].key_file: " + good.KeyFile + ": key does not match certificate (certificate " + other.CertFile + ")",
		"bad.yaml:10: server.tls.certificates[3].cert_file: " + filepath.Join(dir, "none.crt") + ": unreadable (no such file or directory)",
		`bad.yaml:12: server.tls.default_certificate: "c.example.org" is neither a cert_file`,
		"bad.yaml:13: server.tls.client_auth.ca_file: " + good.KeyFile + ": no certificate",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d", err, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
}

func TestOptionsFromConfig(t *testing.T) {
	ca := newCA(t, "CA")
	dir := t.TempDir()
	a := writePair(t, dir, "a", ca.issue(t, leafSpec{names: []string{"a.example.com"}}))
	b := writePair(t, dir, "b", ca.issue(t, leafSpec{names: []string{"b.example.com"}}))
	c, err := config.Parse("tls.yaml", tlsYAML([]PairFiles{a, b}, "    min_version: \"1.3\"\n    strict_sni: true\n    ticket_key_rotation: 30m\n    ocsp_stapling: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := OptionsFromConfig(c.Server.TLS)
	if err != nil {
		t.Fatal(err)
	}
	if opts.MinVersion != tls.VersionTLS13 || !opts.StrictSNI || opts.TicketKeyRotation != 30*time.Minute ||
		opts.OCSPStapling || !opts.Watch || len(opts.Certificates) != 2 || opts.Certificates[1] != b {
		t.Errorf("options %+v", opts)
	}
	m := startManager(t, opts)
	addr := serveTLS(t, m.TLSConfig([]string{"h2", "http/1.1"}))
	if cs, err := dial(addr, clientFor(ca, "b.example.com")); err != nil || cs.Version != tls.VersionTLS13 {
		t.Errorf("handshake: %v (version %x)", err, cs.Version)
	}
	if _, err := dial(addr, clientFor(ca, "c.example.com")); err == nil {
		t.Error("strict_sni from the config not applied")
	}
	infos := m.Certificates()
	if len(infos) != 2 || infos[0].Name != "a.example.com" || infos[1].NotAfter.Before(time.Now()) || infos[1].CertFile != b.CertFile {
		t.Errorf("Certificates() = %+v", infos)
	}
}
