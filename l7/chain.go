package l7

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/observe"
)

// metricsReporter counts policy rejections in the route's metrics and
// passes them on as offences.
type metricsReporter struct {
	metrics  *observe.Metrics
	offences Offences
}

func (r metricsReporter) Rejected(policy, route, reason string, ip netip.Addr) {
	r.metrics.Route(route).Rejected(policy, reason)
	if r.offences != nil {
		r.offences.Rejected(policy, reason, ip)
	}
}

// declareMetrics registers the rejection counters every linked
// middleware module declares (once; later calls do nothing), so that a
// route's series exist from its creation on.
func declareMetrics(metrics *observe.Metrics) error {
	for _, name := range middleware.Names() {
		mod, _ := middleware.Lookup(name)
		if r := mod.Rejections; r.Name != "" {
			spec := observe.Rejections{Name: r.Name, Help: r.Help, ByReason: r.ByReason}
			if err := metrics.DeclareRejections(name, spec); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildChain constructs a route's middlewares from its effective entries,
// each by the module registered under its name. prev is the previous
// snapshot's route of the same name, whose state (rate-limit counters) a
// module may carry over.
func buildChain(entries []config.Middleware, rt *Route, prev *Route, tr *Transport, metrics *observe.Metrics) ([]middleware.Instance, error) {
	b := middleware.Build{
		Route:     rt.Name,
		Reporter:  metricsReporter{metrics, tr.offences},
		Logger:    tr.log,
		Offences:  tr.offences,
		Resources: tr.resources,
	}
	if metrics != nil {
		b.Metrics = metrics.Registry()
	}
	if prev != nil {
		b.Previous = prev.chain
	}
	var chain []middleware.Instance
	for i, m := range entries {
		mod, ok := middleware.Lookup(m.Name)
		if !ok {
			closeChain(chain)
			return nil, fmt.Errorf("middlewares[%d]: middleware %q is not available in this build", i, m.Name)
		}
		b.Config, b.Settings = m, m.Settings
		in, err := mod.New(b)
		if err == nil {
			if err = checkInstance(in); err != nil {
				closeChain([]middleware.Instance{in})
			}
		}
		if err != nil {
			closeChain(chain)
			return nil, fmt.Errorf("middlewares[%d] (%s): %w", i, m.Name, err)
		}
		chain = append(chain, in)
	}
	return chain, nil
}

// checkInstance checks that an instance has the methods its declared
// capabilities need, so that none is silently skipped on the request path.
func checkInstance(in middleware.Instance) error {
	if in.Handler == nil {
		return errors.New("built no handler")
	}
	if in.Caps.Phases&middleware.PhaseResponse != 0 {
		if _, ok := in.Handler.(middleware.ResponseHandler); !ok {
			return fmt.Errorf("declares the response phase, but %T has no response handler", in.Handler)
		}
	}
	if in.Caps.Phases&middleware.PhaseResponseBody != 0 {
		if in.Caps.Phases&middleware.PhaseResponse == 0 {
			return errors.New("declares the response body phase without the response phase")
		}
		if _, ok := in.Handler.(middleware.ResponseBodyFilter); !ok {
			return fmt.Errorf("declares the response body phase, but %T has no body filter", in.Handler)
		}
	}
	return nil
}

// chainMayBlock reports whether a middleware declared that it may wait
// on something other than the request (a WASM plugin, a JWKS fetch):
// such routes do not run on an event loop.
func chainMayBlock(chain []middleware.Instance) bool {
	for _, in := range chain {
		if in.Caps.MayBlock {
			return true
		}
	}
	return false
}

func closeChain(chain []middleware.Instance) {
	for _, in := range chain {
		if c, ok := in.Handler.(middleware.Closer); ok {
			c.Close()
		}
	}
}

// Close releases the snapshot's policies (key-set refreshers and the
// like). Call it once no request uses the snapshot.
func (s *Snapshot) Close() {
	for _, rt := range s.Routes {
		closeChain(rt.chain)
	}
}

// Retire closes s after a grace period long enough for the requests that
// loaded it to finish.
func (s *Snapshot) Retire(grace time.Duration) {
	time.AfterFunc(grace, s.Close)
}
