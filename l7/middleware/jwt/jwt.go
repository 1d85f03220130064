// Package jwt is the jwt request policy: it lets a request through only
// with a valid `Authorization: Bearer <token>` JSON Web Token.
//
// A token is valid when its algorithm is in the configured list, its
// signature verifies with a configured key, its header has no crit
// parameter (RFC 7515 4.1.11: the policy understands no extension), it
// has an exp claim (unless require_exp is off), and its time claims (exp,
// nbf, iat, with the configured leeway), its issuer and its audience
// (one of the configured ones) are accepted. The HS* algorithms verify
// with the secret only, every other algorithm with the public keys only,
// so a public key can never be used as an HMAC secret; "none" is never
// accepted.
//
// Keys come from secret or secret_file (HS256/384/512), public_key_file
// (PEM; RS*, PS*, ES*, EdDSA) and jwks_url. A JWKS is fetched when the
// policy is built, then every jwks_refresh in the background; a token
// with a kid not in the set makes it fetched again, at most once per
// jwks_min_refetch. A failed fetch keeps the last good set.
//
// A rejected request gets 401 with a WWW-Authenticate header (RFC 6750)
// and a JSON body naming the reason, which is also reported: missing,
// malformed, bad_signature, expired, no_exp, not_yet_valid, bad_issuer,
// bad_audience, bad_algorithm, unknown_key or crit. A request with more
// than one Authorization header gets 400 (invalid_request), reason
// multiple_authorization: none of its tokens is verified.
//
// A verified token is cached (cache_size entries, the least recently
// used evicted), keyed by a keyed SHA-256 of the token, until its exp or
// for cache_ttl, whichever comes first, so a client repeating its token
// pays for the signature once and a cache hit allocates nothing. Only
// successes are cached. The cache belongs to the built policy: a reload
// starts an empty one, and a JWKS fetch that replaces the key set
// invalidates every entry.
//
// An accepted request gets its claims stored as the request value
// "jwt.claims" (a map[string]any, shared by the requests that send the
// same token: read it, never write it), and every claims_to_headers
// header removed from what the client sent, in any spelling of its case
// and however often it was sent, then set from its claim when the token
// has it; unless forward_authorization is on, its Authorization header is
// removed.
package jwt

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// ClaimsKey is the request value under which the verified claims are
// stored, as a map[string]any.
const ClaimsKey = "jwt.claims"

// Options are the settings of a verifier that do not come from the
// configuration file.
type Options struct {
	// Now returns the current time, for the time claims and the JWKS
	// refetch limit; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches the JWKS; nil means a client of the verifier's
	// own, whose idle connections Close closes.
	HTTPClient *http.Client
	// FetchTimeout bounds one JWKS fetch; 0 means 5s. A request whose
	// token has an unknown kid may wait that long for a fetch.
	FetchTimeout time.Duration
	// Logger receives JWKS fetch failures; nil means slog.Default().
	// Secrets and tokens are never logged.
	Logger *slog.Logger
}

// Verifier is a built jwt policy.
type Verifier struct {
	route  string
	rep    middleware.Reporter
	parser *gojwt.Parser
	algs   []string
	issuer string

	secretKey any              // the secret as a []byte, or nil
	static    map[string][]any // public_key_file keys by algorithm
	staticKey map[string]any   // what keyFor returns for them: a key or a key set
	jwks      *jwksCache

	headers     []claimHeader
	forwardAuth bool
	requireExp  bool

	cache *tokenCache
	now   func() time.Time

	closeOnce sync.Once
}

// claimHeader maps a claim to a request header.
type claimHeader struct {
	claim, header string
}

var (
	_ middleware.Handler = (*Verifier)(nil)
	_ middleware.Closer  = (*Verifier)(nil)
)

// Errors of the key lookup, mapped to reasons.
var (
	errUnknownKey   = errors.New("unknown key")
	errBadAlgorithm = errors.New("no key for the token's algorithm")
)

// authBufs hold the Authorization values of a request being handled.
var authBufs = sync.Pool{New: func() any { return new([2][]byte) }}

// minSecretBytes is the shortest HMAC secret accepted.
const minSecretBytes = 32

// maxTokenBytes bounds the token size.
const maxTokenBytes = 16 << 10

// New builds the policy from an effective jwt entry (see
// config.Config.RouteMiddlewares). It reads secret_file and
// public_key_file and fetches jwks_url once (a failed fetch is logged
// and retried in the background, not an error). It fails on settings it
// cannot run.
func New(cfg Settings, route string, rep middleware.Reporter) (middleware.Handler, error) {
	return NewVerifier(cfg, route, rep, Options{})
}

// NewVerifier is New with options, returning the concrete type.
func NewVerifier(cfg Settings, route string, rep middleware.Reporter, opts Options) (*Verifier, error) {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 5 * time.Second
	}
	v := &Verifier{
		route: route, rep: rep, issuer: cfg.Issuer, now: opts.Now,
		forwardAuth: cfg.ForwardAuthorization == nil || *cfg.ForwardAuthorization,
		requireExp:  cfg.RequireExp == nil || *cfg.RequireExp,
	}

	v.algs = slices.Clone(cfg.Algorithms)
	if len(v.algs) == 0 {
		v.algs = DefaultAlgorithms(&cfg)
	}
	if len(v.algs) == 0 {
		return nil, errors.New("jwt: one of secret, secret_file, public_key_file or jwks_url is required")
	}
	hasHMAC, hasPublic := false, false
	for _, a := range v.algs {
		m := gojwt.GetSigningMethod(a)
		if m == nil || strings.EqualFold(a, "none") || m == gojwt.SigningMethodNone {
			return nil, fmt.Errorf("jwt: algorithm %q is not supported", a)
		}
		if IsHMAC(a) {
			hasHMAC = true
		} else {
			hasPublic = true
		}
	}

	var secret []byte
	switch {
	case cfg.Secret != "" && cfg.SecretFile != "":
		return nil, errors.New("jwt: set only one of secret and secret_file")
	case cfg.Secret != "":
		secret = []byte(cfg.Secret)
	case cfg.SecretFile != "":
		data, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("jwt: secret_file: %w", err)
		}
		secret = []byte(strings.TrimRight(string(data), "\r\n"))
	}
	if secret != nil && len(secret) < minSecretBytes {
		return nil, fmt.Errorf("jwt: the secret has %d bytes; at least %d are needed", len(secret), minSecretBytes)
	}
	if secret != nil {
		v.secretKey = secret
	}
	if hasHMAC && secret == nil {
		return nil, errors.New("jwt: HS* algorithms need secret or secret_file")
	}
	if hasPublic && cfg.PublicKeyFile == "" && cfg.JWKSURL == "" {
		return nil, errors.New("jwt: RS*, PS*, ES* and EdDSA algorithms need public_key_file or jwks_url")
	}
	if cfg.PublicKeyFile != "" {
		keys, err := loadPublicKeys(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
		v.static, v.staticKey = map[string][]any{}, map[string]any{}
		for _, a := range v.algs {
			var fit []any
			for _, k := range keys {
				if keyFits(a, k) {
					fit = append(fit, k)
				}
			}
			switch len(fit) {
			case 0:
				continue
			case 1:
				v.staticKey[a] = fit[0]
			default:
				set := gojwt.VerificationKeySet{}
				for _, k := range fit {
					set.Keys = append(set.Keys, k)
				}
				v.staticKey[a] = set
			}
			v.static[a] = fit
		}
		if len(v.static) == 0 {
			return nil, fmt.Errorf("jwt: public_key_file %s has no key for algorithms %s", cfg.PublicKeyFile, strings.Join(v.algs, ", "))
		}
	}

	for claim, header := range cfg.ClaimsToHeaders {
		if claim == "" || !config.IsToken(header) {
			return nil, fmt.Errorf("jwt: invalid claims_to_headers entry %q: %q", claim, header)
		}
		v.headers = append(v.headers, claimHeader{claim, header})
	}
	slices.SortFunc(v.headers, func(a, b claimHeader) int { return strings.Compare(a.claim, b.claim) })

	popts := []gojwt.ParserOption{
		gojwt.WithValidMethods(v.algs),
		gojwt.WithLeeway(cfg.Leeway.D()),
		gojwt.WithIssuedAt(),
		gojwt.WithTimeFunc(opts.Now),
	}
	if cfg.Issuer != "" {
		popts = append(popts, gojwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		popts = append(popts, gojwt.WithAudience(cfg.Audience...))
	}
	if v.requireExp {
		popts = append(popts, gojwt.WithExpirationRequired())
	}
	v.parser = gojwt.NewParser(popts...)

	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	v.cache = newTokenCache(cfg.CacheSize, cfg.CacheTTL.D(), seed)

	if cfg.JWKSURL != "" {
		c, err := newJWKSCache(cfg.JWKSURL, route, cfg.JWKSRefresh.D(), cfg.JWKSMinRefetch.D(), opts)
		if err != nil {
			return nil, err
		}
		v.jwks = c
	}
	return v, nil
}

// Close stops the JWKS refresher, if any.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		if v.jwks != nil {
			v.jwks.close()
		}
	})
	return nil
}

// Handle implements middleware.Handler.
func (v *Verifier) Handle(r middleware.Request) *middleware.Reply {
	// The slice passed through the interface would escape: it comes
	// from a pool.
	buf := authBufs.Get().(*[2][]byte)
	auth := r.RequestHeaderValues("Authorization", buf[:0])
	n := len(auth)
	var first []byte
	if n >= 1 {
		first = auth[0]
	}
	clear(buf[:])
	authBufs.Put(buf)
	if n > 1 {
		// Verifying one of several credentials would forward the others
		// unverified to a backend that may read another one.
		return v.reject(r.PeerIP(), reasonMultipleAuth)
	}
	raw, ok := bearerToken(first)
	if !ok {
		return v.reject(r.PeerIP(), reasonMissing)
	}
	if len(raw) == 0 || len(raw) > maxTokenBytes || !isCompactJWS(raw) {
		return v.reject(r.PeerIP(), reasonMalformed)
	}
	var key cacheKey
	cacheable := v.cache != nil && len(raw) <= maxCachedToken
	if cacheable {
		v.cache.key(raw, &key)
		if val, ok := v.cache.get(&key, v.now(), v.keyGeneration()); ok {
			v.accept(r, val)
			return nil
		}
	}
	gen := v.keyGeneration()
	claims := gojwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(string(raw), claims, v.keyFor)
	if err != nil {
		return v.reject(r.PeerIP(), v.classify(err, tok, claims))
	}
	val := v.verifiedOf(claims)
	if cacheable {
		var exp time.Time
		if e, err := claims.GetExpirationTime(); err == nil && e != nil {
			exp = e.Time
		}
		v.cache.put(&key, val, v.now(), exp, gen)
	}
	v.accept(r, val)
	return nil
}

// keyGeneration identifies the key set tokens verify with: it changes
// when a JWKS fetch replaces the set, which invalidates the cached
// verifications. The secret and public_key_file keys never change during
// the life of a verifier (a reload builds a new one, with a new cache).
func (v *Verifier) keyGeneration() uint64 {
	if v.jwks == nil {
		return 0
	}
	return v.jwks.gen.Load()
}

// verifiedOf formats the claims_to_headers values of verified claims.
func (v *Verifier) verifiedOf(claims gojwt.MapClaims) *verified {
	val := &verified{claims: map[string]any(claims), headers: make([]claimValue, len(v.headers))}
	for i, h := range v.headers {
		val.headers[i].text, val.headers[i].ok = claimText(claims[h.claim])
	}
	return val
}

// accept lets a request with a verified token through: it stores the
// claims and sets the claims_to_headers headers.
func (v *Verifier) accept(r middleware.Request, val *verified) {
	r.SetValue(ClaimsKey, val.claims)
	for i, h := range v.headers {
		if c := val.headers[i]; c.ok {
			r.SetHeader(h.header, c.text)
		} else {
			// A client must not pass its own value off as a claim:
			// SetHeader and DelHeader both remove every line it sent
			// under the name, in any case.
			r.DelHeader(h.header)
		}
	}
	if !v.forwardAuth {
		r.DelHeader("Authorization")
	}
}

// bearerToken returns the token of an Authorization header with the
// Bearer scheme (case-insensitive), or false when there is none.
func bearerToken(h []byte) ([]byte, bool) {
	const scheme = "bearer"
	if len(h) < len(scheme) {
		return nil, false
	}
	for i := 0; i < len(scheme); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != scheme[i] {
			return nil, false
		}
	}
	rest := h[len(scheme):]
	if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
		return nil, false // "Bearerx"
	}
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	for len(rest) > 0 && (rest[len(rest)-1] == ' ' || rest[len(rest)-1] == '\t') {
		rest = rest[:len(rest)-1]
	}
	return rest, true
}

// isCompactJWS reports whether a token has only the characters of the
// JWS compact serialization: base64url and dots. Anything else, such as
// the ", " of two Authorization lines combined into one, is malformed.
func isCompactJWS(tok []byte) bool {
	for _, c := range tok {
		if !jwsChars[c] {
			return false
		}
	}
	return true
}

// jwsChars are the bytes of the JWS compact serialization (a table: the
// test runs on every byte of every token).
var jwsChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	return t
}()

// keyFor is the key lookup of the parser, which has already checked that
// the token's algorithm is allowed. A token whose header has crit is
// refused before any key is looked up: crit lists extensions the
// verifier must understand (RFC 7515 4.1.11), and it understands none,
// while golang-jwt ignores the parameter. HS* tokens get the secret and
// nothing else; the others get public keys that fit their algorithm.
func (v *Verifier) keyFor(t *gojwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	alg := t.Method.Alg()
	if IsHMAC(alg) {
		if v.secretKey == nil {
			return nil, errBadAlgorithm
		}
		return v.secretKey, nil
	}
	if v.jwks != nil {
		kidValue, hasKID := t.Header["kid"]
		if !hasKID {
			keys := append(slices.Clip(v.static[alg]), v.jwks.keys(alg)...)
			switch len(keys) {
			case 0:
				return nil, errUnknownKey
			case 1:
				return keys[0], nil
			}
			set := gojwt.VerificationKeySet{Keys: make([]gojwt.VerificationKey, len(keys))}
			for i, k := range keys {
				set.Keys[i] = k
			}
			return set, nil
		}
		kid, ok := kidValue.(string)
		if !ok {
			return nil, errMalformedKID
		}
		key, err := v.jwks.key(t, kid)
		switch {
		case err == nil && !keyFits(alg, key):
			return nil, errBadAlgorithm
		case err == nil:
			return key, nil
		case v.staticKey[alg] == nil:
			return nil, err
		}
		// Not in the JWKS; public_key_file has keys for alg.
	}
	if k, ok := v.staticKey[alg]; ok {
		return k, nil
	}
	return nil, errBadAlgorithm
}

var (
	errMalformedKID = errors.New("kid is not a string")
	errCrit         = errors.New("crit header parameter")
)

// Reasons.
const (
	reasonMissing      = "missing"
	reasonMalformed    = "malformed"
	reasonBadSignature = "bad_signature"
	reasonExpired      = "expired"
	reasonNotYetValid  = "not_yet_valid"
	reasonBadIssuer    = "bad_issuer"
	reasonBadAudience  = "bad_audience"
	reasonBadAlgorithm = "bad_algorithm"
	reasonUnknownKey   = "unknown_key"
	reasonNoExp        = "no_exp"
	reasonCrit         = "crit"
	reasonMultipleAuth = "multiple_authorization"
)

// classify maps a parse error to a reason.
func (v *Verifier) classify(err error, tok *gojwt.Token, claims gojwt.MapClaims) string {
	switch {
	case errors.Is(err, errCrit):
		return reasonCrit
	case errors.Is(err, errUnknownKey):
		return reasonUnknownKey
	case errors.Is(err, errBadAlgorithm), errors.Is(err, gojwt.ErrInvalidKeyType):
		return reasonBadAlgorithm
	case errors.Is(err, errMalformedKID), errors.Is(err, gojwt.ErrTokenMalformed):
		return reasonMalformed
	case errors.Is(err, gojwt.ErrTokenUnverifiable):
		// The algorithm is missing or unknown.
		return reasonBadAlgorithm
	case errors.Is(err, gojwt.ErrTokenSignatureInvalid):
		if tok == nil || tok.Method == nil || !slices.Contains(v.algs, tok.Method.Alg()) {
			return reasonBadAlgorithm
		}
		return reasonBadSignature
	case errors.Is(err, gojwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, gojwt.ErrTokenNotValidYet), errors.Is(err, gojwt.ErrTokenUsedBeforeIssued):
		return reasonNotYetValid
	case errors.Is(err, gojwt.ErrTokenInvalidIssuer):
		return reasonBadIssuer
	case errors.Is(err, gojwt.ErrTokenInvalidAudience):
		return reasonBadAudience
	case errors.Is(err, gojwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["exp"]; v.requireExp && !ok {
			return reasonNoExp
		}
		if iss, _ := claims["iss"].(string); v.issuer != "" && iss == "" {
			return reasonBadIssuer
		}
		return reasonBadAudience
	}
	// A claim of the wrong type (an exp that is a string, an aud that is
	// a number).
	return reasonMalformed
}

// claimText formats a claim for a header: strings as they are, numbers
// and booleans in JSON form, anything else as JSON. It refuses missing
// claims and values a header cannot carry (control characters).
func claimText(v any) (string, bool) {
	var s string
	switch c := v.(type) {
	case nil:
		return "", false
	case string:
		s = c
	case float64:
		s = strconv.FormatFloat(c, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(c)
	case json.Number:
		s = c.String()
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	if len(s) > maxTokenBytes {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// rejection is the prepared answer for one reason; the proxy only reads
// reply headers and bodies.
type rejection struct {
	status  int
	headers [][2]string
	body    []byte
}

var rejections = func() map[string]rejection {
	descriptions := map[string]string{
		reasonMalformed:    "the token is malformed",
		reasonBadSignature: "the token signature is invalid",
		reasonExpired:      "the token has expired",
		reasonNotYetValid:  "the token is not valid yet",
		reasonBadIssuer:    "the token issuer is not accepted",
		reasonBadAudience:  "the token audience is not accepted",
		reasonBadAlgorithm: "the token algorithm is not accepted",
		reasonUnknownKey:   "the token signing key is unknown",
		reasonNoExp:        "the token has no expiration time",
		reasonCrit:         "the token has critical header parameters that are not supported",
	}
	m := map[string]rejection{}
	body := func(reason string) []byte {
		return []byte(`{"error":"unauthorized","reason":"` + reason + `"}` + "\n")
	}
	m[reasonMissing] = rejection{
		status:  401,
		headers: [][2]string{{"WWW-Authenticate", `Bearer realm="rustygate"`}, {"Content-Type", "application/json"}},
		body:    body(reasonMissing),
	}
	for reason, desc := range descriptions {
		m[reason] = rejection{
			status:  401,
			headers: [][2]string{{"WWW-Authenticate", `Bearer error="invalid_token", error_description="` + desc + `"`}, {"Content-Type", "application/json"}},
			body:    body(reason),
		}
	}
	// RFC 6750 3.1: more than one method of sending a token is an
	// invalid request (400), not an invalid token.
	m[reasonMultipleAuth] = rejection{
		status:  400,
		headers: [][2]string{{"WWW-Authenticate", `Bearer error="invalid_request", error_description="more than one Authorization header"`}, {"Content-Type", "application/json"}},
		body:    []byte(`{"error":"bad_request","reason":"` + reasonMultipleAuth + `"}` + "\n"),
	}
	return m
}()

func (v *Verifier) reject(client netip.Addr, reason string) *middleware.Reply {
	v.rep.Rejected("jwt", v.route, reason, client)
	rj := rejections[reason]
	return &middleware.Reply{Status: rj.status, Headers: rj.headers, Body: rj.body}
}
