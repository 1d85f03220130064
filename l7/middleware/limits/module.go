package limits

import (
	"errors"
	"strings"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

func init() {
	middleware.Register(middleware.Module{
		Name:       "limits",
		Order:      15,
		Rejections: middleware.RejectionMetric{Name: "rustygate_limits_rejected_total", Help: "Requests refused by the limits middleware (413: a body over max_request_body declared up front), by route."},
		Settings:   func() any { return &Settings{ServerHeader: "keep", ViaPseudonym: "rustygate"} },
		New:        build,
	})
}

// Settings are the keys of a limits entry.
type Settings struct {
	// MaxRequestBody bounds the request body (0: no limit).
	MaxRequestBody Size `yaml:"max_request_body"`
	// ServerHeader is keep, remove, or the Server value to send.
	ServerHeader string `yaml:"server_header"`
	// Via adds a Via to responses, naming ViaPseudonym.
	Via          bool   `yaml:"via"`
	ViaPseudonym string `yaml:"via_pseudonym"`
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	if s.MaxRequestBody < 0 {
		c.Errorf("max_request_body", "must not be negative")
	}
	switch v := s.ServerHeader; {
	case v == "":
		c.Errorf("server_header", "empty value (want keep, remove, or the value to send)")
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
		c.Errorf("server_header", "control character in %q", v)
	}
	if !config.IsToken(s.ViaPseudonym) {
		c.Errorf("via_pseudonym", "invalid pseudonym %q (want a token such as rustygate or edge-1)", s.ViaPseudonym)
	}
	if c.Written("via_pseudonym") && !s.Via {
		c.Errorf("via_pseudonym", "via_pseudonym without via: true sends no Via")
	}
}

// build builds the handler; it runs in the request phase and never
// waits.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, errors.New("limits: built without its settings")
	}
	h := New(s, b.Route, b.Reporter)
	return middleware.Instance{Handler: h, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
