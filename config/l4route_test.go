package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestL4RoutesParse(t *testing.T) {
	c, err := Parse("good.yaml", src(`l4:
	- name: edge
		listen: "127.0.0.1:8443"
		strategy: least_connections
		routes:
			- sni: ["DB.example.com", "db2.example.com"]
				backends: [{addr: "127.0.0.1:5432"}]
			- name: apps
				sni: ["*.Apps.example.com"]
				strategy: round_robin
				backends: [{addr: "127.0.0.1:9001", weight: 3}, {addr: "127.0.0.1:9002"}]
	- name: sni-only
		listen: "127.0.0.1:8444"
		routes: [{sni: [a.example.com], backends: [{addr: "127.0.0.1:1"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	l := c.L4[0]
	want := []L4Route{
		{Name: "db.example.com", SNI: []string{"db.example.com", "db2.example.com"}, Strategy: "least_connections",
			Backends: []L4Backend{{Addr: "127.0.0.1:5432", Weight: 1}}},
		{Name: "apps", SNI: []string{"*.apps.example.com"}, Strategy: "round_robin",
			Backends: []L4Backend{{Addr: "127.0.0.1:9001", Weight: 3}, {Addr: "127.0.0.1:9002", Weight: 1}}},
	}
	if !reflect.DeepEqual(l.Routes, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", l.Routes, want)
	}
	if l.HandshakeTimeout.D() != 10*time.Second || l.TLS != nil {
		t.Errorf("handshake_timeout %s, tls %+v", l.HandshakeTimeout, l.TLS)
	}
	if len(c.L4[1].Backends) != 0 {
		t.Errorf("sni-only listener got backends %+v", c.L4[1].Backends)
	}
}

func TestL4RouteErrors(t *testing.T) {
	item := func(routes string) string {
		return "l4:\n\t- name: a\n\t\tlisten: \"127.0.0.1:9000\"\n\t\troutes:\n" + routes
	}
	route := func(name, sni string) string {
		s := "\t\t\t- sni: " + sni + "\n\t\t\t\tbackends: [{addr: \"127.0.0.1:1\"}]\n"
		if name != "" {
			s += "\t\t\t\tname: " + name + "\n"
		}
		return s
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"no sni", item("\t\t\t- backends: [{addr: \"127.0.0.1:1\"}]\n"),
			[]string{`bad.yaml:5: l4[0].routes[0].sni: at least one server name is required`}},
		{"no backends", item("\t\t\t- sni: [a.example.com]\n"),
			[]string{`bad.yaml:5: l4[0].routes[0].backends: at least one backend is required`}},
		{"same name twice, any case", item(route("", "[a.example.com]") + route("", "[b.example.com, A.example.com]")),
			[]string{`bad.yaml:7: l4[0].routes[1].sni[1]: "a.example.com" is also in routes[0]`}},
		{"duplicate route name", item(route("x", "[a.example.com]") + route("x", "[b.example.com]")),
			[]string{`bad.yaml:10: l4[0].routes[1].name: duplicate route name "x" (also routes[0])`}},
		{"reserved route name", item(route("default", "[a.example.com]")),
			[]string{`bad.yaml:7: l4[0].routes[0].name: "default" names the listener's own backends in metrics and logs: choose another name`}},
		{"bad wildcard", item(route("", "[\"a.*.example.com\"]")),
			[]string{`bad.yaml:5: l4[0].routes[0].sni[0]: invalid server name "a.*.example.com" (a wildcard is "*." before a name, e.g. "*.example.com")`}},
		{"trailing dot", item(route("", "[example.com.]")),
			[]string{`bad.yaml:5: l4[0].routes[0].sni[0]: invalid server name "example.com." (no trailing dot: clients send names without it)`}},
		{"ip address", item(route("", "[\"10.0.0.1\"]")),
			[]string{`bad.yaml:5: l4[0].routes[0].sni[0]: invalid server name "10.0.0.1" (clients never send an IP address as SNI)`}},
		{"bad characters", item(route("", "[\"ex ample.com\"]")),
			[]string{`bad.yaml:5: l4[0].routes[0].sni[0]: invalid server name "ex ample.com" (want DNS labels of 1-63 letters, digits, '-' or '_'; an internationalized name in its xn-- form)`}},
		{"bad strategy", item(route("", "[a.example.com]") + "\t\t\t\tstrategy: fastest\n"),
			[]string{`bad.yaml:7: l4[0].routes[0].strategy: unknown strategy "fastest" (supported: round_robin, weighted_round_robin, least_connections, random_two_choices, consistent_hash)`}},
		{"bad handshake timeout", "l4:\n\t- name: a\n\t\tlisten: \"127.0.0.1:9000\"\n\t\thandshake_timeout: -1s\n\t\tbackends: [{addr: \"127.0.0.1:1\"}]\n",
			[]string{`bad.yaml:4: l4[0].handshake_timeout: duration must not be negative (got "-1s")`}},
		{"tls without files", "l4:\n\t- name: a\n\t\tlisten: \"127.0.0.1:9000\"\n\t\ttls: {}\n\t\tbackends: [{addr: \"127.0.0.1:1\"}]\n",
			[]string{`bad.yaml:4: l4[0].tls.cert_file: is required`, `bad.yaml:4: l4[0].tls.key_file: is required`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.yaml", src(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", indent(got), indent(want))
			}
		})
	}
}

func TestL4TLSFiles(t *testing.T) {
	withChecker(t, fakeFiles{
		names: map[string][]string{"a.crt": {"a.example.com"}},
		bad: map[string]string{
			"old.crt":  "expired (not after 2024-05-01T12:00:00Z)",
			"none.crt": "unreadable (no such file or directory)",
			"b.key":    "key does not match certificate",
		},
	})
	yaml := func(cert, key, more string) []byte {
		return src("l4:\n\t- name: a\n\t\tlisten: \"127.0.0.1:9000\"\n\t\tbackends: [{addr: \"127.0.0.1:1\"}]\n" +
			"\t\ttls:\n\t\t\tcert_file: " + cert + "\n\t\t\tkey_file: " + key + "\n" + more)
	}
	c, err := Parse("good.yaml", yaml("a.crt", "a.key", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.L4[0].TLS, (&L4TLS{CertFile: "a.crt", KeyFile: "a.key", MinVersion: "1.2"}); got == nil || *got != *want {
		t.Fatalf("tls = %+v, want %+v", got, want)
	}
	c, err = Parse("good.yaml", yaml("a.crt", "a.key", "\t\t\tmin_version: \"1.3\"\n"))
	if err != nil || c.L4[0].TLS.MinVersion != "1.3" {
		t.Fatalf("min_version 1.3: %+v, %v", c.L4[0].TLS, err)
	}
	for _, tt := range []struct{ name, cert, key, more, want string }{
		{"key of another certificate", "a.crt", "b.key", "",
			`bad.yaml:7: l4[0].tls.key_file: b.key: key does not match certificate`},
		{"missing file", "none.crt", "a.key", "",
			`bad.yaml:6: l4[0].tls.cert_file: none.crt: unreadable (no such file or directory)`},
		{"expired", "old.crt", "old.key", "",
			`bad.yaml:6: l4[0].tls.cert_file: old.crt: expired (not after 2024-05-01T12:00:00Z)`},
		{"old version", "a.crt", "a.key", "\t\t\tmin_version: \"1.1\"\n",
			`bad.yaml:8: l4[0].tls.min_version: unsupported version "1.1" (supported: 1.2, 1.3)`},
		{"unknown key", "a.crt", "a.key", "\t\t\tciphers: [x]\n",
			`bad.yaml:8: unknown key "ciphers" at l4[0].tls (known: cert_file, key_file, min_version)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", yaml(tt.cert, tt.key, tt.more))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
		})
	}
	// Without a registered checker the files are not read.
	withChecker(t, nil)
	if _, err := Parse("good.yaml", yaml("old.crt", "old.key", "")); err != nil {
		t.Fatalf("without a checker: %v", err)
	}
}
