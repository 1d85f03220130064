package ratelimit

import "github.com/rustygate/rustygate/l7/middleware"

func init() {
	middleware.Register(middleware.Module{
		Name:       "rate_limit",
		Rejections: middleware.RejectionMetric{Name: "rustygate_rate_limited_total", Help: "Requests rejected by rate limiting, by route."},
		New:        buildModule,
	})
}

// buildModule keeps the counters of the previous snapshot's limiter of the
// route when its settings did not change, and reports clients that
// exceed their limit as offences. A limiter never waits.
func buildModule(b middleware.Build) (middleware.Instance, error) {
	var opts Options
	if b.Offences != nil {
		opts.OnExceeded = b.Offences.RateLimitExceeded
	}
	var prev *Store
	for _, in := range b.Previous {
		if l, ok := in.Handler.(*Limiter); ok {
			prev = l.Store()
		}
	}
	l, err := NewWithStore(b.Config, b.Route, b.Reporter, opts, prev)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: l, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
