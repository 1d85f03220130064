package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestBackendTLSParse(t *testing.T) {
	withChecker(t, fakeFiles{})
	c, err := Parse("ok.yaml", src(`
routes:
	- path: /a
		backends:
			- url: HTTPS://Api.Internal
			- url: https://10.0.0.2:8443/v1
				tls: { server_name: api.internal, client_cert_file: b.crt, client_key_file: b.key }
			- url: http://10.0.0.3
		tls:
			ca_file: ca.pem
			client_cert_file: a.crt
			client_key_file: a.key
`))
	if err != nil {
		t.Fatal(err)
	}
	r := &c.Routes[0]
	if r.Backends[0].URL != "https://api.internal:443" || r.Backends[1].URL != "https://10.0.0.2:8443/v1" {
		t.Errorf("urls %q, %q", r.Backends[0].URL, r.Backends[1].URL)
	}
	if got, want := r.TLSFor(&r.Backends[0]), (&BackendTLS{CAFile: "ca.pem", ClientCertFile: "a.crt", ClientKeyFile: "a.key", MinVersion: "1.2"}); !reflect.DeepEqual(got, want) {
		t.Errorf("backends[0] tls = %+v, want %+v", got, want)
	}
	// The backend's own fields win; the others come from the route.
	if got, want := r.TLSFor(&r.Backends[1]), (&BackendTLS{CAFile: "ca.pem", ServerName: "api.internal", ClientCertFile: "b.crt", ClientKeyFile: "b.key", MinVersion: "1.2"}); !reflect.DeepEqual(got, want) {
		t.Errorf("backends[1] tls = %+v, want %+v", got, want)
	}
	if got := r.TLSFor(&r.Backends[2]); got != nil {
		t.Errorf("http:// backend has tls %+v", got)
	}
	// An https:// backend without any tls section verifies against the
	// system roots.
	c, err = Parse("ok.yaml", src("routes:\n\t- { path: /a, backend: \"https://b\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Routes[0].TLSFor(&c.Routes[0].Backends[0]); got == nil || got.SkipVerify() || got.CAFile != "" || got.MinVersion != "1.2" {
		t.Errorf("default tls = %+v", got)
	}
}

func TestBackendTLSErrors(t *testing.T) {
	withChecker(t, fakeFiles{bad: map[string]string{
		"bad-ca.pem":  "no certificate (no PEM CERTIFICATE block)",
		"other.key":   "key does not match certificate (certificate c.crt)",
		"expired.crt": "expired (not after 2026-01-01T00:00:00Z)",
	}})
	tests := []struct {
		name, routes string
		want         []string
	}{
		{"tls on an http route", "\t- path: /a\n\t\tbackend: http://a\n\t\ttls: { ca_file: ca.pem }\n",
			[]string{`bad.yaml:4: routes[0].tls: applies only to https:// backends, and the route has none`}},
		{"tls on an http backend", "\t- path: /a\n\t\tbackends:\n\t\t\t- url: http://a:80\n\t\t\t\ttls: { ca_file: ca.pem }\n",
			[]string{`bad.yaml:5: routes[0].backends[0].tls: applies only to https:// backends (url is "http://a:80")`}},
		{"unknown key", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls: { ca: ca.pem }\n",
			[]string{`bad.yaml:4: unknown key "ca" at routes[0].tls (known: ca_file, server_name, client_cert_file, client_key_file, insecure_skip_verify, min_version)`}},
		{"bad fields", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls:\n\t\t\tmin_version: \"1.0\"\n\t\t\tserver_name: \"a b\"\n",
			[]string{`bad.yaml:5: routes[0].tls.min_version: unsupported version "1.0" (supported: 1.2, 1.3)`,
				`bad.yaml:6: routes[0].tls.server_name: invalid server name "a b" (want a host name or an IP address)`}},
		{"skip verify with a CA", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls:\n\t\t\tca_file: ca.pem\n\t\t\tinsecure_skip_verify: true\n",
			[]string{`bad.yaml:6: routes[0].tls.insecure_skip_verify: contradicts ca_file "ca.pem": nothing is verified (drop one of them)`}},
		{"bad CA file", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls:\n\t\t\tca_file: bad-ca.pem\n",
			[]string{`bad.yaml:5: routes[0].tls.ca_file: bad-ca.pem: no certificate (no PEM CERTIFICATE block)`}},
		{"certificate without key", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls:\n\t\t\tclient_cert_file: c.crt\n",
			[]string{`bad.yaml:5: routes[0].tls.client_cert_file: client_key_file is required with client_cert_file`}},
		{"mismatched key", "\t- path: /a\n\t\tbackend: https://a\n\t\ttls:\n\t\t\tclient_cert_file: c.crt\n\t\t\tclient_key_file: other.key\n",
			[]string{`bad.yaml:6: routes[0].tls.client_key_file: other.key: key does not match certificate (certificate c.crt)`}},
		{"expired certificate of a backend, key from the route", "\t- path: /a\n\t\tbackends:\n\t\t\t- url: https://a:443\n\t\t\t\ttls: { client_cert_file: expired.crt }\n\t\ttls: { client_key_file: c.key }\n",
			[]string{`bad.yaml:5: routes[0].backends[0].tls.client_cert_file: expired.crt: expired (not after 2026-01-01T00:00:00Z)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", src("routes:\n"+tc.routes))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want *Errors", err)
			}
			if got := strings.Split(errs.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
