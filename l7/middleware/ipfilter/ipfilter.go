package ipfilter

import (
	"fmt"
	"net/netip"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// Filter is a built ip_filter policy.
type Filter struct {
	route    string
	rep      middleware.Reporter
	proxies  clientip.Proxies
	allow    ranges
	deny     ranges
	hasAllow bool
}

var _ middleware.Handler = (*Filter)(nil)

// New builds a filter from settings.
func New(s Settings, route string, rep middleware.Reporter) (*Filter, error) {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	f := &Filter{route: route, rep: rep, hasAllow: len(s.Allow) > 0}
	var err error
	if f.allow, err = parseRanges(s.Allow); err != nil {
		return nil, fmt.Errorf("ip_filter: allow: %w", err)
	}
	if f.deny, err = parseRanges(s.Deny); err != nil {
		return nil, fmt.Errorf("ip_filter: deny: %w", err)
	}
	if f.proxies, err = clientip.ParseProxies(s.TrustedProxies); err != nil {
		return nil, fmt.Errorf("ip_filter: %w", err)
	}
	return f, nil
}

// Replies of refused requests; the proxy only reads them.
var (
	forbiddenHeaders = [][2]string{{"Content-Type", "application/json"}}
	forbiddenBody    = []byte(`{"error":"forbidden"}` + "\n")
)

// Handle implements middleware.Handler.
func (f *Filter) Handle(r middleware.Request) *middleware.Reply {
	ip := f.proxies.Client(r)
	if f.deny.contains(ip) {
		return f.reject(ip, "deny")
	}
	if f.hasAllow && !f.allow.contains(ip) {
		return f.reject(ip, "not_allowed")
	}
	return nil
}

// Allowed reports whether the filter lets ip through.
func (f *Filter) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	return !f.deny.contains(ip) && (!f.hasAllow || f.allow.contains(ip))
}

func (f *Filter) reject(ip netip.Addr, reason string) *middleware.Reply {
	f.rep.Rejected(Name, f.route, reason, ip)
	return &middleware.Reply{Status: 403, Headers: forbiddenHeaders, Body: forbiddenBody}
}
