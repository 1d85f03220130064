package jwt

import (
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
)

func init() {
	middleware.Register(middleware.Module{
		Name:       "jwt",
		Order:      Order,
		Settings:   defaults,
		Rejections: middleware.RejectionMetric{Name: "rustygate_jwt_rejected_total", Help: "Requests rejected by JWT validation, by route and reason.", ByReason: true},
		New:        buildModule,
	})
}

// buildModule declares the verifier blocking when it has a JWKS URL: a token
// with an unknown kid waits for a fetch of the key set.
func buildModule(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("jwt: settings of type %T", b.Settings)
	}
	v, err := NewVerifier(*s, b.Route, b.Reporter, Options{Logger: b.Logger})
	if err != nil {
		return middleware.Instance{}, err
	}
	caps := middleware.Capabilities{Phases: middleware.PhaseRequest, MayBlock: v.jwks != nil}
	return middleware.Instance{Handler: v, Caps: caps}, nil
}
