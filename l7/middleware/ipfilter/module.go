package ipfilter

import (
	"fmt"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// Name is the kind's name in the configuration.
const Name = "ip_filter"

func init() {
	middleware.Register(middleware.Module{
		Name:       Name,
		Order:      0,
		Rejections: middleware.RejectionMetric{Name: "rustygate_ip_filter_rejected_total", Help: "Requests refused by ip_filter, by route and reason (deny, not_allowed).", ByReason: true},
		Settings:   func() any { return &Settings{} },
		New:        build,
	})
}

// Settings are the keys of an ip_filter entry.
type Settings struct {
	// Allow lists the addresses (IPs or CIDRs) allowed; empty: all that
	// Deny does not refuse.
	Allow []string `yaml:"allow"`
	// Deny lists the addresses refused, whatever Allow says.
	Deny []string `yaml:"deny"`
	// TrustedProxies are the peers whose X-Forwarded-For names the
	// client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow", s.Allow}, {"deny", s.Deny}, {"trusted_proxies", s.TrustedProxies}} {
		for i, a := range l.list {
			if _, err := clientip.ParsePrefix(a); err != nil {
				c.Errorf(fmt.Sprintf("%s[%d]", l.key, i), "invalid address %q (want an IP address or a CIDR such as 10.0.0.0/8)", a)
			}
		}
	}
	if c.Enabled() && len(s.Allow) == 0 && len(s.Deny) == 0 {
		c.Errorf("", "allow or deny is required (an ip_filter without either lets everyone through)")
	}
}

// build makes the filter of one route. It never waits: a lookup is a
// binary search in memory.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("ip_filter: settings of type %T", b.Settings)
	}
	f, err := New(*s, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: f, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
