package l7

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/cors"
	"github.com/rustygate/rustygate/l7/middleware/jwt"
	"github.com/rustygate/rustygate/l7/middleware/ratelimit"
	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/plugins"
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

// buildChain constructs a route's policies from its effective middleware
// entries. prev is the previous snapshot's route of the same name, whose
// rate-limit state is carried over when the settings did not change.
func buildChain(entries []config.Middleware, rt *Route, prev *Route, tr *Transport, metrics *observe.Metrics) ([]middleware.Handler, error) {
	rep := metricsReporter{metrics, tr.offences}
	var rlOpts ratelimit.Options
	if tr.offences != nil {
		rlOpts.OnExceeded = tr.offences.RateLimitExceeded
	}
	var chain []middleware.Handler
	for i, m := range entries {
		var h middleware.Handler
		var err error
		switch m.Name {
		case config.MiddlewareCORS:
			h, err = cors.New(m, rt.Name, rep)
		case config.MiddlewareRateLimit:
			var store *ratelimit.Store
			if prev != nil {
				for _, ph := range prev.chain {
					if l, ok := ph.(*ratelimit.Limiter); ok {
						store = l.Store()
					}
				}
			}
			h, err = ratelimit.NewWithStore(m, rt.Name, rep, rlOpts, store)
		case config.MiddlewareJWT:
			h, err = jwt.NewVerifier(m, rt.Name, rep, jwt.Options{Logger: tr.log})
		case config.MiddlewareWASM:
			if tr.plugins == nil {
				err = fmt.Errorf("WASM plugins are not enabled in this process")
			} else {
				h, err = plugins.NewHandler(tr.plugins, m, rt.Name, rep)
			}
		default:
			err = fmt.Errorf("middleware %q is not available in this build", m.Name)
		}
		if err != nil {
			closeChain(chain)
			return nil, fmt.Errorf("middlewares[%d] (%s): %w", i, m.Name, err)
		}
		chain = append(chain, h)
	}
	return chain, nil
}

// chainMayBlock reports whether a policy may wait on something other than
// the request (a WASM plugin, a JWKS fetch): such routes do not run on an
// event loop.
func chainMayBlock(chain []middleware.Handler) bool {
	for _, h := range chain {
		switch v := h.(type) {
		case *plugins.Handler:
			return true
		case interface{ MayBlock() bool }:
			if v.MayBlock() {
				return true
			}
		}
	}
	return false
}

func closeChain(chain []middleware.Handler) {
	for _, h := range chain {
		if c, ok := h.(middleware.Closer); ok {
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
