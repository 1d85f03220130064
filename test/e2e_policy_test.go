package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// The policy tests (cors, rate_limit, jwt) run the gateway with its admin
// listener on, so that the rejection counters can be read from /metrics.

const (
	// polIssuer and polAudience are what the jwt entries accept.
	polIssuer   = "https://issuer.test"
	polAudience = "api"
	// polSecret is the HS256 secret, given to the gateway as ${JWT_SECRET}.
	polSecret = "e2e-policy-secret-0123456789-abcdefghijklmnop"
	// polOrigin is the origin the cors entries allow; polOtherOrigin
	// differs from it by the port only.
	polOrigin      = "http://127.0.0.1:3000"
	polOtherOrigin = "http://127.0.0.1:3001"
)

// policyConfig returns a configuration for engine with the admin listener
// on, the given global middlewares (YAML list items indented by two
// spaces; "" for none) and routes.
func policyConfig(engine, middlewares, routes string) string {
	mw := ""
	if middlewares != "" {
		mw = "middlewares:\n" + middlewares
	}
	return fmt.Sprintf(`server:
  listen: %s
  %s
admin:
  listen: %s
log:
  format: json
  level: info
  access: true
%sroutes:
%s`, anyPort, engineYAML(engine), anyPort, mw, routes)
}

// startPolicyGateway starts a gateway on yaml and returns it with the
// address of its admin listener.
func startPolicyGateway(t *testing.T, engine, yaml string) (*gateway, string) {
	t.Helper()
	g := startGateway(t, engine, yaml)
	return g, adminAddr(t, g)
}

// polBackend records every request and answers 200 "ok <path>".
func polBackend(t *testing.T) (*recorder, string) {
	t.Helper()
	rec := &recorder{}
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok "+r.URL.Path)
	})
	return rec, be.URL
}

// polSample is one sample of the Prometheus text exposition.
type polSample struct {
	name   string
	labels map[string]string
	value  float64
}

// polScrape reads and parses the admin /metrics.
func polScrape(t *testing.T, c *http.Client, admin string) []polSample {
	t.Helper()
	resp, body := get(t, c, "http://"+admin+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /metrics: status %d", resp.StatusCode)
	}
	var out []polSample
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, ok := polParseSample(line)
		if !ok {
			t.Fatalf("admin /metrics: cannot parse line %q", line)
		}
		out = append(out, s)
	}
	return out
}

// polParseSample parses `name{k="v",...} value [timestamp]`.
func polParseSample(line string) (polSample, bool) {
	s := polSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, false
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return s, false
			}
			key := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(line); j++ {
				switch c := line[j]; {
				case c == '\\' && j+1 < len(line):
					j++
					switch line[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(line[j])
					}
				case c == '"':
					line, closed = line[j+1:], true
				default:
					val.WriteByte(c)
				}
				if closed {
					break
				}
			}
			if !closed {
				return s, false
			}
			s.labels[key] = val.String()
		}
	}
	f := strings.Fields(line)
	if len(f) < 1 {
		return s, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, false
	}
	s.value = v
	return s, true
}

// polMetric returns the sum of the samples of name whose labels
// include match (0 when there is none).
func polMetric(samples []polSample, name string, match map[string]string) float64 {
	var sum float64
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		sum += s.value
	}
	return sum
}

// polWaitMetric waits up to 3 s for the metric to reach want and fails the
// test with what /metrics shows for name otherwise.
func polWaitMetric(t *testing.T, c *http.Client, admin, name string, match map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		samples := polScrape(t, c, admin)
		got := polMetric(samples, name, match)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			var have []string
			for _, s := range samples {
				if s.name == name {
					have = append(have, fmt.Sprintf("%v=%g", s.labels, s.value))
				}
			}
			t.Errorf("%s%v = %g, want %g; series: %v", name, match, got, want, have)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// polClaims returns valid claims for sub, changed by the options.
func polClaims(sub string, mod ...func(gojwt.MapClaims)) gojwt.MapClaims {
	now := time.Now()
	c := gojwt.MapClaims{
		"sub": sub,
		"iss": polIssuer,
		"aud": []string{polAudience},
		"iat": now.Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
	}
	for _, m := range mod {
		m(c)
	}
	return c
}

func polSignHS(t *testing.T, key []byte, c gojwt.MapClaims) string {
	t.Helper()
	s, err := gojwt.NewWithClaims(gojwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func polSignRS(t *testing.T, key *rsa.PrivateKey, kid string, c gojwt.MapClaims) string {
	t.Helper()
	tok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func polSignNone(t *testing.T, c gojwt.MapClaims) string {
	t.Helper()
	s, err := gojwt.NewWithClaims(gojwt.SigningMethodNone, c).SignedString(gojwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func polRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// polPublicKeyPEM returns the PKIX PEM encoding of the key's public half.
func polPublicKeyPEM(t *testing.T, k *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// polJWKS returns a JWKS with the RS256 public key of k under kid.
func polJWKS(k *rsa.PrivateKey, kid string) []byte {
	b64 := base64.RawURLEncoding.EncodeToString
	doc := map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"kid": kid,
		"use": "sig",
		"alg": "RS256",
		"n":   b64(k.N.Bytes()),
		"e":   b64(big.NewInt(int64(k.E)).Bytes()),
	}}}
	b, _ := json.Marshal(doc)
	return b
}

// polRequest returns a request to url with an Authorization header (none
// when token is "").
func polRequest(t *testing.T, method, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// polReason decodes the "reason" of a policy's JSON rejection body.
func polReason(body []byte) string {
	var b struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal(body, &b)
	return b.Reason
}

// TestPolicyJWT: the jwt policy rejects missing and invalid tokens
// (tokens without exp or with crit among them) with 401 and an RFC 6750
// challenge, lets valid HS256, RS256 (key file) and RS256 (JWKS) tokens
// through with the sub claim as X-User, a token without exp only where
// require_exp is off, and counts every rejection by route and reason.
func TestPolicyJWT(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	fileKey, jwksKey := polRSAKey(t), polRSAKey(t)
	pubPEM := polPublicKeyPEM(t, fileKey)
	pubFile := filepath.Join(t.TempDir(), "jwt-public.pem")
	if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const kid = "jwks-key-1"
	jwksDoc := polJWKS(jwksKey, kid)

	forEachEngine(t, func(t *testing.T, engine string) {
		// Started before the gateway, so closed after it.
		jwksSrv := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(jwksDoc)
		})
		rec, be := polBackend(t)
		// The global entry holds the settings the routes share; each route
		// turns it on with its own key material. The rs route lists no
		// algorithms: a public key alone means RS256 and ES256.
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, fmt.Sprintf(`  - name: jwt
    enabled: false
    audience: [%s]
    issuer: %q
    claims_to_headers: { sub: X-User }
`, polAudience, polIssuer), fmt.Sprintf(`  - name: hs
    path: "/hs"
    backend: %[1]q
    middlewares: [ { name: jwt, enabled: true, secret: "${JWT_SECRET}" } ]
  - name: rs
    path: "/rs"
    backend: %[1]q
    middlewares: [ { name: jwt, enabled: true, public_key_file: %[2]q } ]
  - name: jwks
    path: "/jwks"
    backend: %[1]q
    middlewares: [ { name: jwt, enabled: true, jwks_url: %[3]q } ]
  - name: noexp
    path: "/noexp"
    backend: %[1]q
    middlewares: [ { name: jwt, enabled: true, secret: "${JWT_SECRET}", require_exp: false } ]
`, be, pubFile, jwksSrv.URL+"/.well-known/jwks.json")))
		c := newClient(t)

		type rejection struct {
			name, path, token, reason string
		}
		const challenge = `Bearer error="invalid_token"`
		cases := []rejection{
			{"no token", "/hs/x", "", "missing"},
			{"bad signature", "/hs/x", polSignHS(t, []byte("another-secret-of-enough-length-0123456789"), polClaims("alice")), "bad_signature"},
			{"expired", "/hs/x", polSignHS(t, []byte(polSecret), polClaims("alice", func(c gojwt.MapClaims) {
				c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				c["nbf"] = time.Now().Add(-2 * time.Hour).Unix()
				c["exp"] = time.Now().Add(-time.Hour).Unix()
			})), "expired"},
			{"wrong audience", "/hs/x", polSignHS(t, []byte(polSecret), polClaims("alice", func(c gojwt.MapClaims) { c["aud"] = []string{"other"} })), "bad_audience"},
			{"wrong issuer", "/hs/x", polSignHS(t, []byte(polSecret), polClaims("alice", func(c gojwt.MapClaims) { c["iss"] = "https://evil.test" })), "bad_issuer"},
			{"alg none", "/hs/x", polSignNone(t, polClaims("alice")), "bad_algorithm"},
			// The classic key confusion: an HS256 token whose HMAC key is the
			// RS256 public key file the route verifies with.
			{"RS to HS confusion", "/rs/x", polSignHS(t, pubPEM, polClaims("alice")), "bad_algorithm"},
			{"RS256 other key", "/rs/x", polSignRS(t, jwksKey, "", polClaims("alice")), "bad_signature"},
			{"JWKS unknown kid", "/jwks/x", polSignRS(t, fileKey, "no-such-kid", polClaims("alice")), "unknown_key"},
			{"no exp", "/hs/x", polSignHS(t, []byte(polSecret), polClaims("alice", func(c gojwt.MapClaims) { delete(c, "exp") })), "no_exp"},
			{"crit", "/hs/x", polSignHSHeader(t, []byte(polSecret), polClaims("alice"), map[string]any{"crit": []string{"b64"}, "b64": false}), "crit"},
			{"expired, exp not required", "/noexp/x", polSignHS(t, []byte(polSecret), polClaims("alice", func(c gojwt.MapClaims) {
				c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				c["exp"] = time.Now().Add(-time.Hour).Unix()
			})), "expired"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				n := rec.count()
				resp, body := do(t, c, polRequest(t, "GET", g.URL()+tc.path, tc.token))
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %q", resp.StatusCode, body)
				}
				wa := resp.Header.Get("WWW-Authenticate")
				if tc.reason == "missing" {
					if !strings.HasPrefix(wa, `Bearer realm=`) {
						t.Errorf("WWW-Authenticate %q, want Bearer realm=...", wa)
					}
				} else if !strings.HasPrefix(wa, challenge) {
					t.Errorf("WWW-Authenticate %q, want %s...", wa, challenge)
				}
				if got := polReason(body); got != tc.reason {
					t.Errorf("reason %q, want %q; body %q", got, tc.reason, body)
				}
				if rec.count() != n {
					t.Errorf("a rejected request reached the backend")
				}
			})
		}

		valid := []struct {
			name, path, sub, token string
		}{
			{"HS256", "/hs/ok", "alice", polSignHS(t, []byte(polSecret), polClaims("alice"))},
			{"RS256 key file", "/rs/ok", "bob", polSignRS(t, fileKey, "", polClaims("bob"))},
			{"RS256 JWKS", "/jwks/ok", "carol", polSignRS(t, jwksKey, kid, polClaims("carol"))},
			// No sub claim: no X-User at all, whatever the client sent.
			{"HS256 without sub", "/hs/nosub", "", polSignHS(t, []byte(polSecret), polClaims("", func(c gojwt.MapClaims) { delete(c, "sub") }))},
			{"HS256 without exp, exp not required", "/noexp/ok", "dave", polSignHS(t, []byte(polSecret), polClaims("dave", func(c gojwt.MapClaims) { delete(c, "exp") }))},
		}
		for _, tc := range valid {
			t.Run("valid "+tc.name, func(t *testing.T) {
				n := rec.count()
				req := polRequest(t, "GET", g.URL()+tc.path, tc.token)
				// A client cannot pass its own value off as the claim.
				req.Header.Add("X-User", "mallory")
				req.Header.Add("X-User", "eve")
				resp, body := do(t, c, req)
				if resp.StatusCode != http.StatusOK || string(body) != "ok "+tc.path {
					t.Fatalf("status %d, body %q; want 200 from the backend", resp.StatusCode, body)
				}
				if rec.count() != n+1 {
					t.Fatalf("backend requests %d, want %d", rec.count(), n+1)
				}
				var want []string
				if tc.sub != "" {
					want = []string{tc.sub}
				}
				if got := rec.last(t).Header.Values("X-User"); !slices.Equal(got, want) {
					t.Errorf("backend X-User %q, want %q", got, want)
				}
			})
		}

		t.Run("metrics", func(t *testing.T) {
			want := map[[2]string]float64{}
			for _, tc := range cases {
				route := strings.Split(tc.path, "/")[1]
				want[[2]string{route, tc.reason}]++
			}
			for k, v := range want {
				polWaitMetric(t, c, admin, "rustygate_jwt_rejected_total", map[string]string{"route": k[0], "reason": k[1]}, v)
			}
			total := polMetric(polScrape(t, c, admin), "rustygate_jwt_rejected_total", nil)
			if total != float64(len(cases)) {
				t.Errorf("rustygate_jwt_rejected_total sums to %g, want %d", total, len(cases))
			}
		})
	})
}

// TestPolicyRateLimit: 100 requests per 60 s from one address, then 429
// with Retry-After, while another address is unaffected.
func TestPolicyRateLimit(t *testing.T) {
	const limit = 100
	forEachEngine(t, func(t *testing.T, engine string) {
		rec, be := polBackend(t)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, fmt.Sprintf(`  - { name: rate_limit, limit: %d, window: 60 }
`, limit), fmt.Sprintf(`  - name: rl
    path: "/rl"
    backend: %q
`, be)))
		c := newClient(t)

		// GCRA refills one request every window/limit = 600 ms: requests
		// sent over a longer time than that may get refills.
		const interval = 600 * time.Millisecond
		start := time.Now()
		for i := range limit {
			resp, body := get(t, c, g.URL()+"/rl/x")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d, body %q; want 200", i+1, resp.StatusCode, body)
			}
			if v := resp.Header.Get("RateLimit-Limit"); v != strconv.Itoa(limit) {
				t.Errorf("request %d: RateLimit-Limit %q, want %d", i+1, v, limit)
			}
			rem, err := strconv.Atoi(resp.Header.Get("RateLimit-Remaining"))
			refills := int(time.Since(start) / interval)
			if err != nil || rem > limit-1-i+refills || rem < 0 {
				t.Errorf("request %d: RateLimit-Remaining %q, want %d (+%d refilled)", i+1, resp.Header.Get("RateLimit-Remaining"), limit-1-i, refills)
			}
		}
		if rec.count() != limit {
			t.Errorf("backend got %d requests, want %d", rec.count(), limit)
		}

		var resp *http.Response
		var body []byte
		for extra := 0; ; extra++ {
			resp, body = get(t, c, g.URL()+"/rl/x")
			if resp.StatusCode != http.StatusOK {
				if rec.count() != limit+extra {
					t.Errorf("the backend got %d requests, want %d: the %d was forwarded", rec.count(), limit+extra, resp.StatusCode)
				}
				break
			}
			// Only a refill explains a 200 here.
			if allowed := int(time.Since(start) / interval); extra >= allowed {
				t.Fatalf("request %d allowed after %v; at most %d refills were due", limit+1+extra, time.Since(start), allowed)
			}
			t.Logf("request %d allowed after %v (a refill)", limit+1+extra, time.Since(start))
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429; body %q", resp.StatusCode, body)
		}
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || ra <= 0 || ra > 60 {
			t.Errorf("Retry-After %q, want an integer number of seconds in 1..60", resp.Header.Get("Retry-After"))
		}
		if v := resp.Header.Get("RateLimit-Remaining"); v != "0" {
			t.Errorf("429: RateLimit-Remaining %q, want 0", v)
		}
		if v := resp.Header.Get("RateLimit-Limit"); v != strconv.Itoa(limit) {
			t.Errorf("429: RateLimit-Limit %q, want %d", v, limit)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("429: Content-Type %q, want application/json", ct)
		}
		n := rec.count()

		// Another client address has a bucket of its own.
		other := &http.Transport{
			DialContext: (&net.Dialer{
				LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")},
				Timeout:   3 * time.Second,
			}).DialContext,
			ResponseHeaderTimeout: 10 * time.Second,
		}
		t.Cleanup(other.CloseIdleConnections)
		oc := &http.Client{Transport: other, Timeout: 15 * time.Second}
		const id = "rate-limit-other-ip"
		req, _ := http.NewRequest("GET", g.URL()+"/rl/y", nil)
		req.Header.Set("X-Request-Id", id)
		resp2, body2 := do(t, oc, req)
		if resp2.StatusCode != http.StatusOK {
			t.Fatalf("from 127.0.0.2: status %d, body %q; want 200", resp2.StatusCode, body2)
		}
		if v := resp2.Header.Get("RateLimit-Remaining"); v != strconv.Itoa(limit-1) {
			t.Errorf("from 127.0.0.2: RateLimit-Remaining %q, want %d", v, limit-1)
		}
		if rec.count() != n+1 {
			t.Errorf("the backend did not get the request from 127.0.0.2")
		}
		if l := g.accessLine(t, id); l["client_ip"] != "127.0.0.2" {
			t.Errorf("access line client_ip %v, want 127.0.0.2 (was the source address used?)", l["client_ip"])
		}

		polWaitMetric(t, c, admin, "rustygate_rate_limited_total", map[string]string{"route": "rl"}, 1)
	})
}

// polPreflight returns a CORS preflight request.
func polPreflight(t *testing.T, url, origin, method, headers string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	return req
}

// polHeaderTokens returns the comma-separated elements of every field name.
func polHeaderTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// polHasToken reports whether the list field name has tok (case-insensitive).
func polHasToken(h http.Header, name, tok string) bool {
	return slices.ContainsFunc(polHeaderTokens(h, name), func(e string) bool { return strings.EqualFold(e, tok) })
}

// polCORSMiddleware is the global cors entry of the CORS tests.
var polCORSMiddleware = fmt.Sprintf(`  - { name: cors, allow_origins: [%q], allow_methods: [GET, POST], allow_headers: [Content-Type, Authorization], expose_headers: [X-Request-Id] }
`, polOrigin)

// TestPolicyCORS: preflights are answered by the gateway, never
// forwarded; allowed origins get the Access-Control-* headers, others
// none and are counted.
func TestPolicyCORS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec, be := polBackend(t)
		// A backend that does CORS itself, allowing every origin.
		legacy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			io.WriteString(w, "legacy")
		})
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, polCORSMiddleware, fmt.Sprintf(`  - name: c
    path: "/c"
    backend: %[1]q
  - name: post-only
    path: "/p"
    methods: [POST]
    backend: %[1]q
  - name: legacy
    path: "/legacy"
    backend: %[2]q
`, be, legacy.URL)))
		c := newClient(t)
		rejected := 0

		t.Run("preflight allowed", func(t *testing.T) {
			n := rec.count()
			resp, body := do(t, c, polPreflight(t, g.URL()+"/c/data", polOrigin, "POST", "content-type, authorization"))
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d, want 204; body %q", resp.StatusCode, body)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(v, []string{polOrigin}) {
				t.Errorf("Access-Control-Allow-Origin %q, want [%q]", v, polOrigin)
			}
			for _, m := range []string{"GET", "POST"} {
				if !polHasToken(resp.Header, "Access-Control-Allow-Methods", m) {
					t.Errorf("Access-Control-Allow-Methods %q lacks %s", resp.Header.Values("Access-Control-Allow-Methods"), m)
				}
			}
			for _, h := range []string{"Content-Type", "Authorization"} {
				if !polHasToken(resp.Header, "Access-Control-Allow-Headers", h) {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", resp.Header.Values("Access-Control-Allow-Headers"), h)
				}
			}
			if !polHasToken(resp.Header, "Vary", "Origin") {
				t.Errorf("Vary %q lacks Origin", resp.Header.Values("Vary"))
			}
			if len(body) != 0 {
				t.Errorf("204 with a body %q", body)
			}
			if rec.count() != n {
				t.Errorf("the preflight was forwarded to the backend")
			}
		})
		t.Run("preflight other origin", func(t *testing.T) {
			n := rec.count()
			resp, body := do(t, c, polPreflight(t, g.URL()+"/c/data", polOtherOrigin, "POST", "content-type"))
			rejected++
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403; body %q", resp.StatusCode, body)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
				t.Errorf("Access-Control-Allow-Origin %q for an origin not allowed", v)
			}
			if rec.count() != n {
				t.Errorf("the preflight was forwarded to the backend")
			}
		})
		t.Run("preflight header not allowed", func(t *testing.T) {
			n := rec.count()
			resp, body := do(t, c, polPreflight(t, g.URL()+"/c/data", polOrigin, "POST", "content-type, x-not-allowed"))
			rejected++
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403; body %q", resp.StatusCode, body)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
				t.Errorf("Access-Control-Allow-Origin %q on a refused preflight", v)
			}
			if rec.count() != n {
				t.Errorf("the preflight was forwarded to the backend")
			}
		})
		t.Run("simple GET allowed origin", func(t *testing.T) {
			n := rec.count()
			req, _ := http.NewRequest("GET", g.URL()+"/c/data", nil)
			req.Header.Set("Origin", polOrigin)
			resp, body := do(t, c, req)
			if resp.StatusCode != http.StatusOK || string(body) != "ok /c/data" {
				t.Fatalf("status %d, body %q; want 200 from the backend", resp.StatusCode, body)
			}
			if rec.count() != n+1 {
				t.Errorf("the GET was not forwarded")
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(v, []string{polOrigin}) {
				t.Errorf("Access-Control-Allow-Origin %q, want [%q]", v, polOrigin)
			}
			if !polHasToken(resp.Header, "Access-Control-Expose-Headers", "X-Request-Id") {
				t.Errorf("Access-Control-Expose-Headers %q lacks X-Request-Id", resp.Header.Values("Access-Control-Expose-Headers"))
			}
			if !polHasToken(resp.Header, "Vary", "Origin") {
				t.Errorf("Vary %q lacks Origin", resp.Header.Values("Vary"))
			}
		})
		t.Run("simple GET other origin", func(t *testing.T) {
			n := rec.count()
			req, _ := http.NewRequest("GET", g.URL()+"/c/data", nil)
			req.Header.Set("Origin", polOtherOrigin)
			resp, body := do(t, c, req)
			rejected++
			// Forwarded (CORS is enforced by the browser), without the headers.
			if resp.StatusCode != http.StatusOK || string(body) != "ok /c/data" {
				t.Fatalf("status %d, body %q; want 200 from the backend", resp.StatusCode, body)
			}
			if rec.count() != n+1 {
				t.Errorf("the GET was not forwarded")
			}
			for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Access-Control-Allow-Credentials"} {
				if v := resp.Header.Values(h); len(v) != 0 {
					t.Errorf("%s %q for an origin not allowed", h, v)
				}
			}
			if !polHasToken(resp.Header, "Vary", "Origin") {
				t.Errorf("Vary %q lacks Origin", resp.Header.Values("Vary"))
			}
		})
		t.Run("no Origin", func(t *testing.T) {
			resp, _ := get(t, c, g.URL()+"/c/data")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
				t.Errorf("Access-Control-Allow-Origin %q without an Origin", v)
			}
		})
		t.Run("preflight on method-restricted route", func(t *testing.T) {
			n := rec.count()
			resp, body := do(t, c, polPreflight(t, g.URL()+"/p/data", polOrigin, "POST", "content-type"))
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d, want 204 (CORS answers the preflight, not 405); body %q", resp.StatusCode, body)
			}
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != polOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", v, polOrigin)
			}
			if rec.count() != n {
				t.Errorf("the preflight was forwarded to the backend")
			}
			// The restriction still holds for the methods themselves.
			req, _ := http.NewRequest("GET", g.URL()+"/p/data", nil)
			req.Header.Set("Origin", polOrigin)
			resp, body = do(t, c, req)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET on the POST-only route: status %d, want 405; body %q", resp.StatusCode, body)
			}
		})
		t.Run("backend sends its own Access-Control-Allow-Origin", func(t *testing.T) {
			// The route's policy decides which origins may read a response:
			// the allowed origin gets exactly one value (a browser refuses
			// several), another origin none (else the browser lets it read).
			for _, tc := range []struct {
				origin string
				want   []string
			}{
				{polOrigin, []string{polOrigin}},
				{polOtherOrigin, nil},
			} {
				req, _ := http.NewRequest("GET", g.URL()+"/legacy/data", nil)
				req.Header.Set("Origin", tc.origin)
				resp, body := do(t, c, req)
				if resp.StatusCode != http.StatusOK || string(body) != "legacy" {
					t.Fatalf("Origin %s: status %d, body %q", tc.origin, resp.StatusCode, body)
				}
				if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, tc.want) {
					t.Errorf("Origin %s: Access-Control-Allow-Origin %q, want %q", tc.origin, got, tc.want)
				}
			}
		})
		t.Run("metrics", func(t *testing.T) {
			polWaitMetric(t, c, admin, "rustygate_cors_rejected_total", map[string]string{"route": "c"}, float64(rejected))
		})
	})
}

// polStackMiddlewares is the task list's global policy stack: cors,
// rate_limit and a jwt entry that routes turn on.
var polStackMiddlewares = fmt.Sprintf(`  - { name: cors, allow_origins: [%q], allow_methods: [GET, POST], allow_headers: [Content-Type, Authorization], expose_headers: [X-Request-Id] }
  - { name: rate_limit, limit: 100, window: 60 }
  - { name: jwt, enabled: false, secret: "${JWT_SECRET}", audience: [%s], issuer: %q, claims_to_headers: { sub: X-User } }
`, polOrigin, polAudience, polIssuer)

// TestPolicyOrder: policies run cors, rate_limit, jwt: a preflight is
// answered before rate limiting and authentication, and a rejection by
// jwt carries the headers of the policies before it.
func TestPolicyOrder(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	rec, be := polBackend(t)
	g, admin := startPolicyGateway(t, "fast", policyConfig("fast", polStackMiddlewares, fmt.Sprintf(`  - name: api
    path: "/api"
    backend: %q
    middlewares: [ { name: jwt, enabled: true } ]
`, be)))
	c := newClient(t)

	// The preflight needs no token and takes nothing from the rate limit.
	resp, body := do(t, c, polPreflight(t, g.URL()+"/api/data", polOrigin, "GET", "authorization"))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight without a token: status %d, want 204; body %q", resp.StatusCode, body)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != polOrigin {
		t.Errorf("preflight: Access-Control-Allow-Origin %q, want %q", v, polOrigin)
	}
	if v := resp.Header.Values("RateLimit-Limit"); len(v) != 0 {
		t.Errorf("preflight: RateLimit-Limit %q: the rate limit ran before cors answered", v)
	}
	if v := resp.Header.Values("WWW-Authenticate"); len(v) != 0 {
		t.Errorf("preflight: WWW-Authenticate %q", v)
	}
	if rec.count() != 0 {
		t.Errorf("the preflight was forwarded")
	}

	// Without a token: 401 from jwt, with cors's and rate_limit's headers.
	first := time.Now()
	req := polRequest(t, "GET", g.URL()+"/api/data", "")
	req.Header.Set("Origin", polOrigin)
	resp, body = do(t, c, req)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401; body %q", resp.StatusCode, body)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != polOrigin {
		t.Errorf("401: Access-Control-Allow-Origin %q, want %q (cors runs first, so the page can read the 401)", v, polOrigin)
	}
	if v := resp.Header.Get("RateLimit-Remaining"); v != "99" {
		t.Errorf("401: RateLimit-Remaining %q, want 99 (rate_limit runs before jwt; the preflight took nothing)", v)
	}

	// With a token: through, rate-limited too (one request comes back
	// every 600 ms).
	req = polRequest(t, "GET", g.URL()+"/api/data", polSignHS(t, []byte(polSecret), polClaims("dave")))
	req.Header.Set("Origin", polOrigin)
	resp, body = do(t, c, req)
	if resp.StatusCode != http.StatusOK || string(body) != "ok /api/data" {
		t.Fatalf("valid token: status %d, body %q", resp.StatusCode, body)
	}
	if v := resp.Header.Get("RateLimit-Remaining"); v != "98" && (v != "99" || time.Since(first) < 600*time.Millisecond) {
		t.Errorf("200: RateLimit-Remaining %q, want 98", v)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != polOrigin {
		t.Errorf("200: Access-Control-Allow-Origin %q, want %q", v, polOrigin)
	}
	if got := rec.last(t).Header.Get("X-User"); got != "dave" {
		t.Errorf("backend X-User %q, want dave", got)
	}
	polWaitMetric(t, c, admin, "rustygate_jwt_rejected_total", map[string]string{"route": "api", "reason": "missing"}, 1)
}

// TestPolicyRouteOverride: a route entry overrides the global entry of
// the same name: `enabled: false` turns it off, a field replaces the
// global field, and other routes keep the global entry.
func TestPolicyRouteOverride(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	rec, be := polBackend(t)
	g, admin := startPolicyGateway(t, "fast", policyConfig("fast", fmt.Sprintf(`  - { name: jwt, secret: "${JWT_SECRET}", audience: [%s], issuer: %q, claims_to_headers: { sub: X-User } }
`, polAudience, polIssuer), fmt.Sprintf(`  - name: open
    path: "/open"
    backend: %[1]q
    middlewares: [ { name: jwt, enabled: false } ]
  - name: closed
    path: "/closed"
    backend: %[1]q
  - name: partners
    path: "/partners"
    backend: %[1]q
    middlewares: [ { name: jwt, audience: [partners] } ]
`, be)))
	c := newClient(t)
	apiToken := polSignHS(t, []byte(polSecret), polClaims("erin"))
	partnerToken := polSignHS(t, []byte(polSecret), polClaims("frank", func(c gojwt.MapClaims) { c["aud"] = []string{"partners"} }))

	for _, tc := range []struct {
		name, path, token string
		status            int
		reason            string
	}{
		{"disabled route, no token", "/open/x", "", 200, ""},
		{"global entry, no token", "/closed/x", "", 401, "missing"},
		{"global entry, valid token", "/closed/x", apiToken, 200, ""},
		{"overridden audience, global audience", "/partners/x", apiToken, 401, "bad_audience"},
		{"overridden audience, its audience", "/partners/x", partnerToken, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := rec.count()
			resp, body := do(t, c, polRequest(t, "GET", g.URL()+tc.path, tc.token))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				if rec.count() != n+1 {
					t.Errorf("not forwarded")
				}
				return
			}
			if got := polReason(body); got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
			if rec.count() != n {
				t.Errorf("a rejected request was forwarded")
			}
		})
	}
	samples := polScrape(t, c, admin)
	if v := polMetric(samples, "rustygate_jwt_rejected_total", map[string]string{"route": "open"}); v != 0 {
		t.Errorf("jwt rejections counted on the route where jwt is off: %g", v)
	}
	polWaitMetric(t, c, admin, "rustygate_jwt_rejected_total", map[string]string{"route": "partners", "reason": "bad_audience"}, 1)
}

// polLineOf returns the 1-based number of the first line of text containing
// s.
func polLineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the configuration", s)
	return 0
}

// TestPolicyValidate: invalid middleware entries are refused by
// `rustygate validate` (and by `run`), naming file, line and field.
func TestPolicyValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	routes := `  - name: api
    path: "/api"
    backend: "http://127.0.0.1:9"
`

	t.Run("task list stack is valid", func(t *testing.T) {
		t.Setenv("JWT_SECRET", polSecret)
		p := write("good.yaml", policyConfig("fast", polStackMiddlewares, routes+"    middlewares: [ { name: jwt, enabled: true } ]\n"))
		code, stdout, stderr := runValidate(t, p)
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want ok", code, stdout, stderr)
		}
	})

	const shortSecret = "too-short-secret"
	for _, tc := range []struct {
		name, middlewares, routes string
		// at is a substring of the offending line; want what the error
		// says after "file:line: ".
		at, want string
	}{
		{
			name: "credentials with any origin",
			middlewares: `  - name: cors
    allow_origins: ["*"]
    allow_credentials: true
`,
			routes: routes,
			at:     "allow_credentials: true",
			want:   "middlewares[0].allow_credentials: ",
		},
		{
			name: "credentials with any origin, flow style",
			middlewares: `  - { name: cors, allow_origins: ["*"], allow_credentials: true }
`,
			routes: routes,
			at:     "allow_credentials: true",
			want:   "middlewares[0].allow_credentials: ",
		},
		{
			name: "unknown global middleware",
			middlewares: `  - { name: rate_limit, limit: 10 }
  - name: bogus
`,
			routes: routes,
			at:     "name: bogus",
			want:   `middlewares[1].name: unknown middleware "bogus"`,
		},
		{
			name:   "unknown route middleware",
			routes: routes + "    middlewares:\n      - name: auth\n",
			at:     "name: auth",
			want:   `routes[0].middlewares[0].name: unknown middleware "auth"`,
		},
		{
			name: "short jwt secret",
			middlewares: `  - name: jwt
    secret: "` + shortSecret + `"
`,
			routes: routes,
			at:     "secret:",
			want:   "middlewares[0].secret: must be at least 32 bytes",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := policyConfig("fast", tc.middlewares, tc.routes)
			p := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", text)
			want := fmt.Sprintf("%s:%d: %s", p, polLineOf(t, text, tc.at), tc.want)

			code, stdout, stderr := runValidate(t, p)
			out := stdout + stderr
			if code == 0 {
				t.Fatalf("validate accepted the file; output %q", out)
			}
			if !strings.Contains(out, want) {
				t.Errorf("validate output %q does not contain %q", out, want)
			}
			if strings.Contains(out, shortSecret) {
				t.Errorf("validate printed the secret: %q", out)
			}

			// run refuses the file the same way.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, gatewayBin, "run", "-c", p)
			runOut, err := cmd.CombinedOutput()
			if err == nil || cmd.ProcessState == nil || cmd.ProcessState.ExitCode() <= 0 {
				t.Fatalf("run: %v (exit %v), output %q; want a refusal", err, cmd.ProcessState, runOut)
			}
			if !strings.Contains(string(runOut), tc.want) {
				t.Errorf("run output %q does not name %q", runOut, tc.want)
			}
		})
	}
}
