package jwt

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
)

// Order is the place of jwt in a route's chain.
const Order = 30

// Defaults and limits of the settings.
const (
	defaultLeeway         = config.Duration(30 * time.Second)
	defaultJWKSRefresh    = config.Duration(time.Hour)
	defaultJWKSMinRefetch = config.Duration(5 * time.Minute)
	maxLeeway             = config.Duration(5 * time.Minute)
	defaultCacheSize      = 10000
	defaultCacheTTL       = config.Duration(5 * time.Minute)
	maxCacheSize          = 1 << 20 // about 1 KiB per entry with its claims
	minJWKSInterval       = config.Duration(time.Second)
)

var (
	// algorithms are the accepted values of algorithms.
	algorithms = []string{
		"HS256", "HS384", "HS512",
		"RS256", "RS384", "RS512",
		"PS256", "PS384", "PS512",
		"ES256", "ES384", "ES512",
		"EdDSA",
	}

	// noClaimHeaders are request headers a claim may not set: they frame
	// the request or the connection.
	noClaimHeaders = []string{"host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)

// Settings are the keys of a `name: jwt` entry.
type Settings struct {
	// Algorithms accepted. Default: HS256 with a secret; RS256 and ES256
	// with public keys or a JWKS; both with both.
	Algorithms []string `yaml:"algorithms"`
	// Secret or SecretFile is the HMAC secret (at least 32 bytes).
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// PublicKeyFile holds PEM public keys.
	PublicKeyFile string `yaml:"public_key_file"`
	// JWKSURL is fetched every JWKSRefresh, and at most every
	// JWKSMinRefetch on an unknown kid.
	JWKSURL        string          `yaml:"jwks_url"`
	JWKSRefresh    config.Duration `yaml:"jwks_refresh"`
	JWKSMinRefetch config.Duration `yaml:"jwks_min_refetch"`
	// Issuer and Audience, when set, must match the token's.
	Issuer   string   `yaml:"issuer"`
	Audience []string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway config.Duration `yaml:"leeway"`
	// ClaimsToHeaders copies claims onto request headers.
	ClaimsToHeaders map[string]string `yaml:"claims_to_headers"`
	// ForwardAuthorization keeps the Authorization header (nil: true).
	ForwardAuthorization *bool `yaml:"forward_authorization"`
	// RequireExp refuses tokens without exp (nil: true).
	RequireExp *bool `yaml:"require_exp"`
	// CacheSize bounds the verified tokens kept (0: none).
	CacheSize int `yaml:"cache_size"`
	// CacheTTL bounds how long a verified token is reused; it is never
	// reused past its exp.
	CacheTTL config.Duration `yaml:"cache_ttl"`
}

// defaults returns the settings of an entry that writes no key.
func defaults() any {
	yes := func() *bool { b := true; return &b }
	return &Settings{
		Leeway: defaultLeeway, JWKSRefresh: defaultJWKSRefresh, JWKSMinRefetch: defaultJWKSMinRefetch,
		ForwardAuthorization: yes(), RequireExp: yes(),
		CacheSize: defaultCacheSize, CacheTTL: defaultCacheTTL,
	}
}

// IsHMAC reports whether alg is one of the HS* algorithms, which verify
// with a shared secret; every other algorithm uses a public key.
func IsHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// DefaultAlgorithms returns the algorithms an entry accepts when it
// lists none: HS256 when it has a secret, RS256 and ES256 when it has a
// public key file or a JWKS URL.
func DefaultAlgorithms(s *Settings) []string {
	var algs []string
	if s.Secret != "" || s.SecretFile != "" {
		algs = append(algs, "HS256")
	}
	if s.PublicKeyFile != "" || s.JWKSURL != "" {
		algs = append(algs, "RS256", "ES256")
	}
	return algs
}

// Resolve sets the default algorithms of an entry that lists none.
func (s *Settings) Resolve() {
	if len(s.Algorithms) == 0 {
		s.Algorithms = DefaultAlgorithms(s)
	}
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	s.checkFields(c)
	s.checkKeys(c)
	if !c.Enabled() {
		return
	}
	if s.Secret == "" && s.SecretFile == "" && s.PublicKeyFile == "" && s.JWKSURL == "" {
		c.Errorf("", "one of secret, secret_file, public_key_file or jwks_url is required")
	}
	if s.JWKSURL != "" {
		for _, f := range []struct {
			key string
			d   config.Duration
		}{{"jwks_refresh", s.JWKSRefresh}, {"jwks_min_refetch", s.JWKSMinRefetch}} {
			if !c.Written(f.key) && f.d < minJWKSInterval {
				c.Errorf(f.key, "must be at least %s (got %s)", minJWKSInterval, f.d)
			}
		}
	}
}

// checkFields checks each field on its own.
func (s *Settings) checkFields(c *config.SettingsCheck) {
	for k, a := range s.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			c.Errorf(fmt.Sprintf("algorithms[%d]", k), `"none" is never allowed`)
		case !slices.Contains(algorithms, a):
			c.Errorf(fmt.Sprintf("algorithms[%d]", k), "unknown algorithm %q (supported: %s)", a, strings.Join(algorithms, ", "))
		}
	}
	if s.Secret != "" && len(s.Secret) < minSecretBytes {
		// The value is never printed.
		c.Errorf("secret", "must be at least %d bytes (got %d)", minSecretBytes, len(s.Secret))
	}
	if s.JWKSURL != "" {
		if msg := checkJWKSURL(s.JWKSURL); msg != "" {
			c.Errorf("jwks_url", "%s", msg)
		}
	}
	for _, f := range []struct {
		key string
		d   config.Duration
	}{{"jwks_refresh", s.JWKSRefresh}, {"jwks_min_refetch", s.JWKSMinRefetch}} {
		if c.Written(f.key) && f.d < minJWKSInterval {
			c.Errorf(f.key, "must be at least %s (got %s)", minJWKSInterval, f.d)
		}
	}
	if s.CacheSize < 0 || s.CacheSize > maxCacheSize {
		c.Errorf("cache_size", "must be between 0 and %d (got %d)", maxCacheSize, s.CacheSize)
	}
	if s.CacheTTL < 0 {
		c.Errorf("cache_ttl", "must not be negative (got %s)", s.CacheTTL)
	}
	if s.Leeway > maxLeeway {
		c.Errorf("leeway", "must be at most %s (got %s)", maxLeeway, s.Leeway)
	}
	if strings.ContainsFunc(s.Issuer, config.IsControl) {
		c.Errorf("issuer", "must not contain control characters")
	}
	for k, a := range s.Audience {
		if a == "" || strings.ContainsFunc(a, config.IsControl) {
			c.Errorf(fmt.Sprintf("audience[%d]", k), "must be a non-empty string without control characters")
		}
	}
	claims := make([]string, 0, len(s.ClaimsToHeaders))
	for claim := range s.ClaimsToHeaders {
		claims = append(claims, claim)
	}
	slices.Sort(claims)
	for _, claim := range claims {
		h := s.ClaimsToHeaders[claim]
		switch {
		case claim == "" || strings.ContainsFunc(claim, config.IsControl):
			c.Errorf("claims_to_headers", "invalid claim name %q", claim)
		case !config.IsToken(h):
			c.Errorf("claims_to_headers."+claim, "invalid header name %q", h)
		case slices.Contains(noClaimHeaders, config.ASCIILower(h)):
			c.Errorf("claims_to_headers."+claim, "a claim cannot set the %s header", h)
		}
	}
}

// checkKeys checks that the algorithms and the keys fit each other.
func (s *Settings) checkKeys(c *config.SettingsCheck) {
	hasSecret := s.Secret != "" || s.SecretFile != ""
	hasKeys := s.PublicKeyFile != "" || s.JWKSURL != ""
	if s.Secret != "" && s.SecretFile != "" {
		c.Errorf("secret_file", "set only one of secret and secret_file")
	}
	anyHMAC, anyPublic := false, false
	for k, a := range s.Algorithms {
		switch {
		case !slices.Contains(algorithms, a):
		case IsHMAC(a):
			anyHMAC = true
			if !hasSecret && hasKeys {
				c.Errorf(fmt.Sprintf("algorithms[%d]", k), "%s needs secret or secret_file (a public key is never used as an HMAC secret)", a)
			}
		default:
			anyPublic = true
			if !hasKeys && hasSecret {
				c.Errorf(fmt.Sprintf("algorithms[%d]", k), "%s needs public_key_file or jwks_url", a)
			}
		}
	}
	if hasSecret && !anyHMAC {
		field := "secret"
		if s.Secret == "" {
			field = "secret_file"
		}
		c.Errorf(field, "no HS256, HS384 or HS512 in algorithms uses it")
	}
	if hasKeys && !anyPublic {
		field := "jwks_url"
		if s.JWKSURL == "" {
			field = "public_key_file"
		}
		c.Errorf(field, "no RS, PS, ES or EdDSA algorithm in algorithms uses it")
	}
}

// checkJWKSURL checks a JWKS URL: http or https, with a host.
func checkJWKSURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "":
		return fmt.Sprintf("invalid URL %q (want http(s)://host[:port]/path)", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("unsupported scheme %q in %q (supported: http, https)", u.Scheme, raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("missing host in %q", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Sprintf("a fragment is not allowed in %q", raw)
	}
	return ""
}
