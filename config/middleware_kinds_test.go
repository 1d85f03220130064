package config_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware/cors"
	"github.com/rustygate/rustygate/l7/middleware/jwt"
	"github.com/rustygate/rustygate/l7/middleware/ratelimit"
	_ "github.com/rustygate/rustygate/l7/middleware/standard"
	"github.com/rustygate/rustygate/l7/middleware/wasm"
)

// These tests read the kinds RustyGate ships (package standard) through
// config: the kinds' own checks, and how config decodes, merges, orders
// and reports them.

func src(s string) []byte {
	s = strings.TrimPrefix(s, "\n")
	return []byte(strings.ReplaceAll(s, "\t", "  "))
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

func ptr[T any](v T) *T { return &v }

// secret32 is a jwt secret long enough to be accepted.
const secret32 = "0123456789abcdef0123456789abcdef"

func TestMiddlewareErrors(t *testing.T) {
	withPluginFiles(t)
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "keys of another kind",
			yaml: `
middlewares:
	- name: rate_limit
		limit: 100
		allow_origins: ["https://a.com"]
		algorithms: [HS256]
	- name: wasm
		path: p.wasm
		key: ip
		allow_credentials: false
		require_exp: true
`,
			want: []string{
				`bad.yaml:4: unknown key "allow_origins" at middlewares[0] (known: name, enabled, limit, window, burst, key, trusted_proxies, max_keys, scope, on_error)`,
				`bad.yaml:5: unknown key "algorithms" at middlewares[0] (known: name, enabled, limit, window, burst, key, trusted_proxies, max_keys, scope, on_error)`,
				`bad.yaml:8: unknown key "key" at middlewares[1] (known: name, enabled, path, config, fail_open, max_concurrency, max_queue)`,
				`bad.yaml:9: unknown key "allow_credentials" at middlewares[1] (known: name, enabled, path, config, fail_open, max_concurrency, max_queue)`,
				`bad.yaml:10: unknown key "require_exp" at middlewares[1] (known: name, enabled, path, config, fail_open, max_concurrency, max_queue)`,
			},
		},
		{
			name: "names",
			yaml: `
middlewares:
	- enabled: true
	- name: ratelimit
	- name: cors
		allow_origins: ["https://a.com"]
	- name: cors
		allow_origins: ["*"]
	- name: wasm
		path: a.wasm
	- name: wasm
		path: b.wasm
	- name: wasm
		path: a.wasm
`,
			want: []string{
				`bad.yaml:2: middlewares[0].name: is required`,
				`bad.yaml:3: middlewares[1].name: unknown middleware "ratelimit" (supported: SUPPORTED)`,
				`bad.yaml:6: middlewares[3].name: duplicate middleware "cors" (also middlewares[2])`,
				`bad.yaml:13: middlewares[6].path: duplicate wasm entry with path "a.wasm" (also middlewares[4])`,
			},
		},
		{
			name: "rate_limit fields",
			yaml: `
middlewares:
	- name: rate_limit
		limit: 0
		window: 0
		burst: -1
		key: cookie:x
		trusted_proxies: [10.0.0.0/8, 10.0.0.1, "2001:db8::/32", 300.1.1.1, "10.0.0.0/33", "fe80::1%eth0"]
		max_keys: 0
`,
			want: []string{
				`bad.yaml:3: middlewares[0].limit: must be between 1 and 1000000000 (got 0)`,
				`bad.yaml:4: middlewares[0].window: must be greater than 0 (got 0s)`,
				`bad.yaml:5: middlewares[0].burst: must be between 0 (same as limit) and 1000000000 (got -1)`,
				`bad.yaml:6: middlewares[0].key: invalid key "cookie:x" (want ip, header:NAME or jwt:CLAIM)`,
				`bad.yaml:7: middlewares[0].trusted_proxies[3]: invalid trusted proxy "300.1.1.1" (want an IP address or a CIDR such as 10.0.0.0/8)`,
				`bad.yaml:7: middlewares[0].trusted_proxies[4]: invalid trusted proxy "10.0.0.0/33" (want an IP address or a CIDR such as 10.0.0.0/8)`,
				`bad.yaml:7: middlewares[0].trusted_proxies[5]: invalid trusted proxy "fe80::1%eth0" (want an IP address or a CIDR such as 10.0.0.0/8)`,
				`bad.yaml:8: middlewares[0].max_keys: must be between 1 and 100000000 (got 0)`,
			},
		},
		{
			name: "rate_limit keys and required limit",
			yaml: `
middlewares:
	- name: rate_limit
		window: 1m
		key: "header:X Y"
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: rate_limit
				key: "jwt:"
`,
			want: []string{
				`bad.yaml:2: middlewares[0].limit: is required`,
				`bad.yaml:4: middlewares[0].key: invalid header name "X Y" in key "header:X Y"`,
				`bad.yaml:10: routes[0].middlewares[0].key: invalid claim name "" in key "jwt:"`,
			},
		},
		{
			name: "a disabled entry need not be complete",
			yaml: `
middlewares:
	- name: rate_limit
		enabled: false
		limit: -5
`,
			want: []string{`bad.yaml:4: middlewares[0].limit: must be between 1 and 1000000000 (got -5)`},
		},
		{
			name: "cors fields",
			yaml: `
middlewares:
	- name: cors
		allow_origins: ["*", "https://a.com"]
		allow_credentials: true
		allow_methods: ["GE T"]
		allow_headers: ["X-A", "*", "a:b"]
		expose_headers: ["X-B", "x y"]
		max_age: 1.5s
`,
			want: []string{
				`bad.yaml:3: middlewares[0].allow_origins[0]: "*" allows every origin; list it alone`,
				`bad.yaml:4: middlewares[0].allow_credentials: cannot be true when allow_origins is "*" (list the origins instead)`,
				`bad.yaml:5: middlewares[0].allow_methods[0]: invalid method "GE T"`,
				`bad.yaml:6: middlewares[0].allow_headers[2]: invalid header name "a:b"`,
				`bad.yaml:7: middlewares[0].expose_headers[1]: invalid header name "x y"`,
				`bad.yaml:8: middlewares[0].max_age: must be a whole number of seconds (got 1.5s)`,
			},
		},
		{
			name: "cors origins",
			yaml: `
middlewares:
	- name: cors
		allow_origins:
			- https://a.com/
			- a.com
			- https://*.a.*.com
			- https://x.com:0
			- HTTPS://B.COM
			- "null"
			- https://[::1]:8443
			- https://*.example.com:8443
			- https://a*.example.com
			- http://192.0.2.1:8080
			- https://user@a.com
		max_age: 48h
`,
			want: []string{
				`bad.yaml:4: middlewares[0].allow_origins[0]: invalid origin "https://a.com/" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:5: middlewares[0].allow_origins[1]: invalid origin "a.com" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:6: middlewares[0].allow_origins[2]: invalid origin "https://*.a.*.com" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:7: middlewares[0].allow_origins[3]: invalid origin "https://x.com:0" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:9: middlewares[0].allow_origins[5]: invalid origin "null" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:12: middlewares[0].allow_origins[8]: invalid origin "https://a*.example.com" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:14: middlewares[0].allow_origins[10]: invalid origin "https://user@a.com" (want "*", scheme://host[:port] or a wildcard such as https://*.example.com)`,
				`bad.yaml:15: middlewares[0].max_age: must be at most 24h0m0s (got 48h0m0s)`,
			},
		},
		{
			name: "jwt fields",
			yaml: `
middlewares:
	- name: jwt
		algorithms: [none, HS256, RS257, EdDSA]
		secret: short
		jwks_url: "ftp://idp/keys"
		jwks_refresh: 500ms
		jwks_min_refetch: 0
		leeway: 10m
		audience: [""]
		issuer: "a\tb"
`,
			want: []string{
				`bad.yaml:3: middlewares[0].algorithms[0]: "none" is never allowed`,
				`bad.yaml:3: middlewares[0].algorithms[2]: unknown algorithm "RS257" (supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)`,
				`bad.yaml:4: middlewares[0].secret: must be at least 32 bytes (got 5)`,
				`bad.yaml:5: middlewares[0].jwks_url: unsupported scheme "ftp" in "ftp://idp/keys" (supported: http, https)`,
				`bad.yaml:6: middlewares[0].jwks_refresh: must be at least 1s (got 500ms)`,
				`bad.yaml:7: middlewares[0].jwks_min_refetch: must be at least 1s (got 0s)`,
				`bad.yaml:8: middlewares[0].leeway: must be at most 5m0s (got 10m0s)`,
				`bad.yaml:9: middlewares[0].audience[0]: must be a non-empty string without control characters`,
				`bad.yaml:10: middlewares[0].issuer: must not contain control characters`,
			},
		},
		{
			name: "jwt without a key",
			yaml: `
middlewares:
	- name: jwt
		issuer: https://idp
`,
			want: []string{`bad.yaml:2: middlewares[0]: one of secret, secret_file, public_key_file or jwks_url is required`},
		},
		{
			name: "jwt algorithm confusion",
			yaml: `
middlewares:
	- name: jwt
		algorithms: [HS256]
		jwks_url: "https://idp/keys"
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				algorithms: [RS256, HS384]
				public_key_file: /etc/rustygate/jwt.pem
				jwks_url: "https://idp/keys"
`,
			want: []string{
				`bad.yaml:3: middlewares[0].algorithms[0]: HS256 needs secret or secret_file (a public key is never used as an HMAC secret)`,
				`bad.yaml:4: middlewares[0].jwks_url: no RS, PS, ES or EdDSA algorithm in algorithms uses it`,
				// The route's own algorithms are checked against its keys.
				`bad.yaml:10: routes[0].middlewares[0].algorithms[1]: HS384 needs secret or secret_file (a public key is never used as an HMAC secret)`,
			},
		},
		{
			name: "jwt algorithm confusion on a route",
			yaml: `
middlewares:
	- name: jwt
		secret: ` + secret32 + `
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				algorithms: [RS256, HS384]
	- path: /b
		backend: http://b
		middlewares:
			- name: jwt
				algorithms: [HS256, ES256]
				public_key_file: /etc/rustygate/jwt.pem
`,
			want: []string{`bad.yaml:9: routes[0].middlewares[0].algorithms[0]: RS256 needs public_key_file or jwks_url`},
		},
		{
			name: "jwt secrets",
			yaml: `
middlewares:
	- name: jwt
		secret: ` + secret32 + `
		secret_file: /run/secret
		public_key_file: /k.pem
		algorithms: [RS256]
`,
			want: []string{
				`bad.yaml:3: middlewares[0].secret: no HS256, HS384 or HS512 in algorithms uses it`,
				`bad.yaml:4: middlewares[0].secret_file: set only one of secret and secret_file`,
			},
		},
		{
			name: "wasm",
			yaml: `
middlewares:
	- name: wasm
		fail_open: true
	- name: wasm
		path: "/a\u0001.wasm"
`,
			want: []string{
				`bad.yaml:2: middlewares[0].path: is required`,
				`bad.yaml:5: middlewares[1].path: must not contain control characters`,
			},
		},
		{
			name: "route entries over global ones",
			yaml: `
middlewares:
	- name: jwt
		enabled: false
	- name: rate_limit
		limit: 10
		window: 30s
	- name: cors
		allow_origins: ["https://a.com"]
		allow_credentials: true
	- name: wasm
		path: g.wasm
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				enabled: true
			- name: rate_limit
				window: 0
				limit: 0
			- name: cors
				allow_origins: ["*"]
			- name: cors
			- name: wasm
			- name: wasm
				path: x.wasm
			- name: wasm
				path: x.wasm
				fail_open: true
			- name: wasm
				path: g.wasm
				enabled: false
	- path: /b
		backend: http://b
		middlewares:
			- name: rate_limit
				allow_credentials: false
			- name: cors
				allow_credentials: false
`,
			want: []string{
				`bad.yaml:16: routes[0].middlewares[0]: one of secret, secret_file, public_key_file or jwks_url is required`,
				`bad.yaml:19: routes[0].middlewares[1].window: must be greater than 0 (got 0s)`,
				`bad.yaml:20: routes[0].middlewares[1].limit: must be between 1 and 1000000000 (got 0)`,
				`bad.yaml:21: routes[0].middlewares[2].allow_credentials: cannot be true when allow_origins is "*" (list the origins instead)`,
				`bad.yaml:23: routes[0].middlewares[3].name: duplicate middleware "cors" (also middlewares[2])`,
				`bad.yaml:24: routes[0].middlewares[4].path: is required`,
				`bad.yaml:28: routes[0].middlewares[6].path: duplicate wasm entry with path "x.wasm" (also middlewares[5])`,
				`bad.yaml:37: unknown key "allow_credentials" at routes[1].middlewares[0] (known: name, enabled, limit, window, burst, key, trusted_proxies, max_keys, scope, on_error)`,
			},
		},
		{
			name: "route-only entries are complete",
			yaml: `
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				enabled: true
			- name: rate_limit
				key: ip
			- name: cors
`,
			want: []string{
				`bad.yaml:5: routes[0].middlewares[0]: one of secret, secret_file, public_key_file or jwks_url is required`,
				`bad.yaml:7: routes[0].middlewares[1].limit: is required`,
				`bad.yaml:9: routes[0].middlewares[2].allow_origins: is required`,
			},
		},
		{
			name: "global problems are not repeated on routes",
			yaml: `
middlewares:
	- name: jwt
		algorithms: [HS256]
		public_key_file: /k.pem
	- name: cors
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				leeway: 5s
			- name: cors
				max_age: 60
	- path: /b
		backend: http://b
		middlewares:
			- name: cors
				allow_origins: ["https://b.com"]
`,
			want: []string{
				`bad.yaml:3: middlewares[0].algorithms[0]: HS256 needs secret or secret_file (a public key is never used as an HMAC secret)`,
				`bad.yaml:4: middlewares[0].public_key_file: no RS, PS, ES or EdDSA algorithm in algorithms uses it`,
				`bad.yaml:5: middlewares[1].allow_origins: is required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("bad.yaml", src(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			var errs *config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *config.Errors: %v", err, err)
			}
			want := strings.ReplaceAll(strings.Join(tt.want, "\n"), "SUPPORTED", strings.Join(config.MiddlewareKindNames(), ", "))
			if got := err.Error(); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", indent(got), indent(want))
			}
		})
	}
}

func TestMiddlewareSecretNeverPrinted(t *testing.T) {
	t.Setenv("RG_TEST_JWT_SECRET", "tiny-secret")
	_, err := config.Parse("bad.yaml", src(`
middlewares:
	- name: jwt
		secret: ${RG_TEST_JWT_SECRET}
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				secret: ""
`))
	if err == nil || strings.Contains(err.Error(), "tiny-secret") {
		t.Errorf("error %v, want one that does not show the secret", err)
	}
}

// TestMiddlewareSettingsInCode checks a configuration built in code:
// ApplyDefaults gives entries without settings their kind's defaults
// (a route entry overriding a global one: the global settings) and puts
// values in canonical form; Validate reports at key paths without lines.
func TestMiddlewareSettingsInCode(t *testing.T) {
	c := &config.Config{
		Middlewares: []config.Middleware{
			{Name: "jwt", Settings: &jwt.Settings{
				Secret: secret32,
				ClaimsToHeaders: map[string]string{
					"sub":   "X-User",
					"":      "X-Empty",
					"len":   "Content-Length",
					"roles": "X Roles",
				},
			}},
			{Name: "cors", Settings: &cors.Settings{AllowOrigins: []string{"HTTPS://A.COM"}, AllowMethods: []string{"get"}}},
			{Name: "rate_limit"},
		},
		Routes: []config.Route{{Path: "/", Backend: "http://a", Middlewares: []config.Middleware{{Name: "cors", Enabled: ptr(false)}}}},
	}
	c.ApplyDefaults()
	cs := c.Middlewares[1].Settings.(*cors.Settings)
	if !slices.Equal(cs.AllowOrigins, []string{"https://a.com"}) || !slices.Equal(cs.AllowMethods, []string{"GET"}) {
		t.Errorf("cors settings not canonical: %+v", cs)
	}
	if c.Routes[0].Middlewares[0].Settings != c.Middlewares[1].Settings {
		t.Error("a route entry without settings does not inherit the global entry's")
	}
	rl := c.Middlewares[2].Settings.(*ratelimit.Settings)
	if rl.Window.D() != time.Minute || rl.Key != "ip" || rl.MaxKeys != 1000000 {
		t.Errorf("rate_limit defaults: %+v", rl)
	}
	err := c.Validate()
	want := []string{
		`<config>: middlewares[0].claims_to_headers: invalid claim name ""`,
		`<config>: middlewares[0].claims_to_headers.len: a claim cannot set the Content-Length header`,
		`<config>: middlewares[0].claims_to_headers.roles: invalid header name "X Roles"`,
		`<config>: middlewares[2].limit: is required`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n got: %v\nwant: %s", err, strings.Join(want, "\n"))
	}
}

func TestMiddlewareDefaults(t *testing.T) {
	withPluginFiles(t)
	t.Setenv("RG_TEST_JWT_SECRET", secret32)
	_, err := config.Parse("good.yaml", src(`
middlewares:
	- name: jwt
		secret: ${RG_TEST_JWT_SECRET}
	- name: jwt
		enabled: false
`))
	if err == nil || !strings.Contains(err.Error(), `middlewares[1].name: duplicate middleware "jwt" (also middlewares[0])`) {
		t.Fatalf("duplicate jwt entries: %v", err)
	}
	c, err := config.Parse("good.yaml", src(`
middlewares:
	- name: rate_limit
		limit: 100
	- name: cors
		allow_origins: ["HTTPS://App.Example.com", "https://*.example.org"]
		allow_methods: [get, put]
	- name: jwt
		secret: ${RG_TEST_JWT_SECRET}
		leeway: 0
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: rate_limit
				limit: 5
			- name: cors
				max_age: 60
			- name: wasm
				path: p.wasm
	- path: /b
		backend: http://b
		middlewares:
			- name: rate_limit
				limit: 1
				window: 1s
				burst: 3
				key: header:X-Api-Key
				trusted_proxies: [10.0.0.0/8]
				max_keys: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	wantGlobal := []any{
		&ratelimit.Settings{Limit: 100, Burst: 100, Window: config.Duration(time.Minute), Key: "ip", MaxKeys: 1000000},
		&cors.Settings{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}, AllowMethods: []string{"GET", "PUT"}},
		&jwt.Settings{Secret: secret32, Algorithms: []string{"HS256"}, JWKSRefresh: config.Duration(time.Hour), JWKSMinRefetch: config.Duration(5 * time.Minute), ForwardAuthorization: ptr(true), RequireExp: ptr(true), CacheSize: 10000, CacheTTL: config.Duration(5 * time.Minute)},
	}
	checkSettings(t, "global", c.Middlewares, wantGlobal)
	// A route entry holds its effective settings: the global entry's
	// with its own keys on top; a route-only entry, the defaults.
	checkSettings(t, "route /a", c.Routes[0].Middlewares, []any{
		&ratelimit.Settings{Limit: 5, Burst: 5, Window: config.Duration(time.Minute), Key: "ip", MaxKeys: 1000000},
		&cors.Settings{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}, AllowMethods: []string{"GET", "PUT"}, MaxAge: config.Duration(time.Minute)},
		&wasm.Settings{Path: "p.wasm"},
	})
	checkSettings(t, "route /b", c.Routes[1].Middlewares, []any{
		&ratelimit.Settings{Limit: 1, Window: config.Duration(time.Second), Burst: 3, Key: "header:X-Api-Key", TrustedProxies: []string{"10.0.0.0/8"}, MaxKeys: 10},
	})
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
}

// checkSettings compares the settings of entries with want.
func checkSettings(t *testing.T, what string, entries []config.Middleware, want []any) {
	t.Helper()
	var got []any
	for _, m := range entries {
		got = append(got, m.Settings)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s settings:\n got %s\nwant %s", what, fmt.Sprint(deref(got)...), fmt.Sprint(deref(want)...))
	}
}

func deref(list []any) []any {
	out := make([]any, len(list))
	for i, v := range list {
		out[i] = fmt.Sprintf("%+v ", reflect.ValueOf(v).Elem().Interface())
	}
	return out
}

// describeEntry summarises an effective entry for TestRouteMiddlewares.
func describeEntry(m config.Middleware) string {
	switch s := m.Settings.(type) {
	case *ratelimit.Settings:
		return fmt.Sprintf("%s %d/%s burst %d key %s", m.Name, s.Limit, s.Window, s.Burst, s.Key)
	case *cors.Settings:
		return fmt.Sprintf("%s %v credentials=%v max_age=%s", m.Name, s.AllowOrigins, s.AllowCredentials, s.MaxAge)
	case *jwt.Settings:
		d := fmt.Sprintf("%s %v iss=%s leeway=%s forward=%v", m.Name, s.Algorithms, s.Issuer, s.Leeway, *s.ForwardAuthorization)
		if s.RequireExp != nil && !*s.RequireExp {
			d += " require_exp=false"
		}
		return d
	case *wasm.Settings:
		return fmt.Sprintf("%s %s fail_open=%v", m.Name, s.Path, s.FailOpen)
	}
	return m.Name
}

func TestRouteMiddlewares(t *testing.T) {
	withPluginFiles(t)
	c, err := config.Parse("good.yaml", src(`
middlewares:
	- name: jwt
		secret: `+secret32+`
		issuer: https://idp
	- name: wasm
		path: g1.wasm
	- name: rate_limit
		limit: 100
	- name: cors
		allow_origins: ["https://a.com"]
		allow_credentials: true
	- name: wasm
		path: g2.wasm
routes:
	- path: /plain
		backend: http://a
	- path: /override
		backend: http://a
		middlewares:
			- name: wasm
				path: r1.wasm
			- name: rate_limit
				limit: 5
				window: 1s
			- name: cors
				allow_origins: ["https://b.com", "https://c.com"]
				max_age: 10m
			- name: wasm
				path: g1.wasm
				enabled: false
			- name: wasm
				path: g2.wasm
				fail_open: true
			- name: jwt
				leeway: 5s
				forward_authorization: false
				require_exp: false
	- path: /off
		backend: http://a
		middlewares:
			- name: jwt
				enabled: false
			- name: cors
				enabled: false
			- name: rate_limit
				enabled: false
	- path: /claims
		backend: http://a
		middlewares:
			- name: rate_limit
				key: jwt:sub
				burst: 7
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		route int
		want  []string
	}{
		{0, []string{
			"cors [https://a.com] credentials=true max_age=0s",
			"rate_limit 100/1m0s burst 100 key ip",
			"jwt [HS256] iss=https://idp leeway=30s forward=true",
			"wasm g1.wasm fail_open=false",
			"wasm g2.wasm fail_open=false",
		}},
		{1, []string{
			"cors [https://b.com https://c.com] credentials=true max_age=10m0s",
			"rate_limit 5/1s burst 5 key ip",
			"jwt [HS256] iss=https://idp leeway=5s forward=false require_exp=false",
			"wasm g2.wasm fail_open=true",
			"wasm r1.wasm fail_open=false",
		}},
		{2, []string{
			"wasm g1.wasm fail_open=false",
			"wasm g2.wasm fail_open=false",
		}},
		// A limit keyed on a claim runs after jwt.
		{3, []string{
			"cors [https://a.com] credentials=true max_age=0s",
			"jwt [HS256] iss=https://idp leeway=30s forward=true",
			"rate_limit 100/1m0s burst 7 key jwt:sub",
			"wasm g1.wasm fail_open=false",
			"wasm g2.wasm fail_open=false",
		}},
	}
	for _, tt := range tests {
		var got []string
		for _, m := range c.RouteMiddlewares(tt.route) {
			got = append(got, describeEntry(m))
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("route %d:\n got %s\nwant %s", tt.route, indent(strings.Join(got, "\n")), indent(strings.Join(tt.want, "\n")))
		}
	}
}

func TestRouteMiddlewaresInCode(t *testing.T) {
	on, off := ptr(true), ptr(false)
	tests := []struct {
		name   string
		global []config.Middleware
		route  []config.Middleware
		want   []string
	}{
		{
			name:   "global jwt off, turned on by a route",
			global: []config.Middleware{{Name: "jwt", Enabled: off, Settings: &jwt.Settings{JWKSURL: "https://idp/keys", Leeway: config.Duration(time.Second), ForwardAuthorization: on}}},
			route:  []config.Middleware{{Name: "jwt", Enabled: on}},
			want:   []string{"jwt [RS256 ES256] iss= leeway=1s forward=true"},
		},
		{
			name:   "route settings replace the global ones",
			global: []config.Middleware{{Name: "jwt", Settings: &jwt.Settings{Secret: secret32, Leeway: config.Duration(time.Second), ForwardAuthorization: on}}},
			route:  []config.Middleware{{Name: "jwt", Settings: &jwt.Settings{Secret: secret32, Algorithms: []string{"HS512"}, ForwardAuthorization: off}}},
			want:   []string{"jwt [HS512] iss= leeway=0s forward=false"},
		},
		{
			name:   "claim-keyed limit runs after jwt",
			global: []config.Middleware{{Name: "wasm", Settings: &wasm.Settings{Path: "a.wasm"}}, {Name: "rate_limit", Settings: &ratelimit.Settings{Limit: 3, Key: "jwt:sub"}}},
			route:  []config.Middleware{{Name: "jwt", Settings: &jwt.Settings{Secret: secret32, ForwardAuthorization: on}}},
			want:   []string{"jwt [HS256] iss= leeway=0s forward=true", "rate_limit 3/0s burst 3 key jwt:sub", "wasm a.wasm fail_open=false"},
		},
		{
			name:  "route only",
			route: []config.Middleware{{Name: "wasm", Settings: &wasm.Settings{Path: "b.wasm"}}, {Name: "wasm", Settings: &wasm.Settings{Path: "a.wasm"}, Enabled: off}, {Name: "cors", Settings: &cors.Settings{AllowOrigins: []string{"*"}}}},
			want:  []string{"cors [*] credentials=false max_age=0s", "wasm b.wasm fail_open=false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &config.Config{Middlewares: tt.global, Routes: []config.Route{{Middlewares: tt.route}}}
			c.ApplyDefaults()
			var got []string
			for _, m := range c.RouteMiddlewares(0) {
				got = append(got, describeEntry(m))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %s\nwant %s", indent(strings.Join(got, "\n")), indent(strings.Join(tt.want, "\n")))
			}
		})
	}
}

// withPluginFiles runs the test in a directory holding the plugin files
// its configurations name (Parse checks that they exist).
func withPluginFiles(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, name := range []string{"p.wasm", "a.wasm", "b.wasm", "g.wasm", "x.wasm", "g1.wasm", "g2.wasm", "r1.wasm"} {
		if err := os.WriteFile(name, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPluginFiles: a wasm entry in use whose file is missing or is not a
// regular file is refused at its path key, with the file's line; a
// disabled entry's file is not looked at; LoadChecked reports what its
// check says about a file the same way.
func TestPluginFiles(t *testing.T) {
	withPluginFiles(t)
	if err := os.Mkdir("dir.wasm", 0o755); err != nil {
		t.Fatal(err)
	}
	text := `routes:
  - path: /a
    backend: "http://127.0.0.1:9"
    middlewares:
      - name: wasm
        path: missing.wasm
      - { name: wasm, path: dir.wasm }
      - { name: wasm, path: off.wasm, enabled: false }
      - { name: wasm, path: p.wasm }
`
	_, err := config.Parse("bad.yaml", []byte(text))
	want := []string{
		"bad.yaml:6: routes[0].middlewares[0].path: missing.wasm: no such file or directory",
		"bad.yaml:7: routes[0].middlewares[1].path: dir.wasm: not a regular file",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}

	good := strings.Replace(strings.Replace(text, "missing.wasm", "a.wasm", 1), "dir.wasm", "b.wasm", 1)
	if err := os.WriteFile("good.yaml", []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	var checked []string
	_, err = config.LoadChecked("good.yaml", func(path string, _ map[string]any) error {
		checked = append(checked, path)
		if path == "b.wasm" {
			return errors.New("corrupt")
		}
		return nil
	})
	if err == nil || err.Error() != "good.yaml:7: routes[0].middlewares[1].path: b.wasm: corrupt" {
		t.Fatalf("LoadChecked: %v", err)
	}
	if !slices.Equal(checked, []string{"a.wasm", "b.wasm", "p.wasm"}) {
		t.Errorf("checked %q, want the three enabled plugins", checked)
	}
}
