package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const acmeRoutes = `
routes:
	- { path: /, host: WWW.example.com, backend: http://a }
	- { path: /api, host: api.example.com, backend: http://a }
	- { path: /x, host: www.example.com, backend: http://a }
	- { path: /w, host: "*.example.org", backend: http://a }
	- { path: /z, backend: http://a }
`

func TestACMEDefaults(t *testing.T) {
	withChecker(t, nil)
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	c, err := Parse("acme.yaml", src("server:\n\ttls:\n\t\tacme: { email: ops@example.com }\n"+acmeRoutes))
	if err != nil {
		t.Fatal(err)
	}
	want := &ACMEConfig{
		Email: "ops@example.com", CA: ACMEProduction,
		Storage:    filepath.Join(data, "rustygate", "acme"),
		Challenges: []string{ChallengeHTTP01, ChallengeTLSALPN01},
		Hosts:      []string{"www.example.com", "api.example.com"},
	}
	if got := c.Server.TLS.ACME; !reflect.DeepEqual(got, want) {
		t.Errorf("acme = %+v, want %+v", got, want)
	}
	if len(c.Server.TLS.Certificates) != 0 {
		t.Errorf("certificates %v", c.Server.TLS.Certificates)
	}
	if _, err := os.Stat(want.Storage); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("validation created the storage directory (%v)", err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	c, err = Parse("acme.yaml", src("server:\n\ttls:\n\t\tacme:\n\t\t\tca: staging\n\t\t\thosts: [app.example.com]\n\t\t\tchallenges: [tls-alpn-01]\n\t\t\tstorage: "+data+"/s\n"+acmeRoutes))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Server.TLS.ACME
	if a.CA != ACMEStaging || !reflect.DeepEqual(a.Hosts, []string{"app.example.com"}) || a.Storage != data+"/s" || len(a.Challenges) != 1 {
		t.Errorf("acme = %+v", a)
	}
}

func TestACMEErrors(t *testing.T) {
	withChecker(t, fakeFiles{bad: map[string]string{"bad-root.pem": "no certificate"}})
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, acme string
		want       []string
	}{
		{"unknown key", "\t\t\temial: a@example.com\n",
			[]string{`bad.yaml:4: unknown key "emial" at server.tls.acme (known: email, ca, storage, challenges, hosts, ca_root)`}},
		{"email, ca, challenges", "\t\t\temail: ops\n\t\t\tca: http://ca.example.com/dir\n\t\t\tchallenges: [http-01, dns-01, http-01]\n",
			[]string{`bad.yaml:4: server.tls.acme.email: "ops" is not an email address (user@example.com)`,
				`bad.yaml:5: server.tls.acme.ca: "http://ca.example.com/dir" is neither production, staging nor an https:// ACME directory URL`,
				`bad.yaml:6: server.tls.acme.challenges: unknown challenge "dns-01" (supported: http-01, tls-alpn-01)`,
				`bad.yaml:6: server.tls.acme.challenges: "http-01" is listed twice`}},
		{"email without domain", "\t\t\temail: ops@localhost\n",
			[]string{`bad.yaml:4: server.tls.acme.email: "ops@localhost" has no valid domain`}},
		{"no challenge", "\t\t\tchallenges: []\n",
			[]string{`bad.yaml:4: server.tls.acme.challenges: at least one challenge is required (http-01, tls-alpn-01)`}},
		{"hosts", "\t\t\thosts: [\"*.example.com\", 192.0.2.1, localhost]\n",
			[]string{`bad.yaml:4: server.tls.acme.hosts: "*.example.com": a wildcard needs the dns-01 challenge, which is not supported; use a certificate file`,
				`bad.yaml:4: server.tls.acme.hosts: "192.0.2.1": ACME certificates are for host names, not IP addresses`,
				`bad.yaml:4: server.tls.acme.hosts: "localhost" is not a fully qualified host name`}},
		{"storage is a file", "\t\t\tstorage: " + file + "/acme\n",
			[]string{`bad.yaml:4: server.tls.acme.storage: ` + file + ` is not a directory`}},
		{"ca root", "\t\t\tca_root: bad-root.pem\n",
			[]string{`bad.yaml:4: server.tls.acme.ca_root: bad-root.pem: no certificate`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", src("server:\n\ttls:\n\t\tacme:\n"+tc.acme+"\t\t\tstorage: "+dir+"\n"+acmeRoutes))
			if strings.Contains(tc.acme, "storage:") {
				_, err = Parse("bad.yaml", src("server:\n\ttls:\n\t\tacme:\n"+tc.acme+acmeRoutes))
			}
			checkErrors(t, err, tc.want)
		})
	}
	// No route with an exact host and no hosts: nothing to obtain.
	_, err := Parse("bad.yaml", src("server:\n\ttls:\n\t\tacme: {storage: "+dir+"}\n"+route))
	checkErrors(t, err, []string{`bad.yaml:3: server.tls.acme.hosts: no host to obtain a certificate for: list hosts, or give routes an exact host`})
}

func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want *Errors", err)
	}
	if got := strings.Split(errs.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
