package cors

import (
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Order is the place of cors in a route's chain: first of the request
// policies, so that a preflight is answered before any credential is
// asked for.
const Order = 10

func init() {
	middleware.Register(middleware.Module{
		Name:       "cors",
		Order:      Order,
		Settings:   defaults,
		Rejections: middleware.RejectionMetric{Name: "rustygate_cors_rejected_total", Help: "Requests rejected by the CORS policy, by route."},
		New:        buildModule,
	})
}

// buildModule answers preflights itself and adds headers to the request's
// response: it runs in the request phase and never waits.
func buildModule(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("cors: settings of type %T", b.Settings)
	}
	p, err := NewPolicy(*s, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: p, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
