package headers

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

func init() {
	middleware.Register(middleware.Module{
		Name:     "headers",
		Order:    60,
		Settings: func() any { return &Settings{} },
		New:      build,
	})
}

// Settings are the keys of a headers entry.
type Settings struct {
	// TrustedProxies are the peers whose X-Forwarded-For gives
	// {client_ip} (as for rate_limit).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Request: operations on the request forwarded to the backend.
	Request Ops `yaml:"request"`
	// Response: operations on the response the client gets.
	Response Ops `yaml:"response"`
}

// Ops are the operations on one side. Set and Add map a header name to a
// value template.
type Ops struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// refused are the headers no operation may touch: framing and hop-by-hop
// headers, and those the proxy writes itself.
var refused = []string{
	"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer",
	"keep-alive", "proxy-connection", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
	"via", "x-request-id",
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	for i, p := range s.TrustedProxies {
		if _, err := clientip.ParsePrefix(p); err != nil {
			c.Errorf(fmt.Sprintf("trusted_proxies[%d]", i), "invalid trusted proxy %q (want an IP address or a CIDR such as 10.0.0.0/8)", p)
		}
	}
	s.Request.validate(c, "request")
	s.Response.validate(c, "response")
}

func (o *Ops) validate(c *config.SettingsCheck, side string) {
	for _, op := range []struct {
		key string
		m   map[string]string
	}{{"set", o.Set}, {"add", o.Add}} {
		seen := map[string]string{}
		for _, name := range sortedKeys(op.m) {
			field := side + "." + op.key + "." + name
			if err := checkName(name); err != nil {
				c.Errorf(field, "%v", err)
				continue
			}
			if other, dup := seen[strings.ToLower(name)]; dup {
				c.Errorf(field, "header %q is also written as %q", name, other)
			}
			seen[strings.ToLower(name)] = name
			if _, err := parseTemplate(op.m[name]); err != nil {
				c.Errorf(field, "%v", err)
			}
		}
	}
	for i, name := range o.Remove {
		if err := checkName(name); err != nil {
			c.Errorf(fmt.Sprintf("%s.remove[%d]", side, i), "%v", err)
		}
	}
}

func checkName(name string) error {
	if !validName(name) {
		return fmt.Errorf("invalid header name %q", name)
	}
	if slices.Contains(refused, strings.ToLower(name)) {
		return fmt.Errorf("header %s is managed by the proxy and cannot be changed here", name)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// build compiles the templates once; the handler runs in the request
// phase and never waits.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, errors.New("headers: built without its settings")
	}
	h, err := New(s)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: h, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
