package mirror

import (
	"fmt"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/outbound"
)

// Name is the kind's name in the configuration.
const Name = "mirror"

func init() {
	middleware.Register(middleware.Module{
		Name:       Name,
		Order:      80,
		Rejections: middleware.RejectionMetric{Name: "rustygate_mirror_requests_total", Help: "Copies of requests for the mirror backend, by route and result in reason: sent, failed, dropped (max_in_flight reached), skipped (body not copied).", ByReason: true},
		Settings:   func() any { return defaults() },
		New:        build,
	})
}

// Settings are the keys of a mirror entry.
type Settings struct {
	// Backend is the mirror's URL: scheme and authority.
	Backend string `yaml:"backend"`
	// Percentage of the requests mirrored, 0 to 100.
	Percentage float64 `yaml:"percentage"`
	// MaxInFlight bounds the copies being sent.
	MaxInFlight int `yaml:"max_in_flight"`
	// Timeout bounds one copy, connecting included.
	Timeout config.Duration `yaml:"timeout"`
	// MaxBody is the largest request body copied.
	MaxBody int `yaml:"max_body"`
	// KeepHost sends the client's Host instead of the mirror's.
	KeepHost bool `yaml:"keep_host"`
	// TLS configures TLS to an https:// backend.
	TLS *config.BackendTLS `yaml:"tls"`
}

func defaults() *Settings {
	return &Settings{Percentage: 100, MaxInFlight: 64, Timeout: config.Duration(5 * time.Second), MaxBody: 64 << 10}
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	outbound.CheckURL(c, "backend", s.Backend, s.TLS)
	if u, err := outbound.ParseURL(s.Backend); err == nil && (u.Path != "" && u.Path != "/" || u.RawQuery != "") {
		c.Errorf("backend", "%q: a mirror backend has no path or query (the copy keeps the request's)", s.Backend)
	}
	outbound.CheckTLS(c, s.TLS)
	if !(s.Percentage >= 0 && s.Percentage <= 100) {
		c.Errorf("percentage", "must be between 0 and 100 (got %v)", s.Percentage)
	}
	if s.MaxInFlight < 1 {
		c.Errorf("max_in_flight", "must be at least 1 (got %d)", s.MaxInFlight)
	}
	if s.Timeout <= 0 {
		c.Errorf("timeout", "must be greater than 0 (got %s)", s.Timeout)
	}
	if s.MaxBody < 0 || s.MaxBody > 16<<20 {
		c.Errorf("max_body", "must be between 0 and %d (got %d)", 16<<20, s.MaxBody)
	}
}

// build makes the policy of one route. It never waits (copies are sent
// from their own goroutines).
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("mirror: settings of type %T", b.Settings)
	}
	m, err := New(*s, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: m, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
