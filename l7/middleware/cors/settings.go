package cors

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
)

// maxMaxAge is the longest max_age accepted.
const maxMaxAge = config.Duration(24 * time.Hour)

// defaultMethods are the methods allowed when allow_methods is not set.
var defaultMethods = []string{"GET", "HEAD", "POST"}

// Settings are the keys of a `name: cors` entry.
type Settings struct {
	// AllowOrigins are the origins whose pages may read the responses:
	// "*", scheme://host[:port], or a pattern scheme://*.suffix.
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowMethods answer preflights. Default GET, HEAD, POST.
	AllowMethods []string `yaml:"allow_methods"`
	// AllowHeaders are the request headers a preflight may ask for ("*":
	// any).
	AllowHeaders []string `yaml:"allow_headers"`
	// ExposeHeaders are the response headers the page may read.
	ExposeHeaders []string `yaml:"expose_headers"`
	// AllowCredentials lets the page send cookies and read the answers.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long a browser may cache a preflight answer.
	MaxAge config.Duration `yaml:"max_age"`
}

// defaults returns the settings of an entry that writes no key.
func defaults() any {
	return &Settings{AllowMethods: slices.Clone(defaultMethods)}
}

// Resolve puts values in canonical form: origins lower-cased, methods
// upper-cased.
func (s *Settings) Resolve() {
	// Only what changes is written: resolving settings already in
	// canonical form is a read.
	for k, o := range s.AllowOrigins {
		if l := config.ASCIILower(o); l != o {
			s.AllowOrigins[k] = l
		}
	}
	for k, v := range s.AllowMethods {
		if u := config.ASCIIUpper(v); u != v {
			s.AllowMethods[k] = u
		}
	}
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	for k, o := range s.AllowOrigins {
		switch {
		case o == "*":
			if len(s.AllowOrigins) > 1 {
				c.Errorf(fmt.Sprintf("allow_origins[%d]", k), `"*" allows every origin; list it alone`)
			}
		case checkOrigin(o) != "":
			c.Errorf(fmt.Sprintf("allow_origins[%d]", k), "%s", checkOrigin(o))
		}
	}
	for k, v := range s.AllowMethods {
		if !config.IsToken(v) {
			c.Errorf(fmt.Sprintf("allow_methods[%d]", k), "invalid method %q", v)
		}
	}
	for k, h := range s.AllowHeaders {
		if h != "*" && !config.IsToken(h) {
			c.Errorf(fmt.Sprintf("allow_headers[%d]", k), "invalid header name %q", h)
		}
	}
	for k, h := range s.ExposeHeaders {
		if !config.IsToken(h) {
			c.Errorf(fmt.Sprintf("expose_headers[%d]", k), "invalid header name %q", h)
		}
	}
	switch d := s.MaxAge; {
	case d > maxMaxAge:
		c.Errorf("max_age", "must be at most %s (got %s)", maxMaxAge, d)
	case d.D()%time.Second != 0:
		c.Errorf("max_age", "must be a whole number of seconds (got %s)", d)
	}
	if s.AllowCredentials && slices.Contains(s.AllowOrigins, "*") {
		c.Errorf("allow_credentials", `cannot be true when allow_origins is "*" (list the origins instead)`)
	}
	if c.Enabled() && len(s.AllowOrigins) == 0 {
		c.Errorf("allow_origins", "is required")
	}
}

// checkOrigin checks a CORS origin: scheme://host[:port], where the host
// may start with a "*." wildcard (https://*.example.com).
func checkOrigin(o string) string {
	bad := fmt.Sprintf("invalid origin %q (want \"*\", scheme://host[:port] or a wildcard such as https://*.example.com)", o)
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || !isScheme(scheme) || rest == "" {
		return bad
	}
	host := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host = rest[:i]
		if _, ok := config.ParsePort(rest[i+1:]); !ok {
			return bad
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return ""
		}
		return bad
	}
	if config.ValidIP(host) && !strings.Contains(host, ":") {
		return ""
	}
	if strings.Contains(host, "*") && !strings.HasPrefix(host, "*.") || !config.ValidHostname(host, true) {
		return bad
	}
	return ""
}

// isScheme reports whether s is a URL scheme (RFC 3986).
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		digit := '0' <= c && c <= '9'
		if !(alpha || i > 0 && (digit || strings.IndexByte("+-.", c) >= 0)) {
			return false
		}
	}
	return s != ""
}
