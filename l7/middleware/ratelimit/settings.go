package ratelimit

import (
	"fmt"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
)

// Order is the place of rate_limit in a route's chain; a limit keyed on
// a JWT claim runs at ClaimOrder instead, after jwt, which provides the
// claims.
const (
	Order      = 20
	ClaimOrder = 35
)

// Defaults and limits of the settings.
const (
	defaultWindow  = config.Duration(60 * time.Second)
	defaultKey     = "ip"
	defaultMaxKeys = 1000000
	maxLimit       = 1000000000
	maxMaxKeys     = 100000000
)

// Settings are the keys of a `name: rate_limit` entry.
type Settings struct {
	// Limit is the number of requests a key may send per Window.
	Limit  int             `yaml:"limit"`
	Window config.Duration `yaml:"window"`
	// Burst is how many requests may come at once. Default: Limit.
	Burst int `yaml:"burst"`
	// Key is "ip" (default), "header:NAME" or "jwt:CLAIM".
	Key string `yaml:"key"`
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxKeys bounds the keys tracked at once. Default 1000000.
	MaxKeys int `yaml:"max_keys"`
	// Scope is "local" (default, also when empty: each instance counts on
	// its own) or
	// "cluster" (the instances of the cluster section count together in
	// Redis).
	Scope string `yaml:"scope"`
	// OnError is what a cluster scope does while Redis fails or is
	// slower than cluster.redis.timeout: "local" (default, also when
	// empty: this node's
	// own limiter, the limit divided by the live nodes), "allow" or
	// "deny" (503).
	OnError string `yaml:"on_error"`
}

// Values of scope and on_error.
const (
	ScopeLocal   = "local"
	ScopeCluster = "cluster"
	OnErrorLocal = "local"
	OnErrorAllow = "allow"
	OnErrorDeny  = "deny"
)

// defaults returns the settings of an entry that writes no key.
func defaults() any {
	return &Settings{Window: defaultWindow, Key: defaultKey, MaxKeys: defaultMaxKeys}
}

// Resolve sets the burst of an entry that has none to its limit.
func (s *Settings) Resolve() {
	if s.Burst == 0 && s.Limit > 0 {
		s.Burst = s.Limit
	}
}

// ChainOrder implements config.ChainOrderer: a limit keyed on a claim
// runs after jwt.
func (s *Settings) ChainOrder(kindOrder int) int {
	if strings.HasPrefix(s.Key, "jwt:") {
		return ClaimOrder
	}
	return kindOrder
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	if c.Written("limit") && (s.Limit < 1 || s.Limit > maxLimit) {
		c.Errorf("limit", "must be between 1 and %d (got %d)", maxLimit, s.Limit)
	} else if c.Enabled() && s.Limit == 0 {
		c.Errorf("limit", "is required")
	}
	if s.Window <= 0 {
		c.Errorf("window", "must be greater than 0 (got %s)", s.Window)
	}
	// Resolve set a burst of 0 to the limit, which is checked above.
	if s.Burst < 0 || s.Burst > maxLimit && s.Burst != s.Limit {
		c.Errorf("burst", "must be between 0 (same as limit) and %d (got %d)", maxLimit, s.Burst)
	}
	if msg := checkKey(s.Key); msg != "" {
		c.Errorf("key", "%s", msg)
	}
	for k, tp := range s.TrustedProxies {
		if !config.ValidIPOrPrefix(tp) {
			c.Errorf(fmt.Sprintf("trusted_proxies[%d]", k), "invalid trusted proxy %q (want an IP address or a CIDR such as 10.0.0.0/8)", tp)
		}
	}
	if s.Scope != "" && s.Scope != ScopeLocal && s.Scope != ScopeCluster {
		c.Errorf("scope", "unknown scope %q (supported: local, cluster)", s.Scope)
	}
	switch s.OnError {
	case "", OnErrorLocal, OnErrorAllow, OnErrorDeny:
	default:
		c.Errorf("on_error", "unknown policy %q (supported: local, allow, deny)", s.OnError)
	}
	if s.MaxKeys < 1 || s.MaxKeys > maxMaxKeys {
		c.Errorf("max_keys", "must be between 1 and %d (got %d)", maxMaxKeys, s.MaxKeys)
	}
}

// checkKey checks a rate limit key: ip, header:NAME or jwt:CLAIM.
func checkKey(key string) string {
	switch {
	case key == "ip":
		return ""
	case key == "":
		return "is required"
	case strings.HasPrefix(key, "header:"):
		if name := key[len("header:"):]; !config.IsToken(name) {
			return fmt.Sprintf("invalid header name %q in key %q", name, key)
		}
		return ""
	case strings.HasPrefix(key, "jwt:"):
		if claim := key[len("jwt:"):]; claim == "" || strings.ContainsFunc(claim, config.IsSpaceOrControl) {
			return fmt.Sprintf("invalid claim name %q in key %q", claim, key)
		}
		return ""
	}
	return fmt.Sprintf("invalid key %q (want ip, header:NAME or jwt:CLAIM)", key)
}
