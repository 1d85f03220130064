package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gojwt "github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// request is the test double of middleware.Request.
type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	headers  map[string]string // lower-case names
	more     [][2]string       // further field lines, lower-case names
	hbufs    map[string][]byte
	set      map[string]string
	deleted  []string
	values   map[string]any
	respHdrs [][2]string
}

func newRequest(auth string) *request {
	r := &request{headers: map[string]string{}}
	if auth != "" {
		r.headers["authorization"] = auth
	}
	return r
}

func (r *request) Method() []byte { return []byte("GET") }
func (r *request) Path() []byte   { return []byte("/") }
func (r *request) Host() []byte   { return []byte("api.example.com") }
func (r *request) Header(name string) []byte {
	name = strings.ToLower(name)
	v, ok := r.headers[name]
	if !ok {
		return nil
	}
	if r.hbufs == nil {
		r.hbufs = map[string][]byte{}
	}
	if b, ok := r.hbufs[name]; ok {
		return b
	}
	r.hbufs[name] = []byte(v)
	return r.hbufs[name]
}
func (r *request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	name = strings.ToLower(name)
	if v, ok := r.headers[name]; ok {
		dst = append(dst, []byte(v))
	}
	for _, h := range r.more {
		if h[0] == name {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}
func (r *request) PeerIP() netip.Addr { return netip.MustParseAddr("192.0.2.10") }
func (r *request) SetHeader(name, value string) {
	if r.set == nil {
		r.set = map[string]string{}
	}
	r.set[name] = value
}
func (r *request) DelHeader(name string) { r.deleted = append(r.deleted, name) }
func (r *request) AddResponseHeader(name, value string) {
	r.respHdrs = append(r.respHdrs, [2]string{name, value})
}
func (r *request) Route() string        { return "api" }
func (r *request) Value(key string) any { return r.values[key] }
func (r *request) SetValue(key string, v any) {
	if r.values == nil {
		r.values = map[string]any{}
	}
	r.values[key] = v
}

type reporter struct {
	mu   sync.Mutex
	list []string
}

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.mu.Lock()
	r.list = append(r.list, fmt.Sprintf("%s %s %s %s", policy, route, reason, client))
	r.mu.Unlock()
}

func (r *reporter) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) == 0 {
		return ""
	}
	return r.list[len(r.list)-1]
}

// Test keys, made once.
var (
	testSecret      = "0123456789abcdef0123456789abcdef-test-secret"
	rsaKey          = mustRSA()
	rsaKey2         = mustRSA()
	ecKey, _        = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ = ed25519.GenerateKey(rand.Reader)
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// fixed "now" of the tests.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return now }

// sign makes a token; header entries override the defaults (kid etc.).
func sign(t testing.TB, method gojwt.SigningMethod, key any, claims gojwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := gojwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims() gojwt.MapClaims {
	return gojwt.MapClaims{
		"sub": "user-42",
		"iss": "https://issuer.example.com",
		"aud": []string{"api", "other"},
		"exp": now.Add(time.Hour).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
	}
}

func with(c gojwt.MapClaims, kv ...any) gojwt.MapClaims {
	out := gojwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func writePEM(t testing.TB, blocks ...*pem.Block) string {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(bl)...)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pkixBlock(t testing.TB, pub any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

func baseCfg() Settings {
	return Settings{
		Issuer:   "https://issuer.example.com",
		Audience: []string{"api"},
		Leeway:   config.Duration(30 * time.Second),
		ClaimsToHeaders: map[string]string{
			"sub":   "X-User-Id",
			"roles": "X-Roles",
			"admin": "X-Admin",
			"n":     "X-N",
		},
		// Every test runs with the token cache: verdicts must not depend
		// on it.
		CacheSize: 100,
		CacheTTL:  config.Duration(5 * time.Minute),
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newVerifier(t testing.TB, cfg Settings, rep middleware.Reporter) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, "api", rep, Options{Now: fixedNow, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestValidTokens(t *testing.T) {
	rsaFile := writePEM(t, pkixBlock(t, &rsaKey.PublicKey))
	ecFile := writePEM(t, pkixBlock(t, &ecKey.PublicKey))
	edFile := writePEM(t, pkixBlock(t, edPub))
	// PKCS #1 and a second key in one file.
	multiFile := writePEM(t, &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey2.PublicKey)}, pkixBlock(t, &rsaKey.PublicKey))

	tests := []struct {
		name   string
		cfg    func(*Settings)
		method gojwt.SigningMethod
		key    any
	}{
		{"HS256", func(c *Settings) { c.Secret = testSecret }, gojwt.SigningMethodHS256, []byte(testSecret)},
		{"HS512", func(c *Settings) { c.Secret = testSecret; c.Algorithms = []string{"HS512"} }, gojwt.SigningMethodHS512, []byte(testSecret)},
		{"RS256", func(c *Settings) { c.PublicKeyFile = rsaFile }, gojwt.SigningMethodRS256, rsaKey},
		{"PS256", func(c *Settings) { c.PublicKeyFile = rsaFile; c.Algorithms = []string{"PS256"} }, gojwt.SigningMethodPS256, rsaKey},
		{"ES256", func(c *Settings) { c.PublicKeyFile = ecFile }, gojwt.SigningMethodES256, ecKey},
		{"EdDSA", func(c *Settings) { c.PublicKeyFile = edFile; c.Algorithms = []string{"EdDSA"} }, gojwt.SigningMethodEdDSA, edKey},
		{"second key of a file", func(c *Settings) { c.PublicKeyFile = multiFile }, gojwt.SigningMethodRS256, rsaKey},
		{"secret and keys", func(c *Settings) {
			c.Secret = testSecret
			c.PublicKeyFile = rsaFile
			c.Algorithms = []string{"HS256", "RS256"}
		}, gojwt.SigningMethodRS256, rsaKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseCfg()
			tt.cfg(&cfg)
			rep := &reporter{}
			v := newVerifier(t, cfg, rep)
			claims := with(validClaims(), "roles", []string{"admin", "dev"}, "admin", true, "n", 1234567890)
			r := newRequest("Bearer " + sign(t, tt.method, tt.key, claims, nil))
			r.headers["x-admin"] = "spoofed"
			if reply := v.Handle(r); reply != nil {
				t.Fatalf("rejected: %d %s (%s)", reply.Status, reply.Body, rep.last())
			}
			want := map[string]string{"X-User-Id": "user-42", "X-Roles": `["admin","dev"]`, "X-Admin": "true", "X-N": "1234567890"}
			if fmt.Sprint(r.set) != fmt.Sprint(want) {
				t.Errorf("headers set %v, want %v", r.set, want)
			}
			if len(r.deleted) != 0 {
				t.Errorf("headers deleted: %v", r.deleted)
			}
			got, ok := r.values[ClaimsKey].(map[string]any)
			if !ok || got["sub"] != "user-42" {
				t.Errorf("claims value = %#v", r.values[ClaimsKey])
			}
		})
	}
}

func TestForwardAuthorizationAndClaimHeaders(t *testing.T) {
	cfg := baseCfg()
	cfg.Secret = testSecret
	cfg.ForwardAuthorization = new(bool)
	v := newVerifier(t, cfg, nil)
	// No sub claim, a roles claim with a line break, a null admin claim.
	claims := with(validClaims(), "sub", nil, "roles", "a\r\nX-Injected: 1", "admin", json.RawMessage("null"))
	r := newRequest("bearer   " + sign(t, gojwt.SigningMethodHS256, []byte(testSecret), claims, nil))
	r.headers["x-user-id"] = "admin"
	if reply := v.Handle(r); reply != nil {
		t.Fatalf("rejected: %s", reply.Body)
	}
	if len(r.set) != 0 {
		t.Errorf("headers set: %v", r.set)
	}
	want := "[X-Admin X-N X-Roles X-User-Id Authorization]"
	if fmt.Sprint(r.deleted) != want {
		t.Errorf("headers deleted %v, want %s", r.deleted, want)
	}
}

func TestRejections(t *testing.T) {
	rsaFile := writePEM(t, pkixBlock(t, &rsaKey.PublicKey))
	rsaPEM, _ := os.ReadFile(rsaFile)
	hs := func(c gojwt.MapClaims) string {
		return "Bearer " + sign(t, gojwt.SigningMethodHS256, []byte(testSecret), c, nil)
	}
	rs := func(c gojwt.MapClaims) string { return "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey, c, nil) }
	// hsh and rsh sign valid claims with extra header parameters.
	hsh := func(h map[string]any) string {
		return "Bearer " + sign(t, gojwt.SigningMethodHS256, []byte(testSecret), validClaims(), h)
	}
	rsh := func(h map[string]any) string {
		return "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey, validClaims(), h)
	}
	hsCfg := baseCfg()
	hsCfg.Secret = testSecret
	noExpCfg := hsCfg
	noExpCfg.RequireExp = new(bool)
	rsCfg := baseCfg()
	rsCfg.PublicKeyFile = rsaFile
	rsCfg.Algorithms = []string{"RS256"}

	noneToken := func() string {
		enc := base64.RawURLEncoding
		h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
		c, _ := json.Marshal(validClaims())
		return "Bearer " + enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
	}()
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		if sig[0] == 'A' {
			sig[0] = 'B'
		} else {
			sig[0] = 'A'
		}
		parts[2] = string(sig)
		return strings.Join(parts, ".")
	}

	tests := []struct {
		name   string
		cfg    Settings
		auth   string
		reason string
	}{
		{"no header", hsCfg, "", "missing"},
		{"other scheme", hsCfg, "Basic dXNlcjpwYXNz", "missing"},
		{"scheme without space", hsCfg, "Bearerxyz", "missing"},
		{"empty token", hsCfg, "Bearer ", "malformed"},
		{"garbage", hsCfg, "Bearer not-a-token", "malformed"},
		{"bad base64", hsCfg, "Bearer a.b.c", "malformed"},
		{"bad signature", hsCfg, tamper(hs(validClaims())), "bad_signature"},
		{"other secret", hsCfg, "Bearer " + sign(t, gojwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), validClaims(), nil), "bad_signature"},
		{"expired", hsCfg, hs(with(validClaims(), "exp", now.Add(-31*time.Second).Unix())), "expired"},
		{"expired within leeway", hsCfg, hs(with(validClaims(), "exp", now.Add(-29*time.Second).Unix())), ""},
		{"not yet valid", hsCfg, hs(with(validClaims(), "nbf", now.Add(31*time.Second).Unix())), "not_yet_valid"},
		{"not yet valid within leeway", hsCfg, hs(with(validClaims(), "nbf", now.Add(29*time.Second).Unix())), ""},
		{"issued in the future", hsCfg, hs(with(validClaims(), "iat", now.Add(31*time.Second).Unix())), "not_yet_valid"},
		{"issued in the future within leeway", hsCfg, hs(with(validClaims(), "iat", now.Add(29*time.Second).Unix())), ""},
		{"no exp", hsCfg, hs(with(validClaims(), "exp", nil)), "no_exp"},
		{"no exp nor any other claim", hsCfg, hs(gojwt.MapClaims{}), "no_exp"},
		{"no exp, exp not required", noExpCfg, hs(with(validClaims(), "exp", nil)), ""},
		{"expired, exp not required", noExpCfg, hs(with(validClaims(), "exp", now.Add(-31*time.Second).Unix())), "expired"},
		{"null exp", hsCfg, hs(with(validClaims(), "exp", json.RawMessage("null"))), "malformed"},
		// RFC 7515 4.1.11: every crit is refused, the policy understands
		// no extension; a crit that is empty, not a list of strings or
		// names a registered parameter is invalid anyway.
		{"crit extension", hsCfg, hsh(map[string]any{"crit": []string{"b64"}, "b64": false}), "crit"},
		{"crit unknown extension", hsCfg, hsh(map[string]any{"crit": []string{"exp"}, "exp": 1}), "crit"},
		{"crit naming a registered parameter", hsCfg, hsh(map[string]any{"crit": []string{"kid"}, "kid": "k1"}), "crit"},
		{"empty crit", hsCfg, hsh(map[string]any{"crit": []string{}}), "crit"},
		{"crit not a list", hsCfg, hsh(map[string]any{"crit": "b64"}), "crit"},
		{"crit of numbers", hsCfg, hsh(map[string]any{"crit": []int{1}}), "crit"},
		{"null crit", hsCfg, hsh(map[string]any{"crit": nil}), "crit"},
		{"crit with a bad signature", hsCfg, tamper(hsh(map[string]any{"crit": []string{"b64"}})), "crit"},
		{"crit on RS256", rsCfg, rsh(map[string]any{"crit": []string{"x5c"}}), "crit"},
		// Header parameter names are case-sensitive: Crit is an unknown,
		// ignorable parameter.
		{"Crit is not crit", hsCfg, hsh(map[string]any{"Crit": []string{"b64"}}), ""},
		{"token with a space", hsCfg, hs(validClaims()) + " x", "malformed"},
		{"wrong audience", hsCfg, hs(with(validClaims(), "aud", "someone-else")), "bad_audience"},
		{"no audience", hsCfg, hs(with(validClaims(), "aud", nil)), "bad_audience"},
		{"wrong issuer", hsCfg, hs(with(validClaims(), "iss", "https://evil.example.com")), "bad_issuer"},
		{"no issuer", hsCfg, hs(with(validClaims(), "iss", nil)), "bad_issuer"},
		{"exp of the wrong type", hsCfg, hs(with(validClaims(), "exp", "tomorrow")), "malformed"},
		{"alg none", hsCfg, noneToken, "bad_algorithm"},
		{"alg not allowed", hsCfg, "Bearer " + sign(t, gojwt.SigningMethodHS384, []byte(testSecret), validClaims(), nil), "bad_algorithm"},
		{"unknown alg", hsCfg, func() string {
			tok := hs(validClaims())
			parts := strings.Split(strings.TrimPrefix(tok, "Bearer "), ".")
			h, _ := json.Marshal(map[string]any{"alg": "XX999", "typ": "JWT"})
			parts[0] = base64.RawURLEncoding.EncodeToString(h)
			return "Bearer " + strings.Join(parts, ".")
		}(), "bad_algorithm"},
		{"RS256 valid", rsCfg, rs(validClaims()), ""},
		{"RS256 by another key", rsCfg, "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey2, validClaims(), nil), "bad_signature"},
		// The classic confusion: an HS256 token whose secret is the
		// server's RSA public key.
		{"RS to HS confusion", rsCfg, "Bearer " + sign(t, gojwt.SigningMethodHS256, rsaPEM, validClaims(), nil), "bad_algorithm"},
		{"RS to HS confusion with HS allowed", func() Settings {
			c := rsCfg
			c.Secret = testSecret
			c.Algorithms = []string{"RS256", "HS256"}
			return c
		}(), "Bearer " + sign(t, gojwt.SigningMethodHS256, rsaPEM, validClaims(), nil), "bad_signature"},
		{"ES256 token without an EC key", func() Settings {
			c := rsCfg
			c.Algorithms = []string{"RS256", "ES256"}
			return c
		}(), "Bearer " + sign(t, gojwt.SigningMethodES256, ecKey, validClaims(), nil), "bad_algorithm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			v := newVerifier(t, tt.cfg, rep)
			reply := v.Handle(newRequest(tt.auth))
			if tt.reason == "" {
				if reply != nil {
					t.Fatalf("rejected: %s (%s)", reply.Body, rep.last())
				}
				return
			}
			if reply == nil {
				t.Fatal("accepted")
			}
			if reply.Status != 401 {
				t.Errorf("status %d", reply.Status)
			}
			if want := fmt.Sprintf(`{"error":"unauthorized","reason":%q}`+"\n", tt.reason); string(reply.Body) != want {
				t.Errorf("body %s, want %s", reply.Body, want)
			}
			wantAuth := `Bearer error="invalid_token", error_description="`
			if tt.reason == "missing" {
				wantAuth = `Bearer realm="rustygate"`
			}
			if got := reply.Headers[0]; got[0] != "WWW-Authenticate" || !strings.HasPrefix(got[1], wantAuth) {
				t.Errorf("header %q, want WWW-Authenticate: %s...", got, wantAuth)
			}
			if want := "jwt api " + tt.reason + " 192.0.2.10"; rep.last() != want {
				t.Errorf("report %q, want %q", rep.last(), want)
			}
		})
	}
}

// TestMultipleAuthorization: a request with two Authorization lines is
// refused whatever they hold, none of its tokens verified; two tokens on
// one line are malformed.
func TestMultipleAuthorization(t *testing.T) {
	cfg := baseCfg()
	cfg.Secret = testSecret
	valid := "Bearer " + sign(t, gojwt.SigningMethodHS256, []byte(testSecret), validClaims(), nil)
	none := "Bearer " + sign(t, gojwt.SigningMethodNone, gojwt.UnsafeAllowNoneSignatureType, with(validClaims(), "sub", "admin"), nil)
	for _, tt := range []struct {
		name   string
		lines  []string
		status int
		reason string
	}{
		{"valid then alg none", []string{valid, none}, 400, "multiple_authorization"},
		{"alg none then valid", []string{none, valid}, 400, "multiple_authorization"},
		{"the same valid token twice", []string{valid, valid}, 400, "multiple_authorization"},
		{"valid and Basic", []string{valid, "Basic dXNlcjpwYXNz"}, 400, "multiple_authorization"},
		{"both on one line", []string{valid + ", " + none}, 401, "malformed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			v := newVerifier(t, cfg, rep)
			r := newRequest(tt.lines[0])
			for _, l := range tt.lines[1:] {
				r.more = append(r.more, [2]string{"authorization", l})
			}
			reply := v.Handle(r)
			if reply == nil {
				t.Fatal("accepted")
			}
			if reply.Status != tt.status || reasonOf(reply.Body) != tt.reason {
				t.Errorf("%d %s, want %d with reason %s", reply.Status, reply.Body, tt.status, tt.reason)
			}
			if want := "jwt api " + tt.reason + " 192.0.2.10"; rep.last() != want {
				t.Errorf("report %q, want %q", rep.last(), want)
			}
			if r.values != nil || r.set != nil {
				t.Errorf("claims %v and headers %v set on a refused request", r.values, r.set)
			}
			if tt.status == 400 {
				want := `Bearer error="invalid_request", error_description="more than one Authorization header"`
				if h := reply.Headers[0]; h[0] != "WWW-Authenticate" || h[1] != want {
					t.Errorf("header %q, want WWW-Authenticate: %s", h, want)
				}
			}
		})
	}
}

// reasonOf decodes the reason of a rejection body.
func reasonOf(body []byte) string {
	var b struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal(body, &b)
	return b.Reason
}

// TestCritBeforeKeyLookup: a token with crit is refused before its kid
// can make the key set fetched again.
func TestCritBeforeKeyLookup(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	v, err := NewVerifier(jwksCfg(srv.URL, time.Hour, time.Nanosecond), "api", nil, Options{Now: fixedNow, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, kid := range []string{"k1", "k2"} {
		tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey, validClaims(), map[string]any{"kid": kid, "crit": []string{"b64"}, "b64": false})
		if reply := v.Handle(newRequest(tok)); reply == nil || reasonOf(reply.Body) != "crit" {
			t.Errorf("kid %s: %+v, want rejected with crit", kid, reply)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (at start only)", n)
	}
}

func TestWWWAuthenticate(t *testing.T) {
	cfg := baseCfg()
	cfg.Secret = testSecret
	v := newVerifier(t, cfg, nil)
	reply := v.Handle(newRequest("Bearer " + sign(t, gojwt.SigningMethodHS256, []byte(testSecret), with(validClaims(), "exp", now.Add(-time.Hour).Unix()), nil)))
	want := [][2]string{{"WWW-Authenticate", `Bearer error="invalid_token", error_description="the token has expired"`}, {"Content-Type", "application/json"}}
	if fmt.Sprint(reply.Headers) != fmt.Sprint(want) {
		t.Errorf("headers %q, want %q", reply.Headers, want)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	shortSecret := filepath.Join(dir, "short")
	os.WriteFile(shortSecret, []byte("short\n"), 0o600)
	privFile := writePEM(t, &pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakFile := writePEM(t, pkixBlock(t, &weak.PublicKey))
	ecFile := writePEM(t, pkixBlock(t, &ecKey.PublicKey))
	for _, tt := range []struct {
		cfg  Settings
		want string
	}{
		{Settings{}, "jwt: one of secret, secret_file, public_key_file or jwks_url is required"},
		{Settings{Secret: testSecret, Algorithms: []string{"none"}}, `jwt: algorithm "none" is not supported`},
		{Settings{Secret: testSecret, Algorithms: []string{"RS256"}}, "jwt: RS*, PS*, ES* and EdDSA algorithms need public_key_file or jwks_url"},
		{Settings{PublicKeyFile: ecFile, Algorithms: []string{"HS256"}}, "jwt: HS* algorithms need secret or secret_file"},
		{Settings{Secret: "short"}, "jwt: the secret has 5 bytes; at least 32 are needed"},
		{Settings{SecretFile: shortSecret}, "jwt: the secret has 5 bytes; at least 32 are needed"},
		{Settings{SecretFile: filepath.Join(dir, "missing")}, "jwt: secret_file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{Settings{PublicKeyFile: privFile}, "jwt: public_key_file " + privFile + `: PEM block 1 is "PRIVATE KEY" (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)`},
		{Settings{PublicKeyFile: weakFile}, "jwt: public_key_file " + weakFile + ": PEM block 1: RSA key of 1024 bits (at least 2048 are needed)"},
		{Settings{PublicKeyFile: ecFile, Algorithms: []string{"RS256"}}, "jwt: public_key_file " + ecFile + " has no key for algorithms RS256"},
		{Settings{JWKSURL: "ftp://x/keys", JWKSRefresh: config.Duration(time.Hour), JWKSMinRefetch: config.Duration(time.Minute)}, `jwt: invalid jwks_url "ftp://x/keys"`},
	} {
		v, err := NewVerifier(tt.cfg, "api", nil, Options{Logger: quietLogger()})
		if err == nil {
			v.Close()
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.cfg, err, tt.want)
		}
	}
}

// jwksServer serves a key set that tests change, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{status: 200}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(t *testing.T, keys map[string]any) {
	t.Helper()
	var doc jwkset.JWKSMarshal
	for kid, k := range keys {
		j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		doc.Keys = append(doc.Keys, j.Marshal())
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.body, s.status = b, 200
	s.mu.Unlock()
}

func (s *jwksServer) fail(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, []byte(body)
	s.mu.Unlock()
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func jwksCfg(url string, refresh, minRefetch time.Duration) Settings {
	c := baseCfg()
	c.JWKSURL = url
	c.JWKSRefresh = config.Duration(refresh)
	c.JWKSMinRefetch = config.Duration(minRefetch)
	c.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	return c
}

func TestJWKSRotation(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	clk := &clock{t: now}
	rep := &reporter{}
	v, err := NewVerifier(jwksCfg(srv.URL, time.Hour, 5*time.Minute), "api", rep, Options{Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	token := func(key any, kid string) string {
		m := gojwt.SigningMethod(gojwt.SigningMethodRS256)
		switch key.(type) {
		case *ecdsa.PrivateKey:
			m = gojwt.SigningMethodES256
		case ed25519.PrivateKey:
			m = gojwt.SigningMethodEdDSA
		}
		h := map[string]any{}
		if kid != "" {
			h["kid"] = kid
		}
		return "Bearer " + sign(t, m, key, validClaims(), h)
	}
	expect := func(auth, reason string, fetches int64) {
		t.Helper()
		reply := v.Handle(newRequest(auth))
		switch {
		case reason == "" && reply != nil:
			t.Errorf("rejected: %s", reply.Body)
		case reason != "" && reply == nil:
			t.Errorf("accepted, want %s", reason)
		case reason != "" && !strings.Contains(string(reply.Body), `"`+reason+`"`):
			t.Errorf("rejected with %s, want %s", reply.Body, reason)
		}
		if got := srv.fetches.Load(); got != fetches {
			t.Errorf("%d fetches, want %d", got, fetches)
		}
	}

	expect(token(rsaKey, "k1"), "", 1)
	expect(token(rsaKey, ""), "", 1) // no kid: every key that fits

	// Rotation: k1 is replaced by k2 and k3.
	srv.serve(t, map[string]any{"k2": &ecKey.PublicKey, "k3": edPub})
	expect(token(ecKey, "k2"), "", 2) // unknown kid: fetched again
	expect(token(edKey, "k3"), "", 2)
	expect(token(rsaKey, "k1"), "unknown_key", 2) // gone, and no refetch within 5m
	expect(token(rsaKey2, "k9"), "unknown_key", 2)

	// After jwks_min_refetch, an unknown kid fetches again, once.
	srv.serve(t, map[string]any{"k2": &ecKey.PublicKey, "k4": &rsaKey2.PublicKey})
	clk.Advance(5 * time.Minute)
	expect(token(rsaKey2, "k4"), "", 3)
	expect(token(rsaKey2, "k5"), "unknown_key", 3)
	expect(token(edKey, "k3"), "unknown_key", 3)

	// A kid whose key does not fit the token's algorithm.
	expect(token(edKey, "k2"), "bad_algorithm", 3)
}

func TestJWKSFailureKeepsLastGoodSet(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	clk := &clock{t: now}
	v, err := NewVerifier(jwksCfg(srv.URL, 10*time.Millisecond, time.Nanosecond), "api", nil, Options{Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	good := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey, validClaims(), map[string]any{"kid": "k1"})

	for _, failure := range []struct {
		status int
		body   string
	}{
		{500, "oops"},
		{200, "not json"},
		{200, `{"kees": []}`},
		{200, `{"keys": [{"kty": "RSA", "kid": "bad", "n": "AQAB", "e": "AQAB"}]}`},
	} {
		srv.fail(failure.status, failure.body)
		start := srv.fetches.Load()
		deadline := time.Now().Add(5 * time.Second)
		for srv.fetches.Load() < start+3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if srv.fetches.Load() < start+3 {
			t.Fatalf("%d %q: the background refresher did not retry", failure.status, failure.body)
		}
		if reply := v.Handle(newRequest(good)); reply != nil {
			t.Errorf("%d %q: a key of the last good set was lost: %s", failure.status, failure.body, reply.Body)
		}
		// An unknown kid fetches again, fails, and is unknown.
		clk.Advance(time.Second)
		unknown := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey2, validClaims(), map[string]any{"kid": "k2"})
		if reply := v.Handle(newRequest(unknown)); reply == nil || !strings.Contains(string(reply.Body), "unknown_key") {
			t.Errorf("unknown kid: %+v", reply)
		}
	}

	// A good set again: the refresher picks it up.
	srv.serve(t, map[string]any{"k2": &rsaKey2.PublicKey})
	deadline := time.Now().Add(5 * time.Second)
	k2 := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey2, validClaims(), map[string]any{"kid": "k2"})
	for {
		if v.Handle(newRequest(k2)) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new key set was never used")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWKSInitialFetchFails(t *testing.T) {
	srv := newJWKSServer(t)
	srv.fail(503, "")
	clk := &clock{t: now}
	v, err := NewVerifier(jwksCfg(srv.URL, time.Hour, time.Minute), "api", nil, Options{Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("New failed on an unavailable JWKS: %v", err)
	}
	defer v.Close()
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey, validClaims(), map[string]any{"kid": "k1"})
	if reply := v.Handle(newRequest(tok)); reply != nil {
		t.Errorf("not recovered on the first token: %s", reply.Body)
	}
}

func TestJWKSConcurrentUnknownKID(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	v, err := NewVerifier(jwksCfg(srv.URL, time.Hour, time.Hour), "api", nil, Options{Now: fixedNow, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey, "k2": &rsaKey2.PublicKey})
	tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, rsaKey2, validClaims(), map[string]any{"kid": "k2"})
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v.Handle(newRequest(tok)) != nil {
				rejected.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (one at start, one for the new kid)", n)
	}
	// Every request either started the fetch, waited for it, or found
	// the key it brought.
	if rejected.Load() != 0 {
		t.Errorf("%d of 16 rejected", rejected.Load())
	}
}

func TestCloseStopsRefresher(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &rsaKey.PublicKey})
	v, err := NewVerifier(jwksCfg(srv.URL, time.Millisecond, time.Second), "api", nil, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	v.Close()
	v.Close()
	// A request sent just before Close may still reach the server.
	time.Sleep(20 * time.Millisecond)
	n := srv.fetches.Load()
	time.Sleep(50 * time.Millisecond)
	if srv.fetches.Load() != n {
		t.Error("fetches after Close")
	}
	// TestMain checks that no goroutine is left.
}

// The BenchmarkVerify* benchmarks verify one token per operation, the
// client repeating its token: cache=off pays for the signature every
// time, cache=on once.

func BenchmarkVerifyHS256(b *testing.B) {
	cfg := baseCfg()
	cfg.Secret = testSecret
	benchVerify(b, cfg, sign(b, gojwt.SigningMethodHS256, []byte(testSecret), validClaims(), nil))
}

func BenchmarkVerifyRS256(b *testing.B) {
	cfg := baseCfg()
	cfg.PublicKeyFile = writePEM(b, pkixBlock(b, &rsaKey.PublicKey))
	benchVerify(b, cfg, sign(b, gojwt.SigningMethodRS256, rsaKey, validClaims(), nil))
}

func BenchmarkVerifyES256(b *testing.B) {
	cfg := baseCfg()
	cfg.PublicKeyFile = writePEM(b, pkixBlock(b, &ecKey.PublicKey))
	benchVerify(b, cfg, sign(b, gojwt.SigningMethodES256, ecKey, validClaims(), nil))
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	cfg := baseCfg()
	cfg.PublicKeyFile = writePEM(b, pkixBlock(b, edPub))
	cfg.Algorithms = []string{"EdDSA"}
	benchVerify(b, cfg, sign(b, gojwt.SigningMethodEdDSA, edKey, validClaims(), nil))
}

func benchVerify(b *testing.B, cfg Settings, token string) {
	for _, size := range []int{0, 100} {
		b.Run(fmt.Sprint("cache=", map[bool]string{false: "off", true: "on"}[size > 0]), func(b *testing.B) {
			cfg.CacheSize = size
			v := newVerifier(b, cfg, nil)
			r := newRequest("Bearer " + token)
			b.ReportAllocs()
			for b.Loop() {
				r.set = nil
				if reply := v.Handle(r); reply != nil {
					b.Fatalf("rejected: %s", reply.Body)
				}
			}
		})
	}
}

func (r *request) DelResponseHeader(name string) {}

// TestCompactJWSCharacters: a token passes the syntax check exactly when
// every byte is of base64url or a dot.
func TestCompactJWSCharacters(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	for c := range 256 {
		tok := []byte("eyJhbGciOi.eyJzdWIiOi.c2ln")
		tok[12] = byte(c)
		want := strings.IndexByte(alphabet, byte(c)) >= 0
		if got := isCompactJWS(tok); got != want {
			t.Errorf("byte %#x: isCompactJWS = %v, want %v", c, got, want)
		}
	}
}
