package l7

import (
	"net/netip"

	"github.com/rustygate/rustygate/plugins"
)

// Offences receives the L7 events that can get a client banned at a
// lower layer: a rate limit exceeded by a factor, a failed JWT. The
// implementation must be fast and safe for concurrent use: it runs on the
// request path.
type Offences interface {
	// RateLimitExceeded: ip sent over times its limit in the window.
	RateLimitExceeded(ip netip.Addr, over float64)
	// Rejected: a policy refused a request from ip.
	Rejected(policy, reason string, ip netip.Addr)
}

// SetOffences sets where offences go (nil: nowhere). Snapshots built
// afterwards use it.
func (t *Transport) SetOffences(o Offences) { t.offences = o }

// SetPlugins sets the WASM plugin manager snapshots build `wasm` entries
// with (nil: such entries fail to build).
func (t *Transport) SetPlugins(m *plugins.Manager) { t.plugins = m }
