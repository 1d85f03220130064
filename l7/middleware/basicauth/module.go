package basicauth

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// Name is the kind's name in the configuration.
const Name = "basic_auth"

func init() {
	middleware.Register(middleware.Module{
		Name:       Name,
		Order:      25,
		Rejections: middleware.RejectionMetric{Name: "rustygate_basic_auth_rejected_total", Help: "Requests refused by basic_auth, by route and reason (missing, malformed, invalid).", ByReason: true},
		Settings:   func() any { return defaults() },
		New:        build,
	})
}

// Settings are the keys of a basic_auth entry.
type Settings struct {
	// Users are "name:hash" entries.
	Users []string `yaml:"users"`
	// UsersFile is an htpasswd file of "name:hash" lines ('#' starts a
	// comment line).
	UsersFile string `yaml:"users_file"`
	// Realm is sent in the WWW-Authenticate challenge.
	Realm string `yaml:"realm"`
	// RemoveHeader removes Authorization from the forwarded request.
	RemoveHeader bool `yaml:"remove_header"`
	// UserHeader, when set, carries the authenticated user's name to the
	// backend.
	UserHeader string `yaml:"user_header"`
	// CacheSize bounds the successful verifications kept (0: none).
	CacheSize int `yaml:"cache_size"`
	// CacheTTL is how long a successful verification is reused.
	CacheTTL config.Duration `yaml:"cache_ttl"`
}

func defaults() *Settings {
	return &Settings{Realm: "Restricted", RemoveHeader: true, CacheSize: 1024, CacheTTL: config.Duration(5 * time.Minute)}
}

// maxCacheSize bounds cache_size (about 100 bytes per entry).
const maxCacheSize = 1 << 20

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	for i, u := range s.Users {
		if _, err := parseUser(u); err != nil {
			c.Errorf(fmt.Sprintf("users[%d]", i), "%s", err)
		}
	}
	if s.UsersFile != "" && c.Files() {
		if _, err := readUsersFile(s.UsersFile); err != nil {
			c.Errorf("users_file", "%s", err)
		}
	}
	if c.Enabled() && len(s.Users) == 0 && s.UsersFile == "" {
		c.Errorf("", "users or users_file is required")
	}
	if strings.ContainsAny(s.Realm, "\"\\") || !printable(s.Realm) {
		c.Errorf("realm", "invalid realm %q (printable characters, no quotes or backslashes)", s.Realm)
	}
	if s.UserHeader != "" && !config.IsToken(s.UserHeader) {
		c.Errorf("user_header", "invalid header name %q", s.UserHeader)
	}
	if s.CacheSize < 0 || s.CacheSize > maxCacheSize {
		c.Errorf("cache_size", "must be between 0 and %d (got %d)", maxCacheSize, s.CacheSize)
	}
	if s.CacheTTL < 0 {
		c.Errorf("cache_ttl", "must not be negative (got %s)", s.CacheTTL)
	}
}

// build reads the users (the file again: a reload picks up its changes)
// and makes the policy. See the package comment for why it declares
// MayBlock false.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("basic_auth: settings of type %T", b.Settings)
	}
	a, err := New(*s, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: a, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}

// readUsersFile reads an htpasswd file; errors name the file and line.
func readUsersFile(name string) ([]user, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read users file: %w", err)
	}
	var us []user
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, err := parseUser(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		us = append(us, u)
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("%s: no users", name)
	}
	return us, nil
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
