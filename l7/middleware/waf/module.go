package waf

import (
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
)

func init() {
	middleware.Register(middleware.Module{
		Name:       policyName,
		Order:      Order,
		Settings:   defaults,
		Rejections: middleware.RejectionMetric{Name: "rustygate_waf_rejected_total", Help: "Requests refused by the WAF, by route and reason (blocked, body_too_large, bad_body, response_blocked).", ByReason: true},
		New:        build,
	})
}

// build compiles a route's WAF (the Coraza rule set is shared with every
// entry of the same directives, see compile). A WAF running SecLang
// rules declares MayBlock: an inspection is CPU work of about a
// millisecond (a GET) to tens of milliseconds (a large JSON body), too
// long to hold an event loop whose other connections wait meanwhile, so
// such routes are served by goroutines the Go scheduler spreads over
// every CPU. The regex rules alone cost microseconds (Go's regexp, linear
// time) and run on the event loops.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("waf: settings of type %T", b.Settings)
	}
	m, err := newMetrics(b.Metrics)
	if err != nil {
		return middleware.Instance{}, fmt.Errorf("waf: metrics: %w", err)
	}
	h := &handler{
		route:     b.Route,
		regex:     compileRegexRules(s.RegexRules),
		detect:    s.Mode == ModeDetect,
		maxBody:   s.MaxBodyBytes,
		rejectBig: s.BodyLimitAction == BodyReject,
		response:  s.Response.Enabled && s.usesSecLang(),
		respBody:  s.Response.MaxBodyBytes,
		log:       b.Logger,
		rep:       b.Reporter,
		metrics:   m.forRoute(b.Route),
	}
	for _, r := range h.regex {
		h.regexBody = h.regexBody || r.kind == targetBody
	}
	if s.usesSecLang() {
		if h.waf, err = compile(s); err != nil {
			return middleware.Instance{}, fmt.Errorf("waf: %w", err)
		}
	}
	caps := middleware.Capabilities{Phases: middleware.PhaseRequest, MayBlock: h.waf != nil}
	if h.response {
		caps.Phases |= middleware.PhaseResponse | middleware.PhaseResponseBody
	}
	return middleware.Instance{Handler: h, Caps: caps}, nil
}
