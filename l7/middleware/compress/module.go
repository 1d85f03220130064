package compress

import (
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Order is the module's place in a route's chain: after the middlewares
// that answer or rewrite requests and headers (headers at 60), so its
// response phase runs before theirs sees the final head, and before
// mirror and wasm (whose response phase, nearer the backend, sees the
// body uncompressed).
const Order = 70

func init() {
	middleware.Register(middleware.Module{
		Name:     "compress",
		Order:    Order,
		Settings: func() any { return DefaultSettings() },
		New:      build,
	})
}

// build makes a route's compressor. It never answers requests and never
// waits: it runs on the event loops, in the response phase and on the
// response body.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("compress: settings of type %T", b.Settings)
	}
	h, err := newHandler(s)
	if err != nil {
		return middleware.Instance{}, err
	}
	phases := middleware.PhaseRequest | middleware.PhaseResponse | middleware.PhaseResponseBody
	return middleware.Instance{Handler: h, Caps: middleware.Capabilities{Phases: phases}}, nil
}
