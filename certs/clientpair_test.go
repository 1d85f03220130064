package certs

import (
	"testing"
	"time"
)

// TestLoadClientPair: a client certificate without SANs loads; a
// mismatched key or an expired certificate is refused naming the file.
func TestLoadClientPair(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "client CA")
	good := writePair(t, dir, "good", ca.issue(t, leafSpec{cn: "rustygate", client: true}))
	c, err := LoadClientPair(good.CertFile, good.KeyFile, time.Now())
	if err != nil {
		t.Fatalf("client certificate without SANs: %v", err)
	}
	if c.Leaf.Subject.CommonName != "rustygate" || len(c.Certificate) != 2 {
		t.Errorf("loaded %q with %d certificates, want rustygate with its CA", c.Leaf.Subject.CommonName, len(c.Certificate))
	}
	if err := (Checker{}).CheckClientPair(good.CertFile, good.KeyFile); err != nil {
		t.Errorf("Checker: %v", err)
	}

	other := writePair(t, dir, "other", ca.issue(t, leafSpec{cn: "other", client: true}))
	_, err = LoadClientPair(good.CertFile, other.KeyFile, time.Now())
	if pe := pairErr(t, err); pe.File != other.KeyFile || pe.Reason != ReasonKeyMismatch {
		t.Errorf("mismatched key: %v", err)
	}
	old := writePair(t, dir, "old", ca.issue(t, leafSpec{cn: "old", client: true, notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)}))
	_, err = LoadClientPair(old.CertFile, old.KeyFile, time.Now())
	if pe := pairErr(t, err); pe.File != old.CertFile || pe.Reason != ReasonExpired {
		t.Errorf("expired certificate: %v", err)
	}
	_, err = LoadClientPair(dir+"/missing.crt", good.KeyFile, time.Now())
	if pe := pairErr(t, err); pe.Reason != ReasonUnreadable {
		t.Errorf("missing file: %v", err)
	}
}
