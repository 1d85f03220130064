package upstream

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/internal/testpki"
)

// TestHTTPProberTLS: an https:// backend is probed over TLS with the
// configuration TLS returns for it: a certificate it verifies passes, one
// from another CA or for another name fails, naming the reason.
func TestHTTPProberTLS(t *testing.T) {
	ca := testpki.NewCA(t, "backend CA")
	cert := ca.Issue(t, testpki.Spec{CN: "backend", Hosts: []string{"127.0.0.1"}})
	var probes int
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.URL.Path == "/health" {
			probes++
		}
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	b, err := NewBackend(s.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Scheme != "https" {
		t.Fatalf("scheme %q", b.Scheme)
	}
	probe := func(cfg *tls.Config) error {
		return HTTPProber{Path: "/health", TLS: func(*Backend) *tls.Config { return cfg }}.Probe(t.Context(), b)
	}
	if err := probe(&tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}); err != nil || probes != 1 {
		t.Fatalf("verified backend: %v (%d probes over TLS)", err, probes)
	}
	other := testpki.NewCA(t, "other CA")
	if err := probe(&tls.Config{RootCAs: other.Pool, ServerName: "127.0.0.1"}); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("foreign CA: %v, want unknown authority", err)
	}
	if err := probe(&tls.Config{RootCAs: ca.Pool, ServerName: "other.test"}); err == nil || !strings.Contains(err.Error(), "other.test") {
		t.Errorf("wrong name: %v, want a name mismatch", err)
	}
}
