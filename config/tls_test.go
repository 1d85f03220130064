package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeFiles is a TLSFileChecker over an in-memory table of files.
type fakeFiles struct {
	names map[string][]string // cert file -> names
	bad   map[string]string   // file -> problem
}

type faultyFile struct{ file, msg string }

func (e faultyFile) Error() string      { return e.file + ": " + e.msg }
func (e faultyFile) FaultyFile() string { return e.file }

func (f fakeFiles) CheckPair(certFile, keyFile string) ([]string, error) {
	for _, file := range []string{certFile, keyFile} {
		if msg, ok := f.bad[file]; ok {
			return nil, faultyFile{file, msg}
		}
	}
	return f.names[certFile], nil
}

func (f fakeFiles) CheckCAFile(file string) error {
	if msg, ok := f.bad[file]; ok {
		return faultyFile{file, msg}
	}
	return nil
}

func (f fakeFiles) CheckClientPair(certFile, keyFile string) error {
	_, err := f.CheckPair(certFile, keyFile)
	return err
}

// withChecker registers c for the duration of the test.
func withChecker(t *testing.T, c TLSFileChecker) {
	prev := currentTLSFileChecker()
	SetTLSFileChecker(c)
	t.Cleanup(func() { SetTLSFileChecker(prev) })
}

func TestTLSDefaultsAndDecode(t *testing.T) {
	withChecker(t, nil)
	c, err := Parse("tls.yaml", src(`
server:
	redirect_https: true
	tls:
		certificates:
			- { cert_file: /etc/tls/a.crt, key_file: /etc/tls/a.key }
			- cert_file: /etc/tls/b.crt
				key_file: /etc/tls/b.key
		client_auth: { ca_file: /etc/tls/clients.pem }
`+route))
	if err != nil {
		t.Fatal(err)
	}
	want := &TLSConfig{
		Listen: ":8443",
		Certificates: []TLSCertificate{
			{CertFile: "/etc/tls/a.crt", KeyFile: "/etc/tls/a.key"},
			{CertFile: "/etc/tls/b.crt", KeyFile: "/etc/tls/b.key"},
		},
		MinVersion:        "1.2",
		TicketKeyRotation: Duration(12 * time.Hour),
		OCSPStapling:      ptr(true),
		ClientAuth: &ClientAuth{CAFile: "/etc/tls/clients.pem", Mode: "require",
			SubjectHeader: "X-Client-Cert-Subject", SANHeader: "X-Client-Cert-SAN"},
	}
	if !reflect.DeepEqual(c.Server.TLS, want) {
		t.Errorf("server.tls = %+v, want %+v", c.Server.TLS, want)
	}
	if !c.Server.RedirectHTTPS || !c.Server.TLS.OCSPEnabled() {
		t.Error("redirect_https or ocsp_stapling lost")
	}
	// No tls section: plain HTTP, nothing defaulted.
	c, err = Parse("plain.yaml", src(route))
	if err != nil || c.Server.TLS != nil || c.Server.RedirectHTTPS {
		t.Errorf("plain config: tls %+v redirect %v err %v", c.Server.TLS, c.Server.RedirectHTTPS, err)
	}
	off := false
	c, err = Parse("off.yaml", src(`
server:
	tls:
		certificates: [{ cert_file: a.crt, key_file: a.key }]
		ocsp_stapling: false
		min_version: "1.3"
		ticket_key_rotation: 1h
`+route))
	if err != nil || c.Server.TLS.OCSPEnabled() != off || c.Server.TLS.MinVersion != "1.3" || c.Server.TLS.TicketKeyRotation.D() != time.Hour {
		t.Errorf("explicit values: %+v, %v", c.Server.TLS, err)
	}
}

func TestTLSErrors(t *testing.T) {
	withChecker(t, fakeFiles{
		names: map[string][]string{"a.crt": {"a.example.com"}, "w.crt": {"*.example.net", "127.0.0.1"}},
		bad: map[string]string{
			"old.crt": "expired (not after 2026-01-01T00:00:00Z)",
			"bad.key": "key does not match certificate",
			"ca.pem":  "no certificate",
		},
	})
	tests := []struct {
		name string
		tls  string
		want []string
	}{
		{"unknown key", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tmin_versoin: \"1.3\"\n",
			[]string{`bad.yaml:4: unknown key "min_versoin" at server.tls (known: listen, certificates, default_certificate, min_version, strict_sni, ticket_key_rotation, ocsp_stapling, client_auth, acme, http3)`}},
		{"no certificates", "\t\tmin_version: \"1.2\"\n",
			[]string{`bad.yaml:2: server.tls.certificates: at least one certificate is required (or acme)`}},
		{"missing key file", "\t\tcertificates:\n\t\t\t- cert_file: a.crt\n",
			[]string{`bad.yaml:4: server.tls.certificates[0].key_file: is required`}},
		{"expired certificate", "\t\tcertificates:\n\t\t\t- cert_file: old.crt\n\t\t\t\tkey_file: old.key\n",
			[]string{`bad.yaml:4: server.tls.certificates[0].cert_file: old.crt: expired (not after 2026-01-01T00:00:00Z)`}},
		{"mismatched key points at key_file", "\t\tcertificates:\n\t\t\t- cert_file: a.crt\n\t\t\t\tkey_file: bad.key\n",
			[]string{`bad.yaml:5: server.tls.certificates[0].key_file: bad.key: key does not match certificate`}},
		{"duplicate", "\t\tcertificates:\n\t\t\t- {cert_file: a.crt, key_file: a.key}\n\t\t\t- {cert_file: ./a.crt, key_file: a.key}\n",
			[]string{`bad.yaml:5: server.tls.certificates[1].cert_file: duplicate certificate "./a.crt" (also certificates[0])`}},
		{"bad version and rotation", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tmin_version: \"1.1\"\n\t\tticket_key_rotation: 10s\n",
			[]string{`bad.yaml:4: server.tls.min_version: unsupported version "1.1" (supported: 1.2, 1.3)`,
				`bad.yaml:5: server.tls.ticket_key_rotation: must be between 1m0s and 168h0m0s (got 10s)`}},
		{"default names nothing", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tdefault_certificate: b.example.com\n",
			[]string{`bad.yaml:4: server.tls.default_certificate: "b.example.com" is neither a cert_file of server.tls.certificates nor a name one of their certificates covers`}},
		{"default and strict", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tdefault_certificate: a.crt\n\t\tstrict_sni: true\n",
			[]string{`bad.yaml:5: server.tls.strict_sni: set only one of strict_sni and default_certificate (strict_sni fails the handshakes the default certificate would serve)`}},
		{"client auth", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tclient_auth:\n\t\t\tca_file: ca.pem\n\t\t\tmode: sometimes\n",
			[]string{`bad.yaml:5: server.tls.client_auth.ca_file: ca.pem: no certificate`,
				`bad.yaml:6: server.tls.client_auth.mode: unknown mode "sometimes" (supported: require, optional)`}},
		{"client auth without ca", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tclient_auth: {mode: optional}\n",
			[]string{`bad.yaml:4: server.tls.client_auth.ca_file: is required`}},
		{"redirect not a bool", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\tredirect_https: yes please\n",
			[]string{`bad.yaml:4: server.redirect_https: expected a boolean (true or false), got a string`}},
		{"listen beside server.listen", "\t\tlisten: \"0.0.0.0:8080\"\n\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n",
			[]string{`bad.yaml:3: server.tls.listen: must differ from server.listen (both use port 8080)`}},
		{"listen not an address", "\t\tlisten: \"8443\"\n\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n",
			[]string{`bad.yaml:3: server.tls.listen: invalid address "8443" (want host:port, e.g. ":8080" or "127.0.0.1:8080")`}},
		{"client certificate header names", "\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tclient_auth: {ca_file: c.pem, subject_header: \"X Subject\", san_header: X_San}\n",
			[]string{`bad.yaml:4: server.tls.client_auth.subject_header: "X Subject" is not a header name (letters, digits and '-')`,
				`bad.yaml:4: server.tls.client_auth.san_header: "X_San" is not a header name (letters, digits and '-')`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", src("server:\n\ttls:\n"+tc.tls+route))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want *Errors", err)
			}
			got := strings.Split(errs.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestTLSDefaultCertificate(t *testing.T) {
	withChecker(t, fakeFiles{names: map[string][]string{"a.crt": {"a.example.com"}, "w.crt": {"*.example.net", "127.0.0.1"}}})
	for _, def := range []string{"a.crt", "./w.crt", "A.Example.com", "www.example.net", "127.0.0.1"} {
		yaml := "server:\n\ttls:\n\t\tcertificates: [{cert_file: a.crt, key_file: a.key}, {cert_file: w.crt, key_file: w.key}]\n\t\tdefault_certificate: \"" + def + "\"\n" + route
		if _, err := Parse("ok.yaml", src(yaml)); err != nil {
			t.Errorf("default_certificate %q: %v", def, err)
		}
	}
	for _, def := range []string{"example.net", "a.b.example.net"} {
		yaml := "server:\n\ttls:\n\t\tcertificates: [{cert_file: w.crt, key_file: w.key}]\n\t\tdefault_certificate: " + def + "\n" + route
		if _, err := Parse("bad.yaml", src(yaml)); err == nil {
			t.Errorf("default_certificate %q accepted: a wildcard covers one label", def)
		}
	}
	// Without a checker (no TLS code linked) the files are not read and
	// a name is only checked for its syntax.
	withChecker(t, nil)
	yaml := "server:\n\ttls:\n\t\tcertificates: [{cert_file: /nonexistent.crt, key_file: /nonexistent.key}]\n\t\tdefault_certificate: www.example.org\n" + route
	if _, err := Parse("ok.yaml", src(yaml)); err != nil {
		t.Errorf("without a checker: %v", err)
	}
}

func TestTLSRedirectAndRouteClientAuth(t *testing.T) {
	withChecker(t, nil)
	for _, tc := range []struct{ name, yaml, want string }{
		{"redirect without tls", "server:\n\tredirect_https: true\n" + route,
			`bad.yaml:2: server.redirect_https: needs server.tls: the redirect sends clients to its listener`},
		{"route client_auth without server client_auth", "server:\n\ttls:\n\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n" +
			"routes:\n\t- path: /\n\t\tbackend: http://127.0.0.1:9000\n\t\tclient_auth: {mode: optional}\n",
			"bad.yaml:7: routes[0].client_auth.mode: unknown mode \"optional\" (supported: require)\n" +
				"bad.yaml:7: routes[0].client_auth: needs server.tls.client_auth (mode optional) so that clients are asked for a certificate"},
	} {
		_, err := Parse("bad.yaml", src(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v\nwant %s", tc.name, err, tc.want)
		}
	}
	c, err := Parse("ok.yaml", src("server:\n\ttls:\n\t\tcertificates: [{cert_file: a.crt, key_file: a.key}]\n\t\tclient_auth: {ca_file: c.pem, mode: optional}\n"+
		"routes:\n\t- path: /\n\t\tbackend: http://127.0.0.1:9000\n\t\tclient_auth: {}\n"))
	if err != nil || c.Routes[0].ClientAuth == nil || c.Routes[0].ClientAuth.Mode != "require" {
		t.Errorf("route client_auth default: %+v, %v", c.Routes[0].ClientAuth, err)
	}
}
