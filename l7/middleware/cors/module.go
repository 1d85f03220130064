package cors

import "github.com/rustygate/rustygate/l7/middleware"

func init() {
	middleware.Register(middleware.Module{
		Name:       "cors",
		Rejections: middleware.RejectionMetric{Name: "rustygate_cors_rejected_total", Help: "Requests rejected by the CORS policy, by route."},
		New:        buildModule,
	})
}

// buildModule answers preflights itself and adds headers to the request's
// response: it runs in the request phase and never waits.
func buildModule(b middleware.Build) (middleware.Instance, error) {
	p, err := NewPolicy(b.Config, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: p, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
