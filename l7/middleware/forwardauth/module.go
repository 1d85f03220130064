package forwardauth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/outbound"
)

// Name is the kind's name in the configuration.
const Name = "forward_auth"

func init() {
	middleware.Register(middleware.Module{
		Name:       Name,
		Order:      40,
		Rejections: middleware.RejectionMetric{Name: "rustygate_forward_auth_rejected_total", Help: "Requests refused by forward_auth, by route and reason (denied by the auth service, or error: no usable answer).", ByReason: true},
		Settings:   func() any { return defaults() },
		New:        build,
	})
}

// Settings are the keys of a forward_auth entry.
type Settings struct {
	// Address is the auth service's URL.
	Address string `yaml:"address"`
	// Method is the method of the calls.
	Method string `yaml:"method"`
	// RequestHeaders, when set, are the only client headers sent.
	RequestHeaders []string `yaml:"request_headers"`
	// CopyHeaders are copied from a 2xx answer onto the request.
	CopyHeaders []string `yaml:"copy_headers"`
	// Timeout bounds a call, connecting included.
	Timeout config.Duration `yaml:"timeout"`
	// OnError is the status sent when the service gives no usable answer.
	OnError int `yaml:"on_error"`
	// MaxResponseBody bounds the body of a refusal passed to the client.
	MaxResponseBody int `yaml:"max_response_body"`
	// MaxConns bounds the connections to the service.
	MaxConns int `yaml:"max_conns"`
	// TLS configures TLS to an https:// address.
	TLS *config.BackendTLS `yaml:"tls"`
}

func defaults() *Settings {
	return &Settings{Method: http.MethodGet, Timeout: config.Duration(5 * time.Second), OnError: 503, MaxResponseBody: 64 << 10, MaxConns: 256}
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	outbound.CheckURL(c, "address", s.Address, s.TLS)
	outbound.CheckTLS(c, s.TLS)
	if !config.IsToken(s.Method) {
		c.Errorf("method", "invalid method %q", s.Method)
	}
	for i, h := range s.RequestHeaders {
		if !config.IsToken(h) {
			c.Errorf(fmt.Sprintf("request_headers[%d]", i), "invalid header name %q", h)
		}
	}
	for i, h := range s.CopyHeaders {
		if !config.IsToken(h) || outbound.NotCopied(strings.ToLower(h)) {
			c.Errorf(fmt.Sprintf("copy_headers[%d]", i), "invalid header name %q", h)
		}
	}
	if s.Timeout <= 0 {
		c.Errorf("timeout", "must be greater than 0 (got %s)", s.Timeout)
	}
	if s.OnError != 502 && s.OnError != 503 {
		c.Errorf("on_error", "must be 502 or 503 (got %d)", s.OnError)
	}
	if s.MaxResponseBody < 0 || s.MaxResponseBody > 16<<20 {
		c.Errorf("max_response_body", "must be between 0 and %d (got %d)", 16<<20, s.MaxResponseBody)
	}
	if s.MaxConns < 0 {
		c.Errorf("max_conns", "must not be negative (got %d)", s.MaxConns)
	}
}

// build makes the policy of one route: it calls a service, so it may
// block.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("forward_auth: settings of type %T", b.Settings)
	}
	a, err := New(*s, b.Route, b.Reporter, b.Logger)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: a, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest, MayBlock: true}}, nil
}
