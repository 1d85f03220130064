package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// src turns an indented raw string into YAML: the first line is dropped
// and tabs become spaces, so test tables can be indented like the code.
func src(s string) []byte {
	s = strings.TrimPrefix(s, "\n")
	return []byte(strings.ReplaceAll(s, "\t", "  "))
}

const route = `
routes:
	- path: /a
		backend: http://a
`

func TestParseErrors(t *testing.T) {
	known := "(known: name, path, host, methods, strip_prefix, backend, backends, strategy, hash_key, tls, protocol, timeouts, health_check, outlier_detection, retries, max_conns, max_conns_wait, fail_open, middlewares, client_auth)"
	tests := []struct {
		name string
		env  map[string]string
		yaml string
		want []string
	}{
		// Strict decoding.
		{
			name: "unknown key in a route",
			yaml: `
routes:
	- path: /a
		backend: http://a
	- path: /b
		backendz: http://b
`,
			want: []string{
				`bad.yaml:4: routes[1]: one of backend or backends is required`,
				`bad.yaml:5: unknown key "backendz" at routes[1] ` + known,
			},
		},
		{
			name: "unknown key in a backend",
			yaml: `
routes:
	- path: /a
		backends:
			- url: http://a
				weigth: 2
`,
			want: []string{`bad.yaml:5: unknown key "weigth" at routes[0].backends[0] (known: url, weight, tls)`},
		},
		{
			name: "unknown key at top level",
			yaml: "servr:\n\tlisten: \":80\"\n",
			want: []string{`bad.yaml:1: unknown key "servr" at top level (known: server, admin, log, datapath, middlewares, routes, tracing, l4, cluster, providers)`},
		},
		{
			name: "unknown key in timeouts",
			yaml: route + "\t\ttimeouts: {conect: 1s}\n",
			want: []string{`bad.yaml:4: unknown key "conect" at routes[0].timeouts (known: connect, response_header, idle, max_idle_conns, read, total)`},
		},
		{
			name: "duplicate key",
			yaml: "server:\n\tlisten: \":80\"\n\tlisten: \":90\"\n",
			want: []string{`bad.yaml:3: server.listen: duplicate key (first set at line 2)`},
		},
		{
			name: "methods is a string",
			yaml: route + "\t\tmethods: GET\n",
			want: []string{`bad.yaml:4: routes[0].methods: expected a list, got a string`},
		},
		{
			name: "server is a number",
			yaml: "server: 8080\n",
			want: []string{`bad.yaml:1: server: expected a mapping, got an integer`},
		},
		{
			name: "routes is a mapping",
			yaml: "routes:\n\tpath: /a\n",
			want: []string{`bad.yaml:1: routes: expected a list, got a mapping`},
		},
		{
			name: "route is a string",
			yaml: "routes:\n\t- /a\n",
			want: []string{`bad.yaml:2: routes[0]: expected a mapping, got a string`},
		},
		{
			name: "integer is a string",
			yaml: "server:\n\tmax_header_bytes: lots\n",
			want: []string{`bad.yaml:2: server.max_header_bytes: expected an integer, got a string`},
		},
		{
			name: "boolean is yes",
			yaml: "server:\n\th2c: yes\n",
			want: []string{`bad.yaml:2: server.h2c: expected a boolean (true or false), got a string`},
		},
		{
			name: "string is a list",
			yaml: "log:\n\tlevel: [info]\n",
			want: []string{`bad.yaml:2: log.level: expected a string, got a list`},
		},
		{
			name: "weight is a float",
			yaml: "routes:\n\t- path: /a\n\t\tbackends: [{url: \"http://a\", weight: 1.5}]\n",
			want: []string{`bad.yaml:3: routes[0].backends[0].weight: expected an integer, got a float`},
		},
		{
			name: "top level is a list",
			yaml: "- a\n",
			want: []string{`bad.yaml:1: the configuration must be a mapping, got a list`},
		},
		{
			name: "YAML syntax error",
			yaml: "server: [\n",
			want: []string{`bad.yaml:1: invalid YAML: did not find expected node content`},
		},
		{
			name: "two documents",
			yaml: "server: {}\n---\nlog: {}\n",
			want: []string{`bad.yaml:2: multiple YAML documents are not supported`},
		},
		{
			name: "merge of a string",
			yaml: "server:\n\t<<: x\n",
			want: []string{`bad.yaml:2: server: the value of a << merge key must be a mapping or a list of mappings, got a string`},
		},

		// Durations.
		{
			name: "duration with a word",
			yaml: "server:\n\tidle_timeout: 10 seconds\n",
			want: []string{`bad.yaml:2: server.idle_timeout: invalid duration "10 seconds" (want e.g. "1.5s", "200ms", "1m" or a whole number of seconds)`},
		},
		{
			name: "negative duration",
			yaml: "server:\n\twrite_timeout: -1s\n",
			want: []string{`bad.yaml:2: server.write_timeout: duration must not be negative (got "-1s")`},
		},
		{
			name: "negative seconds",
			yaml: "server:\n\twrite_timeout: -5\n",
			want: []string{`bad.yaml:2: server.write_timeout: duration must not be negative (got -5)`},
		},
		{
			name: "fractional seconds",
			yaml: "server:\n\tshutdown_timeout: 1.5\n",
			want: []string{`bad.yaml:2: server.shutdown_timeout: invalid duration 1.5 (a bare number must be a whole number of seconds; otherwise write a unit, e.g. "1.5s" or "200ms")`},
		},
		{
			name: "zero duration",
			yaml: route + "\t\ttimeouts: {connect: 0s}\n",
			want: []string{`bad.yaml:4: routes[0].timeouts.connect: must be greater than 0 (got 0s)`},
		},
		{
			name: "duration is a list",
			yaml: "server:\n\tidle_timeout: [1s]\n",
			want: []string{`bad.yaml:2: server.idle_timeout: expected a duration, got a list`},
		},

		// Environment.
		{
			name: "unset variable",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: ${RG_TEST_UNSET}\n",
			want: []string{`bad.yaml:3: routes[0].backend: environment variable "RG_TEST_UNSET" is not set (use ${RG_TEST_UNSET:-default} to give a default)`},
		},
		{
			name: "unset variable deep in a list",
			yaml: "routes:\n\t- path: /a\n\t\tbackends:\n\t\t\t- url: http://a\n\t\t\t- url: \"http://${RG_TEST_UNSET}:80\"\n",
			want: []string{`bad.yaml:5: routes[0].backends[1].url: environment variable "RG_TEST_UNSET" is not set (use ${RG_TEST_UNSET:-default} to give a default)`},
		},
		{
			name: "unterminated variable",
			yaml: "admin:\n\ttoken: ${RG_TEST\n",
			want: []string{`bad.yaml:2: admin.token: unterminated variable reference "${RG_TEST" (want ${NAME} or ${NAME:-default}; write $$ for a literal $)`},
		},
		{
			name: "invalid variable name",
			yaml: "admin:\n\ttoken: ${1X}\n",
			want: []string{`bad.yaml:2: admin.token: invalid variable reference "${1X}" (want ${NAME} or ${NAME:-default}; write $$ for a literal $)`},
		},
		{
			name: "quoted variable stays a string",
			env:  map[string]string{"RG_TEST_N": "4096"},
			yaml: "server:\n\tmax_header_bytes: \"${RG_TEST_N}\"\n",
			want: []string{`bad.yaml:2: server.max_header_bytes: expected an integer, got a string`},
		},
		{
			name: "variable expands to a bad value",
			env:  map[string]string{"RG_TEST_PORT": "70000"},
			yaml: "server:\n\tlisten: \":${RG_TEST_PORT}\"\n",
			want: []string{`bad.yaml:2: server.listen: invalid port "70000" in ":70000" (want 0-65535)`},
		},

		// Server, admin, log.
		{
			name: "listen port too large",
			yaml: "admin:\n\tlisten: \"localhost:65536\"\n",
			want: []string{`bad.yaml:2: admin.listen: invalid port "65536" in "localhost:65536" (want 0-65535)`},
		},
		{
			name: "listen without port",
			yaml: "server:\n\tlisten: 8080\n",
			want: []string{`bad.yaml:2: server.listen: invalid address "8080" (want host:port, e.g. ":8080" or "127.0.0.1:8080")`},
		},
		{
			name: "listen with bad host",
			yaml: "server:\n\tlisten: \"my host:8080\"\n",
			want: []string{`bad.yaml:2: server.listen: invalid host "my host" in "my host:8080"`},
		},
		{
			name: "admin on the server port",
			yaml: "server:\n\tlisten: \"127.0.0.1:9000\"\nadmin:\n\tlisten: \":9000\"\n",
			want: []string{`bad.yaml:4: admin.listen: must differ from server.listen (both use port 9000)`},
		},
		{
			name: "admin on the default server port",
			yaml: "admin:\n\tlisten: \":8080\"\n",
			want: []string{`bad.yaml:2: admin.listen: must differ from server.listen (both use port 8080)`},
		},
		{
			name: "unknown engine",
			yaml: "server:\n\tengine: turbo\n",
			want: []string{`bad.yaml:2: server.engine: unknown engine "turbo" (supported: fast, standard)`},
		},
		{
			name: "unknown escaped-slash action",
			yaml: "server:\n\tpath:\n\t\tescaped_slashes: unescape\n",
			want: []string{`bad.yaml:3: server.path.escaped_slashes: unknown action "unescape" (supported: reject, keep, decode)`},
		},
		{
			name: "unknown path key",
			yaml: "server:\n\tpath: { merge: true }\n",
			want: []string{`bad.yaml:2: unknown key "merge" at server.path (known: merge_slashes, escaped_slashes)`},
		},
		{
			name: "unknown underscore action",
			yaml: "server:\n\theaders_with_underscores: keep\n",
			want: []string{`bad.yaml:2: server.headers_with_underscores: unknown action "keep" (supported: drop, reject, allow)`},
		},
		{
			name: "route path with an escaped unreserved character",
			yaml: "routes:\n\t- { path: \"/%61pi/caf%c3%a9\", backend: \"http://b:1\" }\n",
			want: []string{`bad.yaml:2: routes[0].path: not normalised: want "/api/caf%C3%A9" (unreserved characters unescaped, escapes in upper case)`},
		},
		{
			name: "event loops not a number",
			yaml: "server:\n\tevent_loops: many\n",
			want: []string{`bad.yaml:2: server.event_loops: invalid value "many" (want auto, off or a number of loops from 1 to 256)`},
		},
		{
			name: "event loops zero",
			yaml: "server:\n\tevent_loops: 0\n",
			want: []string{`bad.yaml:2: server.event_loops: invalid value "0" (want auto, off or a number of loops from 1 to 256)`},
		},
		{
			name: "max header bytes too small",
			yaml: "server:\n\tmax_header_bytes: 100\n",
			want: []string{`bad.yaml:2: server.max_header_bytes: must be between 1024 and 16777216 (got 100)`},
		},
		{
			name: "max header bytes explicitly zero",
			yaml: "server:\n\tmax_header_bytes: 0\n",
			want: []string{`bad.yaml:2: server.max_header_bytes: must be between 1024 and 16777216 (got 0)`},
		},
		{
			name: "token with a newline",
			env:  map[string]string{"RG_TEST_TOKEN": "abc\n"},
			yaml: "admin:\n\ttoken: ${RG_TEST_TOKEN}\n",
			want: []string{`bad.yaml:2: admin.token: must not contain spaces or control characters`},
		},
		{
			name: "log enums",
			yaml: "log:\n\tformat: xml\n\tlevel: trace\n",
			want: []string{
				`bad.yaml:2: log.format: unknown format "xml" (supported: json, text)`,
				`bad.yaml:3: log.level: unknown level "trace" (supported: debug, info, warn, error)`,
			},
		},

		// Route paths, hosts and methods.
		{
			name: "path is missing",
			yaml: "routes:\n\t- backend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: is required`},
		},
		{
			name: "path without slash",
			yaml: "routes:\n\t- path: api\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must start with "/" (got "api")`},
		},
		{
			name: "path with query",
			yaml: "routes:\n\t- path: /api?x=1\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must not contain "?" (got "/api?x=1")`},
		},
		{
			name: "path with fragment",
			yaml: "routes:\n\t- path: \"/api#x\"\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must not contain "#" (got "/api#x")`},
		},
		{
			name: "path with double slash",
			yaml: "routes:\n\t- path: /api//v1\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must not contain "//" (got "/api//v1")`},
		},
		{
			name: "path ending in double slash",
			yaml: "routes:\n\t- path: /api//\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must not contain "//" (got "/api//")`},
		},
		{
			name: "path with dot-dot",
			yaml: "routes:\n\t- path: /api/../admin\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: must not contain ".." segments (got "/api/../admin")`},
		},
		{
			name: "path with a space",
			yaml: "routes:\n\t- path: /my api\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: invalid character ' ' in "/my api" (percent-encode it)`},
		},
		{
			name: "path with a bad escape",
			yaml: "routes:\n\t- path: /a%zz\n\t\tbackend: http://a\n",
			want: []string{`bad.yaml:2: routes[0].path: invalid %-escape in "/a%zz"`},
		},
		{
			name: "host with port",
			yaml: route + "\t\thost: api.example.com:8080\n",
			want: []string{`bad.yaml:4: routes[0].host: must not include a port (got "api.example.com:8080")`},
		},
		{
			name: "host with inner wildcard",
			yaml: route + "\t\thost: api.*.com\n",
			want: []string{`bad.yaml:4: routes[0].host: invalid host "api.*.com" (a wildcard must be a leading "*.", as in "*.example.com")`},
		},
		{
			name: "host with bad label",
			yaml: route + "\t\thost: -api.example.com\n",
			want: []string{`bad.yaml:4: routes[0].host: invalid host "-api.example.com"`},
		},
		{
			name: "bad method",
			yaml: route + "\t\tmethods: [GET, \"PO ST\", \"\"]\n",
			want: []string{
				`bad.yaml:4: routes[0].methods[1]: invalid method "PO ST"`,
				`bad.yaml:4: routes[0].methods[2]: must not be empty`,
			},
		},
		{
			name: "duplicate method",
			yaml: route + "\t\tmethods:\n\t\t\t- get\n\t\t\t- GET\n",
			want: []string{`bad.yaml:6: routes[0].methods[1]: duplicate method "GET" (also methods[0])`},
		},

		// Backends.
		{
			name: "backend without scheme",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: localhost:8001\n",
			want: []string{`bad.yaml:3: routes[0].backend: invalid URL "localhost:8001" (want http://host[:port][/path] or https://...)`},
		},
		{
			name: "backend with other scheme",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: ws://a\n",
			want: []string{`bad.yaml:3: routes[0].backend: unsupported scheme "ws" in "ws://a" (supported: http, https)`},
		},
		{
			name: "backend without host",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http:///x\n",
			want: []string{`bad.yaml:3: routes[0].backend: missing host in "http:///x"`},
		},
		{
			name: "backend with query",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://a/?x=1\n",
			want: []string{`bad.yaml:3: routes[0].backend: a query is not allowed in "http://a/?x=1"`},
		},
		{
			name: "backend with fragment",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: \"http://a/#top\"\n",
			want: []string{`bad.yaml:3: routes[0].backend: a fragment is not allowed in "http://a/#top"`},
		},
		{
			name: "backend with user info",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://user:pw@a\n",
			want: []string{`bad.yaml:3: routes[0].backend: user info is not allowed in "http://user:pw@a"`},
		},
		{
			name: "backend with bad port",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://a:0\n",
			want: []string{`bad.yaml:3: routes[0].backend: invalid port "0" in "http://a:0" (want 1-65535)`},
		},
		{
			name: "backend with bad host",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://a..b:80\n",
			want: []string{`bad.yaml:3: routes[0].backend: invalid host "a..b" in "http://a..b:80"`},
		},
		{
			name: "backend URL missing in a pool",
			yaml: "routes:\n\t- path: /a\n\t\tbackends:\n\t\t\t- weight: 2\n",
			want: []string{`bad.yaml:4: routes[0].backends[0].url: is required`},
		},
		{
			name: "backend and backends",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://a\n\t\tbackends: [{url: \"http://b\"}]\n",
			want: []string{`bad.yaml:2: routes[0]: set only one of backend and backends`},
		},
		{
			name: "backend and backends naming the same URL",
			yaml: "routes:\n\t- path: /a\n\t\tbackend: http://a\n\t\tbackends: [{url: \"http://a\"}]\n",
			want: []string{`bad.yaml:2: routes[0]: set only one of backend and backends`},
		},
		{
			name: "neither backend nor backends",
			yaml: "routes:\n\t- path: /a\n\t\tstrategy: round_robin\n",
			want: []string{`bad.yaml:2: routes[0]: one of backend or backends is required`},
		},
		{
			name: "empty backends",
			yaml: "routes:\n\t- path: /a\n\t\tbackends: []\n",
			want: []string{`bad.yaml:2: routes[0]: one of backend or backends is required`},
		},
		{
			name: "duplicate backend",
			yaml: "routes:\n\t- path: /a\n\t\tbackends:\n\t\t\t- url: http://a\n\t\t\t- url: HTTP://A:80/\n",
			want: []string{`bad.yaml:5: routes[0].backends[1].url: duplicate backend "http://a:80" (also backends[0])`},
		},
		{
			name: "weight out of range",
			yaml: "routes:\n\t- path: /a\n\t\tbackends:\n\t\t\t- url: http://a\n\t\t\t\tweight: 0\n\t\t\t- url: http://b\n\t\t\t\tweight: 1000001\n",
			want: []string{
				`bad.yaml:5: routes[0].backends[0].weight: must be between 1 and 1000000 (got 0)`,
				`bad.yaml:7: routes[0].backends[1].weight: must be between 1 and 1000000 (got 1000001)`,
			},
		},
		{
			name: "unknown strategy",
			yaml: route + "\t\tstrategy: random\n",
			want: []string{`bad.yaml:4: routes[0].strategy: unknown strategy "random" (supported: round_robin, weighted_round_robin, least_connections, random_two_choices, consistent_hash)`},
		},
		{
			name: "max idle conns explicitly zero",
			yaml: route + "\t\ttimeouts:\n\t\t\tmax_idle_conns: 0\n",
			want: []string{`bad.yaml:5: routes[0].timeouts.max_idle_conns: must be greater than 0 (got 0)`},
		},

		// Route sets.
		{
			name: "duplicate route",
			yaml: `
routes:
	- path: /a
		backend: http://a
	- path: /b
		backend: http://b
	- path: /a/
		backend: http://c
`,
			want: []string{`bad.yaml:6: routes[2]: duplicate route: same host, path and methods as routes[0]`},
		},
		{
			name: "duplicate route with methods in another order",
			yaml: `
routes:
	- {path: /a, host: Example.com, methods: [GET, POST], backend: "http://a"}
	- {path: /a, host: example.com, methods: [post, get], backend: "http://b"}
`,
			want: []string{`bad.yaml:3: routes[1]: duplicate route: same host, path and methods as routes[0]`},
		},
		{
			name: "duplicate route name",
			yaml: `
routes:
	- {name: users, path: /a, backend: "http://a"}
	- {name: users, path: /b, backend: "http://b"}
`,
			want: []string{`bad.yaml:3: routes[1].name: duplicate route name "users" (also routes[0])`},
		},
		{
			name: "explicit name taken by a default name",
			yaml: `
routes:
	- {path: /a, backend: "http://a"}
	- {name: /a, path: /b, backend: "http://b"}
`,
			want: []string{`bad.yaml:3: routes[1].name: duplicate route name "/a" (also routes[0])`},
		},

		// Many problems at once, in file order.
		{
			name: "all errors are reported",
			yaml: `
server:
	listen: ":99999"
	engine: slow
admin:
	listen: nowhere
routes:
	- path: /a
		backend: ftp://a
		methods: [GET, GET]
	- host: a.com
		backends:
			- url: http://b
			- url: http://b
`,
			want: []string{
				`bad.yaml:2: server.listen: invalid port "99999" in ":99999" (want 0-65535)`,
				`bad.yaml:3: server.engine: unknown engine "slow" (supported: fast, standard)`,
				`bad.yaml:5: admin.listen: invalid address "nowhere" (want host:port, e.g. ":8080" or "127.0.0.1:8080")`,
				`bad.yaml:8: routes[0].backend: unsupported scheme "ftp" in "ftp://a" (supported: http, https)`,
				`bad.yaml:9: routes[0].methods[1]: duplicate method "GET" (also methods[0])`,
				`bad.yaml:10: routes[1].path: is required`,
				`bad.yaml:13: routes[1].backends[1].url: duplicate backend "http://b:80" (also backends[0])`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Parse("bad.yaml", src(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config along with an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", indent(got), indent(want))
			}
			if len(errs.List) != len(tt.want) {
				t.Errorf("got %d FieldErrors, want %d", len(errs.List), len(tt.want))
			}
		})
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

func TestFieldError(t *testing.T) {
	_, err := Parse("f.yaml", src("routes:\n\t- path: /a\n\t\tbackends:\n\t\t\t- url: http://a:99999\n"))
	var fe FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(FieldError) failed on %v", err)
	}
	want := FieldError{File: "f.yaml", Line: 4, Path: "routes[0].backends[0].url", Msg: `invalid port "99999" in "http://a:99999" (want 1-65535)`}
	if fe != want {
		t.Errorf("got %+v, want %+v", fe, want)
	}

	for _, tt := range []struct {
		fe   FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Path: "server.listen", Msg: "bad"}, "a.yaml:3: server.listen: bad"},
		{FieldError{File: "a.yaml", Path: "server.listen", Msg: "bad"}, "a.yaml: server.listen: bad"},
		{FieldError{File: "a.yaml", Line: 1, Msg: "bad"}, "a.yaml:1: bad"},
		{FieldError{Line: 1, Path: "log", Msg: "bad"}, "<config>:1: log: bad"},
	} {
		if got := tt.fe.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.fe, got, tt.want)
		}
	}
}

func TestLoadDefaultYAML(t *testing.T) {
	c, err := Load("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "default.yaml" {
		t.Errorf("Source = %q", c.Source)
	}
	want := &Config{
		Server: Server{
			Listen:            ":8080",
			Engine:            "fast",
			EventLoops:        "auto",
			H2C:               ptr(true),
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(60 * time.Second),
			WriteTimeout:      Duration(60 * time.Second),
			MaxHeaderBytes:    65536,
			ShutdownTimeout:   Duration(30 * time.Second),

			Path:                   PathNormalization{MergeSlashes: ptr(true), EscapedSlashes: "reject"},
			HeadersWithUnderscores: "drop",
		},
		Admin: Admin{Listen: "127.0.0.1:8081"},
		Log:   Log{Format: "json", Level: "info", Access: ptr(true)},
		Routes: []Route{{
			Name:     "/api/test",
			Path:     "/api/test",
			Backend:  "http://localhost:8001",
			Backends: []Backend{{URL: "http://localhost:8001", Weight: 1}},
			Strategy: "round_robin",
			Timeouts: Timeouts{
				Connect:        Duration(5 * time.Second),
				ResponseHeader: Duration(5 * time.Second),
				Idle:           Duration(90 * time.Second),
				MaxIdleConns:   256,
				Read:           Duration(60 * time.Second),
				Total:          Duration(15 * time.Second),
			},
			Outlier: Outlier{Consecutive: 5, BaseEjection: Duration(30 * time.Second), MaxEjection: Duration(300 * time.Second), Statuses: []int{502, 503, 504}},
			Retries: Retries{Attempts: ptr(2), On: []string{"connect_failure", "reset"}, Budget: ptr(0.2), MaxBodyBytes: 65536},
		}},
		Datapath: defaultDatapath(),
		Tracing:  defaultedTracing(Tracing{}),
		Source:   "default.yaml",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if !c.AccessLog() || !c.Server.H2CEnabled() || !c.Admin.Enabled() {
		t.Errorf("AccessLog, H2CEnabled, Enabled = %v, %v, %v; want true", c.AccessLog(), c.Server.H2CEnabled(), c.Admin.Enabled())
	}

	d, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	d.Source = c.Source
	if !reflect.DeepEqual(c, d) {
		t.Errorf("Default() differs from Load(default.yaml)")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, src(route), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != good || len(c.Routes) != 1 {
		t.Errorf("Load(%q) = %+v", good, c)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + `:2: log.level: unknown level "loud" (supported: debug, info, warn, error)`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %s", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "empty file",
			yaml: "",
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != ":8080" || c.Admin.Listen != "127.0.0.1:8081" || len(c.Routes) != 0 {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "empty route list",
			yaml: "routes: []\n",
			check: func(t *testing.T, c *Config) {
				if len(c.Routes) != 0 {
					t.Errorf("routes = %+v", c.Routes)
				}
			},
		},
		{
			name: "multiple backends",
			yaml: `
routes:
	- path: "/api/users"
		backends:
			- url: "http://users1:8001"
			- url: "http://users2:8001"
		strategy: "round_robin"
`,
			check: func(t *testing.T, c *Config) {
				r := c.Routes[0]
				want := []Backend{{URL: "http://users1:8001", Weight: 1}, {URL: "http://users2:8001", Weight: 1}}
				if r.Name != "/api/users" || r.Backend != "" || !reflect.DeepEqual(r.Backends, want) || r.Strategy != "round_robin" {
					t.Errorf("route = %+v", r)
				}
			},
		},
		{
			name: "every field",
			yaml: `
server:
	listen: "127.0.0.1:9000"
	engine: standard
	h2c: false
	read_header_timeout: 2s
	idle_timeout: 30
	write_timeout: 1m
	max_header_bytes: 1024
	shutdown_timeout: 500ms
	path: { merge_slashes: false, escaped_slashes: decode }
	headers_with_underscores: allow
admin:
	listen: "off"
	token: s3cret
log:
	format: text
	level: debug
	access: false
routes:
	- name: users
		path: /users/
		host: API.Example.com
		methods: [get, Post]
		strip_prefix: true
		backends:
			- url: http://Users1:8001/base/
				weight: 3
			- url: "http://[::1]:8002"
		timeouts:
			connect: 1s
			response_header: 2s
			idle: 3s
			max_idle_conns: 4
`,
			check: func(t *testing.T, c *Config) {
				want := &Config{
					Server: Server{
						Listen:            "127.0.0.1:9000",
						Engine:            "standard",
						EventLoops:        "auto",
						H2C:               ptr(false),
						ReadHeaderTimeout: Duration(2 * time.Second),
						IdleTimeout:       Duration(30 * time.Second),
						WriteTimeout:      Duration(time.Minute),
						MaxHeaderBytes:    1024,
						ShutdownTimeout:   Duration(500 * time.Millisecond),

						Path:                   PathNormalization{MergeSlashes: ptr(false), EscapedSlashes: "decode"},
						HeadersWithUnderscores: "allow",
					},
					Admin: Admin{Listen: "off", Token: "s3cret"},
					Log:   Log{Format: "text", Level: "debug", Access: ptr(false)},
					Routes: []Route{{
						Name:        "users",
						Path:        "/users",
						Host:        "api.example.com",
						Methods:     []string{"GET", "POST"},
						StripPrefix: true,
						Backends:    []Backend{{URL: "http://users1:8001/base", Weight: 3}, {URL: "http://[::1]:8002", Weight: 1}},
						Strategy:    "round_robin",
						Timeouts: Timeouts{
							Connect:        Duration(time.Second),
							ResponseHeader: Duration(2 * time.Second),
							Idle:           Duration(3 * time.Second),
							MaxIdleConns:   4,
							Read:           Duration(60 * time.Second),
							Total:          Duration(15 * time.Second),
						},
						Outlier: Outlier{Consecutive: 5, BaseEjection: Duration(30 * time.Second), MaxEjection: Duration(300 * time.Second), Statuses: []int{502, 503, 504}},
						Retries: Retries{Attempts: ptr(2), On: []string{"connect_failure", "reset"}, Budget: ptr(0.2), MaxBodyBytes: 65536},
					}},
					Datapath: defaultDatapath(),
					Tracing:  defaultedTracing(Tracing{}),
					Source:   "good.yaml",
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
				if c.AccessLog() || c.Server.H2CEnabled() || c.Admin.Enabled() {
					t.Errorf("AccessLog, H2CEnabled, Enabled = %v, %v, %v; want false", c.AccessLog(), c.Server.H2CEnabled(), c.Admin.Enabled())
				}
			},
		},
		{
			name: "environment",
			env:  map[string]string{"RG_TEST_PORT": "9001", "RG_TEST_BACKEND": "users:8001", "RG_TEST_EMPTY": "", "RG_TEST_MHB": "2048", "RG_TEST_TRUE": "true"},
			yaml: `
server:
	listen: ":${RG_TEST_PORT}"
	max_header_bytes: ${RG_TEST_MHB}
	h2c: ${RG_TEST_TRUE}
	idle_timeout: ${RG_TEST_UNSET:-15}
admin:
	listen: "${RG_TEST_UNSET:-127.0.0.1}:${RG_TEST_EMPTY:-9002}"
	token: "$$ecret-${RG_TEST_EMPTY}-$1-$"
routes:
	- path: /api
		backend: "http://${RG_TEST_BACKEND}"
`,
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != ":9001" || c.Server.MaxHeaderBytes != 2048 || !c.Server.H2CEnabled() || c.Server.IdleTimeout.D() != 15*time.Second {
					t.Errorf("server = %+v", c.Server)
				}
				if c.Admin.Listen != "127.0.0.1:9002" || c.Admin.Token != "$ecret--$1-$" {
					t.Errorf("admin = %+v", c.Admin)
				}
				if r := c.Routes[0]; r.Backend != "http://users:8001" || r.Backends[0].URL != "http://users:8001" {
					t.Errorf("route = %+v", r)
				}
			},
		},
		{
			name: "variable values are not YAML",
			env:  map[string]string{"RG_TEST_NAME": "a: [b, #c"},
			yaml: route + "\t\tname: ${RG_TEST_NAME}\n",
			check: func(t *testing.T, c *Config) {
				if c.Routes[0].Name != "a: [b, #c" {
					t.Errorf("name = %q", c.Routes[0].Name)
				}
			},
		},
		{
			name: "shorthand keeps backend",
			yaml: "routes:\n\t- path: /\n\t\tbackend: HTTP://Example.COM\n",
			check: func(t *testing.T, c *Config) {
				r := c.Routes[0]
				if r.Path != "/" || r.Name != "/" || r.Backend != "HTTP://Example.COM" || !reflect.DeepEqual(r.Backends, []Backend{{URL: "http://example.com:80", Weight: 1}}) {
					t.Errorf("route = %+v", r)
				}
			},
		},
		{
			name: "default names stay unique",
			yaml: `
routes:
	- {path: /a, backend: "http://a"}
	- {path: /a, host: x.com, backend: "http://a"}
	- {path: /a, host: x.com, methods: [POST, GET], backend: "http://a"}
	- {path: /a, host: "*.x.com", methods: [GET], backend: "http://a"}
	- {path: /b, host: x.com, backend: "http://a"}
	- {path: /c, name: "/d", backend: "http://a"}
	- {path: /d, host: y.com, backend: "http://a"}
`,
			check: func(t *testing.T, c *Config) {
				var names []string
				for _, r := range c.Routes {
					names = append(names, r.Name)
				}
				want := []string{"/a", "x.com/a", "x.com/a [GET,POST]", "*.x.com/a", "/b", "/d", "y.com/d"}
				if !reflect.DeepEqual(names, want) {
					t.Errorf("names = %q, want %q", names, want)
				}
			},
		},
		{
			name: "anchors and merge keys",
			yaml: `
routes:
	- path: /a
		backend: http://a
		timeouts: &slow
			connect: 10s
			idle: 20s
	- path: /b
		backend: http://b
		timeouts:
			<<: *slow
			idle: 1s
`,
			check: func(t *testing.T, c *Config) {
				got := c.Routes[1].Timeouts
				want := Timeouts{Connect: Duration(10 * time.Second), ResponseHeader: Duration(5 * time.Second), Idle: Duration(time.Second), MaxIdleConns: 256, Read: Duration(60 * time.Second), Total: Duration(15 * time.Second)}
				if got != want {
					t.Errorf("timeouts = %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "timeouts.total default and off",
			yaml: `
routes:
	- path: /a
		backend: http://a
		timeouts: { response_header: 60s }
	- path: /b
		backend: http://b
		timeouts: { total: 0s }
	- path: /c
		backend: http://c
		timeouts: { total: 2s }
`,
			check: func(t *testing.T, c *Config) {
				// One attempt's connect and response_header always fit.
				for i, want := range []Duration{Duration(65 * time.Second), 0, Duration(2 * time.Second)} {
					if got := c.Routes[i].Timeouts.Total; got != want {
						t.Errorf("routes[%d].timeouts.total = %s, want %s", i, got, want)
					}
				}
			},
		},
		{
			name: "null values are unset",
			yaml: "server:\n\tlisten:\n\th2c: ~\nlog:\nroutes:\n",
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != ":8080" || !c.Server.H2CEnabled() || c.Log.Format != "json" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "listen forms",
			yaml: "server:\n\tlisten: \"[::1]:8080\"\nadmin:\n\tlisten: \"localhost:8080\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != "[::1]:8080" || c.Admin.Listen != "localhost:8080" {
					t.Errorf("got %+v %+v", c.Server, c.Admin)
				}
			},
		},
		{
			name: "wildcard host",
			yaml: route + "\t\thost: \"*.Example.com\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Routes[0].Host != "*.example.com" {
					t.Errorf("host = %q", c.Routes[0].Host)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Parse("good.yaml", src(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1", "E": "", "LONG_name_2": "x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "a${A}b${LONG_name_2}c", want: "a1bxc"},
		{in: "${E}", want: ""},
		{in: "${E:-d}", want: "d"},
		{in: "${U:-d}", want: "d"},
		{in: "${U:-}", want: ""},
		{in: "${A:-d}", want: "1"},
		{in: "${U:-a:-b}", want: "a:-b"},
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "$$$${A}", want: "$${A}"},
		{in: "$A $ $", want: "$A $ $"},
		{in: "${U}", err: `environment variable "U" is not set (use ${U:-default} to give a default)`},
		{in: "${}", err: `invalid variable reference "${}" (want ${NAME} or ${NAME:-default}; write $$ for a literal $)`},
		{in: "${A B}", err: `invalid variable reference "${A B}" (want ${NAME} or ${NAME:-default}; write $$ for a literal $)`},
		{in: "x${A", err: `unterminated variable reference "${A" (want ${NAME} or ${NAME:-default}; write $$ for a literal $)`},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, lookup)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("expandEnv(%q) error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationUnmarshalYAML(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "200ms", want: 200 * time.Millisecond},
		{in: "1m", want: time.Minute},
		{in: "60", want: time.Minute},
		{in: "0", want: 0},
		{in: `"1h30m"`, want: 90 * time.Minute},
		{in: "~", want: 0},
		{in: "-1", err: "duration must not be negative (got -1)"},
		{in: "-1s", err: `duration must not be negative (got "-1s")`},
		{in: "1 second", err: `invalid duration "1 second" (want e.g. "1.5s", "200ms", "1m" or a whole number of seconds)`},
		{in: "10000000000000", err: "duration 10000000000000 is too large"},
		{in: "true", err: "expected a duration, got a boolean"},
		{in: "{s: 1}", err: "expected a duration, got a mapping"},
	}
	for _, tt := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || v.D.D() != tt.want):
			t.Errorf("%s: got %v, %v; want %v", tt.in, v.D, err, tt.want)
		}
	}
}

func TestApplyDefaultsAndValidate(t *testing.T) {
	c := &Config{Routes: []Route{
		{Path: "/users/", Host: "API.example.com", Methods: []string{"get"}, Backend: "http://users"},
		{Path: "/orders", Backends: []Backend{{URL: "http://Orders:8001/"}}},
	}}
	if err := c.Validate(); err == nil {
		t.Fatal("Validate before ApplyDefaults succeeded")
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	before := *c
	c.ApplyDefaults()
	if !reflect.DeepEqual(*c, before) {
		t.Errorf("ApplyDefaults is not idempotent")
	}
	r := c.Routes[0]
	if r.Name != "/users" || r.Path != "/users" || r.Host != "api.example.com" || r.Methods[0] != "GET" ||
		!reflect.DeepEqual(r.Backends, []Backend{{URL: "http://users:80", Weight: 1}}) {
		t.Errorf("route 0 = %+v", r)
	}
	if got := c.Routes[1].Backends[0]; got != (Backend{URL: "http://orders:8001", Weight: 1}) {
		t.Errorf("route 1 backend = %+v", got)
	}

	// Validate checks the canonical forms the runtime relies on.
	c.Routes[0].Path = "/users/"
	c.Routes[0].Host = "API.example.com"
	c.Routes[0].Methods = []string{"get"}
	c.Routes[1].Backends = append(c.Routes[1].Backends, Backend{URL: "http://b", Weight: 1})
	c.Routes[1].Backend = "http://x"
	want := strings.Join([]string{
		`<config>: routes[0].path: not normalised: want "/users"`,
		`<config>: routes[0].host: not normalised: want "api.example.com"`,
		`<config>: routes[0].methods[0]: not normalised: want "GET"`,
		`<config>: routes[1]: set only one of backend and backends`,
		`<config>: routes[1].backends[1].url: not normalised: want "http://b:80"`,
	}, "\n")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate:\n got: %v\nwant: %s", err, want)
	}
}

func TestHelpersOnZeroValues(t *testing.T) {
	var c *Config
	var s *Server
	var a *Admin
	if !c.AccessLog() || !s.H2CEnabled() || a.Enabled() {
		t.Error("nil receivers")
	}
	if !(&Config{}).AccessLog() || !(&Server{}).H2CEnabled() {
		t.Error("unset fields must mean the default, true")
	}
}

func TestAliasBomb(t *testing.T) {
	// 1000 aliases of a route holding 1000 aliases of a backend: a small
	// file that stands for a million backends. The walk must give up.
	var b strings.Builder
	b.WriteString("routes:\n  - &r {path: /a, backends: [&b {url: \"http://a\"}")
	b.WriteString(strings.Repeat(", *b", 999))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *r\n", 999))
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "aliases expand to too many values") {
		t.Fatalf("Parse error = %.300v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		route,
		"server:\n  listen: \":8080\"\n  idle_timeout: 1.5s\nadmin:\n  listen: \"off\"\n",
		"routes:\n  - path: /a\n    backends: [{url: \"http://a:1/b\", weight: 2}]\n    timeouts: &t {connect: 1}\n  - path: /b\n    backend: http://b\n    timeouts: {<<: *t}\n",
		"routes: [{path: /a, backend: \"http://${HOME:-x}\"}]\n",
	} {
		f.Add([]byte(s))
	}
	if data, err := os.ReadFile("default.yaml"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("error %T %v is not a non-empty *Errors", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not re-validate: %v\ninput:\n%s", err, data)
		}
		before := *c
		c.ApplyDefaults()
		if !reflect.DeepEqual(*c, before) {
			t.Fatalf("ApplyDefaults changed a parsed config\ninput:\n%s", data)
		}
	})
}

// TestEventLoopCount: auto follows GOMAXPROCS, off is none, a number is
// that many loops.
func TestEventLoopCount(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int
	}{
		{"auto", runtime.GOMAXPROCS(0)},
		{"", runtime.GOMAXPROCS(0)},
		{"off", 0},
		{"1", 1},
		{"12", 12},
		{"bogus", 0},
	} {
		if got := (&Server{EventLoops: tc.v}).EventLoopCount(); got != tc.want {
			t.Errorf("event_loops %q: %d loops, want %d", tc.v, got, tc.want)
		}
	}
}

// TestEventLoopCountIgnoresRaisedProcs: the plugin host raises GOMAXPROCS
// for its guest threads; the automatic loop count stays at the value the
// process started with.
func TestEventLoopCountIgnoresRaisedProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(before + 3)
	defer runtime.GOMAXPROCS(before)
	if got := (&Server{EventLoops: "auto"}).EventLoopCount(); got != before {
		t.Errorf("auto: %d loops with GOMAXPROCS raised to %d, want %d", got, before+3, before)
	}
}
