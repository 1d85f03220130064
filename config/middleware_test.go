package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

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
			name: "fields of another kind",
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
				`bad.yaml:4: middlewares[0].allow_origins: not a field of rate_limit`,
				`bad.yaml:5: middlewares[0].algorithms: not a field of rate_limit`,
				`bad.yaml:8: middlewares[1].key: not a field of wasm`,
				`bad.yaml:9: middlewares[1].allow_credentials: not a field of wasm`,
				`bad.yaml:10: middlewares[1].require_exp: not a field of wasm`,
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
				`bad.yaml:3: middlewares[1].name: unknown middleware "ratelimit" (supported: cors, rate_limit, jwt, wasm)`,
				`bad.yaml:6: middlewares[3].name: duplicate middleware "cors" (also middlewares[2])`,
				`bad.yaml:13: middlewares[6].path: duplicate wasm plugin "a.wasm" (also middlewares[4])`,
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
				`bad.yaml:19: routes[0].middlewares[1].window: 0s does not override middlewares[1].window (30s): a zero value in a route entry inherits the global one`,
				`bad.yaml:20: routes[0].middlewares[1].limit: 0 does not override middlewares[1].limit (10): a zero value in a route entry inherits the global one`,
				`bad.yaml:21: routes[0].middlewares[2].allow_credentials: cannot be true when allow_origins is "*" (list the origins instead)`,
				`bad.yaml:23: routes[0].middlewares[3].name: duplicate middleware "cors" (also middlewares[2])`,
				`bad.yaml:24: routes[0].middlewares[4].path: is required`,
				`bad.yaml:28: routes[0].middlewares[6].path: duplicate wasm plugin "x.wasm" (also middlewares[5])`,
				`bad.yaml:37: routes[1].middlewares[0].allow_credentials: not a field of rate_limit`,
				`bad.yaml:39: routes[1].middlewares[1].allow_credentials: false does not override middlewares[2].allow_credentials (true): a zero value in a route entry inherits the global one`,
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

func TestMiddlewareSecretNeverPrinted(t *testing.T) {
	t.Setenv("RG_TEST_JWT_SECRET", "tiny-secret")
	_, err := Parse("bad.yaml", src(`
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

// TestMiddlewareValidateInCode checks a configuration built in code,
// including the fields YAML cannot set yet (maps) and the canonical
// forms Validate expects.
func TestMiddlewareValidateInCode(t *testing.T) {
	c := &Config{Middlewares: []Middleware{
		{
			Name:   "jwt",
			Secret: secret32,
			Config: map[string]any{"x": 1},
			ClaimsToHeaders: map[string]string{
				"sub":   "X-User",
				"":      "X-Empty",
				"len":   "Content-Length",
				"roles": "X Roles",
			},
		},
		{Name: "cors", AllowOrigins: []string{"HTTPS://A.COM"}, AllowMethods: []string{"get"}},
		{Name: "wasm", Path: "a.wasm", Config: map[string]any{"x": 1}},
	}}
	c.ApplyDefaults()
	c.Middlewares[1].AllowOrigins[0] = "HTTPS://A.COM"
	c.Middlewares[1].AllowMethods[0] = "get"
	err := c.Validate()
	want := []string{
		`<config>: middlewares[0].config: not a field of jwt`,
		`<config>: middlewares[0].claims_to_headers: invalid claim name ""`,
		`<config>: middlewares[0].claims_to_headers.len: a claim cannot set the Content-Length header`,
		`<config>: middlewares[0].claims_to_headers.roles: invalid header name "X Roles"`,
		`<config>: middlewares[1].allow_origins[0]: not normalised: want "https://a.com"`,
		`<config>: middlewares[1].allow_methods[0]: not normalised: want "GET"`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n got: %v\nwant: %s", err, strings.Join(want, "\n"))
	}
}

func TestMiddlewareDefaults(t *testing.T) {
	withPluginFiles(t)
	t.Setenv("RG_TEST_JWT_SECRET", secret32)
	c, err := Parse("good.yaml", src(`
middlewares:
	- name: rate_limit
		limit: 100
	- name: cors
		allow_origins: ["HTTPS://App.Example.com", "https://*.example.org"]
		allow_methods: [get, put]
	- name: jwt
		secret: ${RG_TEST_JWT_SECRET}
		leeway: 0
	- name: jwt
		enabled: false
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
			- name: jwt
				enabled: true
`))
	if err == nil {
		t.Fatal("duplicate jwt entries accepted")
	}
	c, err = Parse("good.yaml", src(`
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
	wantGlobal := []Middleware{
		{Name: "rate_limit", Limit: 100, Window: Duration(time.Minute), Key: "ip", MaxKeys: 1000000},
		{Name: "cors", AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}, AllowMethods: []string{"GET", "PUT"}},
		{Name: "jwt", Secret: secret32, JWKSRefresh: Duration(time.Hour), JWKSMinRefetch: Duration(5 * time.Minute), ForwardAuthorization: ptr(true), RequireExp: ptr(true)},
	}
	if !reflect.DeepEqual(c.Middlewares, wantGlobal) {
		t.Errorf("global entries:\n got %+v\nwant %+v", c.Middlewares, wantGlobal)
	}
	// Entries that override a global one keep their zero fields; a
	// route-only entry gets the defaults.
	wantRoute := []Middleware{
		{Name: "rate_limit", Limit: 5},
		{Name: "cors", MaxAge: Duration(time.Minute)},
		{Name: "wasm", Path: "p.wasm"},
	}
	if !reflect.DeepEqual(c.Routes[0].Middlewares, wantRoute) {
		t.Errorf("route entries:\n got %+v\nwant %+v", c.Routes[0].Middlewares, wantRoute)
	}
	wantB := []Middleware{{Name: "rate_limit", Limit: 1, Window: Duration(time.Second), Burst: 3, Key: "header:X-Api-Key", TrustedProxies: []string{"10.0.0.0/8"}, MaxKeys: 10}}
	if !reflect.DeepEqual(c.Routes[1].Middlewares, wantB) {
		t.Errorf("route entries:\n got %+v\nwant %+v", c.Routes[1].Middlewares, wantB)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}

	// In code, every zero is unset: ApplyDefaults fills the same
	// defaults, once.
	c = &Config{
		Middlewares: []Middleware{{Name: "jwt", Secret: secret32}, {Name: "cors", AllowOrigins: []string{"*"}}},
		Routes:      []Route{{Path: "/", Backend: "http://a", Middlewares: []Middleware{{Name: "jwt", Issuer: "x"}, {Name: "rate_limit", Limit: 1}}}},
	}
	c.ApplyDefaults()
	wantCode := []Middleware{
		{Name: "jwt", Secret: secret32, Leeway: Duration(30 * time.Second), JWKSRefresh: Duration(time.Hour), JWKSMinRefetch: Duration(5 * time.Minute), ForwardAuthorization: ptr(true), RequireExp: ptr(true)},
		{Name: "cors", AllowOrigins: []string{"*"}, AllowMethods: []string{"GET", "HEAD", "POST"}},
	}
	wantCodeRoute := []Middleware{{Name: "jwt", Issuer: "x"}, {Name: "rate_limit", Limit: 1, Window: Duration(time.Minute), Key: "ip", MaxKeys: 1000000}}
	for range 2 {
		if !reflect.DeepEqual(c.Middlewares, wantCode) || !reflect.DeepEqual(c.Routes[0].Middlewares, wantCodeRoute) {
			t.Errorf("ApplyDefaults:\n got %+v %+v\nwant %+v %+v", c.Middlewares, c.Routes[0].Middlewares, wantCode, wantCodeRoute)
		}
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
		c.ApplyDefaults()
	}

	// A route-only jwt entry with a public key gets RS256 and ES256.
	c, err = Parse("good.yaml", src(`
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: jwt
				public_key_file: /k.pem
			- name: cors
				allow_origins: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := c.RouteMiddlewares(0)
	want := []Middleware{
		{Name: "cors", AllowOrigins: []string{"*"}, AllowMethods: []string{"GET", "HEAD", "POST"}},
		{Name: "jwt", PublicKeyFile: "/k.pem", Algorithms: []string{"RS256", "ES256"}, Leeway: Duration(30 * time.Second), JWKSRefresh: Duration(time.Hour), JWKSMinRefetch: Duration(5 * time.Minute), ForwardAuthorization: ptr(true), RequireExp: ptr(true)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RouteMiddlewares:\n got %+v\nwant %+v", got, want)
	}
}

// describeEntry summarises an effective entry for TestRouteMiddlewares.
func describeEntry(m Middleware) string {
	switch m.Name {
	case MiddlewareRateLimit:
		return fmt.Sprintf("rate_limit %d/%s burst %d key %s", m.Limit, m.Window, m.Burst, m.Key)
	case MiddlewareCORS:
		return fmt.Sprintf("cors %v credentials=%v max_age=%s", m.AllowOrigins, m.AllowCredentials, m.MaxAge)
	case MiddlewareJWT:
		s := fmt.Sprintf("jwt %v iss=%s leeway=%s forward=%v", m.Algorithms, m.Issuer, m.Leeway, *m.ForwardAuthorization)
		if m.RequireExp != nil && !*m.RequireExp {
			s += " require_exp=false"
		}
		return s
	case MiddlewareWASM:
		return fmt.Sprintf("wasm %s fail_open=%v", m.Path, m.FailOpen)
	}
	return m.Name
}

func TestRouteMiddlewares(t *testing.T) {
	withPluginFiles(t)
	c, err := Parse("good.yaml", src(`
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
	// The configuration itself is unchanged.
	if c.Middlewares[2].Burst != 0 || c.Routes[1].Middlewares[1].Burst != 0 || len(c.Middlewares[0].Algorithms) != 0 {
		t.Error("RouteMiddlewares changed the configuration")
	}
}

func TestRouteMiddlewaresInCode(t *testing.T) {
	on, off := ptr(true), ptr(false)
	tests := []struct {
		name   string
		global []Middleware
		route  []Middleware
		want   []string
	}{
		{
			name:   "global jwt off, turned on by a route",
			global: []Middleware{{Name: "jwt", Enabled: off, JWKSURL: "https://idp/keys", Leeway: Duration(time.Second), ForwardAuthorization: on}},
			route:  []Middleware{{Name: "jwt", Enabled: on}},
			want:   []string{"jwt [RS256 ES256] iss= leeway=1s forward=true"},
		},
		{
			name:   "an explicit zero on a route does not override",
			global: []Middleware{{Name: "jwt", Secret: secret32, Leeway: Duration(time.Second), ForwardAuthorization: on}},
			route:  []Middleware{{Name: "jwt", Leeway: 0, Algorithms: []string{"HS512"}}},
			want:   []string{"jwt [HS512] iss= leeway=1s forward=true"},
		},
		{
			name:   "a route adds keys to a secret: both kinds of algorithms",
			global: []Middleware{{Name: "jwt", Secret: secret32, ForwardAuthorization: on}},
			route:  []Middleware{{Name: "jwt", JWKSURL: "https://idp/keys"}},
			want:   []string{"jwt [HS256 RS256 ES256] iss= leeway=0s forward=true"},
		},
		{
			name:   "lists replace, an empty list too",
			global: []Middleware{{Name: "cors", AllowOrigins: []string{"https://a.com"}, AllowCredentials: true}},
			route:  []Middleware{{Name: "cors", AllowOrigins: []string{}}},
			want:   []string{"cors [] credentials=true max_age=0s"},
		},
		{
			name:   "claim-keyed limit without jwt keeps its place",
			global: []Middleware{{Name: "wasm", Path: "a.wasm"}, {Name: "rate_limit", Limit: 3, Key: "jwt:sub"}},
			want:   []string{"rate_limit 3/0s burst 3 key jwt:sub", "wasm a.wasm fail_open=false"},
		},
		{
			name:  "route only",
			route: []Middleware{{Name: "wasm", Path: "b.wasm"}, {Name: "wasm", Path: "a.wasm", Enabled: off}, {Name: "cors", AllowOrigins: []string{"*"}}},
			want:  []string{"cors [*] credentials=false max_age=0s", "wasm b.wasm fail_open=false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Middlewares: tt.global, Routes: []Route{{Middlewares: tt.route}}}
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
	_, err := Parse("bad.yaml", []byte(text))
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
	_, err = LoadChecked("good.yaml", func(path string, _ map[string]any) error {
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
