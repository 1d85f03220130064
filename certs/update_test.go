package certs

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateSwapsPairsAndPolicyOnLiveConfigs(t *testing.T) {
	f := newSNIFixture(t)
	changes := 0
	m := startManager(t, Options{Certificates: f.files[:1], OnChange: func() { changes++ }})
	addr := serveTLS(t, m.TLSConfig(nil))
	session := clientFor(f.ca, "a.example.com")
	session.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resumes(t, addr, session)

	// A broken update changes nothing.
	broken := []PairFiles{f.aF, {CertFile: filepath.Join(t.TempDir(), "none.crt"), KeyFile: f.aF.KeyFile}}
	if err := m.Update(Options{Certificates: broken}); err == nil {
		t.Fatal("an update naming a missing file was accepted")
	}
	if got := servedSerial(t, addr, clientFor(f.ca, "a.example.com")); got != f.a.serialHex {
		t.Fatalf("after a refused update serving %s", got)
	}

	// New pairs and TLS 1.3 only: the config already handed out serves
	// them, and resumes the sessions of its ticket keys.
	if err := m.Update(Options{Certificates: f.files, MinVersion: tls.VersionTLS13}); err != nil {
		t.Fatal(err)
	}
	if changes != 1 {
		t.Errorf("OnChange called %d times, want 1", changes)
	}
	if !resumes(t, addr, session) {
		t.Error("the update lost the session ticket keys")
	}
	if got := servedSerial(t, addr, clientFor(f.ca, "x.wild.example.com")); got != f.wild.serialHex {
		t.Errorf("after the update x.wild.example.com is served by %s, want %s", got, f.wild.serialHex)
	}
	old := clientFor(f.ca, "a.example.com")
	old.MaxVersion = tls.VersionTLS12
	if _, err := dial(addr, old); err == nil {
		t.Error("min_version 1.3 set by the update not enforced")
	}

	// Client certificates required by a later update.
	clientCA := newCA(t, "Client CA")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	writeFile(t, caFile, clientCA.pem)
	if err := m.Update(Options{Certificates: f.files, ClientAuth: &ClientAuth{CAFile: caFile}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, clientFor(f.ca, "a.example.com")); err == nil {
		t.Error("client_auth added by the update not enforced")
	}
	cfg := clientFor(f.ca, "a.example.com")
	cfg.Certificates = []tls.Certificate{clientCA.issue(t, leafSpec{cn: "c", client: true}).tlsCert}
	if _, err := dial(addr, cfg); err != nil {
		t.Errorf("a good client certificate after the update: %v", err)
	}
}

// TestReloadOnDemand is the SIGHUP path: no watcher, Reload called.
func TestReloadOnDemand(t *testing.T) {
	ca := newCA(t, "CA")
	dir := t.TempDir()
	first := ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	files := writePair(t, dir, "a", first)
	var logs logBuffer
	m := startManager(t, Options{Certificates: []PairFiles{files}, Logger: logs.logger()})
	addr := serveTLS(t, m.TLSConfig(nil))
	if err := m.Reload(); err != nil {
		t.Fatalf("reload of unchanged files: %v", err)
	}

	writeFile(t, files.KeyFile, ca.issue(t, leafSpec{names: []string{"a.example.com"}}).keyPEM)
	err := m.Reload()
	if pe := pairErr(t, err); pe.File != files.KeyFile || pe.Reason != ReasonKeyMismatch {
		t.Errorf("reload of a mismatched pair: %v", err)
	}
	if got := servedSerial(t, addr, clientFor(ca, "a.example.com")); got != first.serialHex {
		t.Errorf("after a refused reload serving %s, want %s", got, first.serialHex)
	}
	// A second Reload of the same bad files logs nothing new.
	m.Reload()
	if n := strings.Count(logs.String(), "certificate reload refused"); n != 1 {
		t.Errorf("%d refusal lines for one bad pair, want 1", n)
	}

	next := ca.issue(t, leafSpec{names: []string{"a.example.com"}, keyType: "ed25519"})
	writePair(t, dir, "a", next)
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, clientFor(ca, "a.example.com")); got != next.serialHex {
		t.Errorf("after the reload serving %s, want %s", got, next.serialHex)
	}
}

// TestPrepareThenApply: prepared settings are served only once applied,
// and only once; a prepare naming a missing file fails.
func TestPrepareThenApply(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files[:1]})
	addr := serveTLS(t, m.TLSConfig(nil))
	if _, err := Prepare(Options{Certificates: []PairFiles{{CertFile: filepath.Join(t.TempDir(), "none.crt"), KeyFile: f.aF.KeyFile}}}); err == nil {
		t.Fatal("Prepare naming a missing file succeeded")
	}
	p, err := Prepare(Options{Certificates: f.files})
	if err != nil {
		t.Fatal(err)
	}
	wild := clientFor(f.ca, "x.wild.example.com")
	if _, err := dial(addr, wild); err == nil {
		t.Fatal("prepared settings served before Apply: x.wild.example.com verified")
	}
	if err := m.Apply(p); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, wild); got != f.wild.serialHex {
		t.Errorf("after Apply x.wild.example.com is served by %s, want %s", got, f.wild.serialHex)
	}
	if err := m.Apply(p); err == nil {
		t.Error("the same prepared settings applied twice")
	}
}
