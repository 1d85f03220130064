package cluster

import (
	"net/netip"
	"time"

	"github.com/rustygate/rustygate/loader"
)

// Datapath applies the cluster's bans to this node's datapath: the
// kernel ban map when the datapath runs in the kernel, else its
// userspace twin.
type Datapath struct{ DP *loader.Datapath }

var _ BanApplier = Datapath{}

// Ban implements BanApplier.
func (d Datapath) Ban(ip netip.Addr, ttl time.Duration) error { return d.DP.Ban(ip, ttl) }

// Unban implements BanApplier.
func (d Datapath) Unban(ip netip.Addr) error { return d.DP.Unban(ip) }

// Banned implements BanApplier.
func (d Datapath) Banned() []netip.Addr {
	bans := d.DP.Bans()
	out := make([]netip.Addr, len(bans))
	for i, b := range bans {
		out[i] = b.IP
	}
	return out
}
