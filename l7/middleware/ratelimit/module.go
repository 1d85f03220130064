package ratelimit

import (
	"fmt"

	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/l7/middleware"
)

func init() {
	middleware.Register(middleware.Module{
		Name:       "rate_limit",
		Order:      Order,
		Settings:   defaults,
		Rejections: middleware.RejectionMetric{Name: "rustygate_rate_limited_total", Help: "Requests rejected by rate limiting, by route."},
		New:        buildModule,
	})
}

// buildModule keeps the counters of the previous snapshot's limiter of the
// route when its settings did not change, and reports clients that
// exceed their limit as offences. A local limiter never waits.
func buildModule(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("rate_limit: settings of type %T", b.Settings)
	}
	var opts Options
	if b.Offences != nil {
		opts.OnExceeded = b.Offences.RateLimitExceeded
	}
	opts.Cluster, _ = b.Resources[cluster.Resource].(*cluster.Client)
	var prev *Store
	for _, in := range b.Previous {
		if l, ok := in.Handler.(*Limiter); ok {
			prev = l.Store()
		}
	}
	l, err := NewWithStore(*s, b.Route, b.Reporter, opts, prev)
	if err != nil {
		return middleware.Instance{}, err
	}
	// A limit counted in Redis waits on the network (at most
	// cluster.redis.timeout): it runs off the event loops.
	return middleware.Instance{Handler: l, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest, MayBlock: l.shared != nil}}, nil
}
