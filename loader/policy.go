package loader

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/rustygate/rustygate/config"
)

// Sizes of the kernel maps that hold configuration; the userspace twin
// enforces the same bounds so that both modes accept the same configs.
const (
	maxPorts     = 1024  // rg_ports
	maxListSize  = 16384 // rg_allow, rg_deny
	maxBans      = 65536 // rg_bans
	defaultBurst = 1
)

// policy is what the limiter enforces, derived from config.Datapath and
// the gateway's listening ports. The kernel maps and the userspace twin
// are both written from it, so the two modes decide alike. A policy is
// immutable once built; Update swaps in a new one.
type policy struct {
	// interval is the time one new connection costs a source; 0 turns the
	// rate limit off.
	interval time.Duration
	// tolerance is how far ahead of now a source's bucket may run: burst
	// intervals.
	tolerance  time.Duration
	ports      map[uint16]bool
	allow      prefixSet
	deny       prefixSet
	maxSources int
	// banTTL is the ban length when Ban is called without one.
	banTTL time.Duration
}

// newPolicy builds the policy. It checks what it uses, so that a
// configuration built in code without config.Validate fails here with a
// message naming the field, instead of misbehaving in the kernel.
func newPolicy(cfg config.Datapath, listenPorts []int) (*policy, error) {
	k := cfg.KernelRateLimit
	p := &policy{ports: make(map[uint16]bool), maxSources: k.MaxSources, banTTL: cfg.Bans.Duration.D()}
	if k.Rate < 0 {
		return nil, fmt.Errorf("datapath.kernel_rate_limit.rate: must not be negative (got %d)", k.Rate)
	}
	if k.Rate > 0 {
		burst := k.Burst
		if burst <= 0 {
			burst = max(k.Rate, defaultBurst)
		}
		p.interval = max(time.Second/time.Duration(k.Rate), 1)
		p.tolerance = time.Duration(burst) * p.interval
	}
	if p.maxSources <= 0 {
		p.maxSources = 65536
	}
	if p.banTTL <= 0 {
		p.banTTL = 10 * time.Minute
	}

	ports := k.Ports
	if ports == nil {
		ports = []string{config.PortsAuto}
	}
	for i, s := range ports {
		if s == config.PortsAuto {
			for _, lp := range listenPorts {
				if lp < 1 || lp > 65535 {
					return nil, fmt.Errorf("listening port %d: want 1-65535", lp)
				}
				p.ports[uint16(lp)] = true
			}
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("datapath.kernel_rate_limit.ports[%d]: invalid port %q (want %q or 1-65535)", i, s, config.PortsAuto)
		}
		p.ports[uint16(n)] = true
	}
	if len(p.ports) > maxPorts {
		return nil, fmt.Errorf("datapath.kernel_rate_limit.ports: at most %d ports (got %d)", maxPorts, len(p.ports))
	}

	var err error
	if p.allow, err = newPrefixSet("datapath.kernel_rate_limit.allow", k.Allow); err != nil {
		return nil, err
	}
	if p.deny, err = newPrefixSet("datapath.kernel_rate_limit.deny", k.Deny); err != nil {
		return nil, err
	}
	return p, nil
}

// guards reports whether the limiter applies to connections to port.
func (p *policy) guards(port uint16) bool { return p.ports[port] }

// prefixSet is a set of CIDRs that answers "does any contain this
// address?" with one map lookup per distinct prefix length, like the
// kernel's LPM trie answers it with one walk.
type prefixSet struct {
	prefixes map[netip.Prefix]bool
	lens4    []int // distinct IPv4 prefix lengths, longest first
	lens6    []int
}

func newPrefixSet(path string, list []string) (prefixSet, error) {
	s := prefixSet{prefixes: make(map[netip.Prefix]bool)}
	for i, raw := range list {
		p, ok := config.ParseCIDR(raw)
		if !ok {
			return prefixSet{}, fmt.Errorf("%s[%d]: invalid CIDR %q", path, i, raw)
		}
		if s.prefixes[p] {
			continue
		}
		s.prefixes[p] = true
		lens := &s.lens6
		if p.Addr().Is4() {
			lens = &s.lens4
		}
		if !slices.Contains(*lens, p.Bits()) {
			*lens = append(*lens, p.Bits())
		}
	}
	if len(s.prefixes) > maxListSize {
		return prefixSet{}, fmt.Errorf("%s: at most %d entries (got %d)", path, maxListSize, len(s.prefixes))
	}
	slices.Sort(s.lens4)
	slices.Reverse(s.lens4)
	slices.Sort(s.lens6)
	slices.Reverse(s.lens6)
	return s, nil
}

// contains reports whether a (unmapped, without zone) is in the set. An
// IPv4 address never matches an IPv6 prefix, nor the other way round.
func (s prefixSet) contains(a netip.Addr) bool {
	lens := s.lens6
	if a.Is4() {
		lens = s.lens4
	}
	for _, bits := range lens {
		p, _ := a.Prefix(bits)
		if s.prefixes[p] {
			return true
		}
	}
	return false
}

// list returns the prefixes, sorted.
func (s prefixSet) list() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.prefixes))
	for p := range s.prefixes {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// sourceAddr normalises an address to the form the limiter keys on: no
// zone, IPv4-mapped IPv6 unmapped.
func sourceAddr(a netip.Addr) netip.Addr { return a.WithZone("").Unmap() }
