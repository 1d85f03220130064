package observe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAccessTLSFields: an access line over TLS carries tls_version and
// sni (JSON and text); a plain one carries neither.
func TestAccessTLSFields(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		l, err := NewLogger(&buf, LogOptions{Format: format, Access: true})
		if err != nil {
			t.Fatal(err)
		}
		e := sampleEntry()
		e.TLSVersion, e.SNI = "1.3", "api.example.com"
		l.Access(e)
		l.Access(sampleEntry())
		l.Close()
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines", format, len(lines))
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["tls_version"] != "1.3" || m["sni"] != "api.example.com" {
				t.Errorf("json line %s (%v)", lines[0], err)
			}
		} else if !strings.HasSuffix(lines[0], " user_agent=curl/8 tls_version=1.3 sni=api.example.com") {
			t.Errorf("text line %s", lines[0])
		}
		if strings.Contains(lines[1], "tls_version") || strings.Contains(lines[1], "sni") {
			t.Errorf("%s: plain request line has TLS fields: %s", format, lines[1])
		}
	}
}

// TestTLSMetrics: handshakes by result and version, client certificate
// failures, and the expiry gauge read from the list at scrape time.
func TestTLSMetrics(t *testing.T) {
	m := NewMetrics()
	tm := m.TLS()
	if m.TLS() != tm {
		t.Fatal("TLS() registers twice")
	}
	tm.Handshake("full", "1.3")
	tm.Handshake("full", "1.3")
	tm.Handshake("timeout", "unknown")
	tm.ClientCertFailure("missing")
	if v := testutil.ToFloat64(tm.handshakes.WithLabelValues("full", "1.3")); v != 2 {
		t.Errorf("full 1.3 = %v", v)
	}
	if v := testutil.ToFloat64(tm.clientCerts.WithLabelValues("missing")); v != 1 {
		t.Errorf("missing = %v", v)
	}
	exp := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	list := []CertExpiry{{Name: "a.example.com", File: "/tls/a.crt", NotAfter: exp}}
	m.RegisterCertificates(func() []CertExpiry { return list })
	want := `
# HELP rustygate_tls_certificate_expiry_timestamp_seconds Unix time at which a served certificate expires (its NotAfter), by first SAN and certificate file.
# TYPE rustygate_tls_certificate_expiry_timestamp_seconds gauge
rustygate_tls_certificate_expiry_timestamp_seconds{file="/tls/a.crt",name="a.example.com"} 1.8039024e+09
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "rustygate_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	list[0].NotAfter = exp.Add(24 * time.Hour) // renewed: seen at the next scrape
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(strings.Replace(want, "1.8039024e+09", "1.8039888e+09", 1)),
		"rustygate_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	var nilT *TLSMetrics
	nilT.Handshake("full", "1.3") // a nil TLSMetrics (no metrics) is a no-op
}
