// Package clientip finds the client of a request that may have come
// through proxies: the TCP peer, or, when the peer is a trusted proxy,
// the right-most address of X-Forwarded-For that is not one. Every
// middleware that acts on the client's address (rate_limit, ip_filter)
// uses it, so that they agree on who the client is.
//
// It runs on the request path: Proxies.Client neither allocates nor
// copies the header.
package clientip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Proxies are the trusted proxies: prefixes whose X-Forwarded-For is
// believed.
type Proxies []netip.Prefix

// ParsePrefix parses a CIDR prefix or a single IP address. An
// IPv4-mapped IPv6 prefix is turned into its IPv4 prefix, so that it
// matches the (unmapped) addresses it is compared with.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseProxies parses a trusted_proxies list.
func ParseProxies(list []string) (Proxies, error) {
	var ps Proxies
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid trusted proxy %q", s)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Trusted reports whether a is a trusted proxy.
func (ps Proxies) Trusted(a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client address of r: the peer's, or, when the peer
// is a trusted proxy, the right-most address in X-Forwarded-For that is
// not a trusted proxy (if every address there is trusted, the left-most;
// if one cannot be parsed, the last trusted hop before it).
func (ps Proxies) Client(r middleware.Request) netip.Addr {
	peer := r.PeerIP().Unmap()
	if len(ps) == 0 || !ps.Trusted(peer) {
		return peer
	}
	xff := r.Header("X-Forwarded-For")
	last := peer
	for len(xff) > 0 {
		elem := xff
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			elem, xff = xff[i+1:], xff[:i]
		} else {
			xff = nil
		}
		elem = bytes.Trim(elem, " \t")
		if len(elem) == 0 {
			continue
		}
		a, ok := ParseForwarded(elem)
		if !ok {
			return last
		}
		if !ps.Trusted(a) {
			return a
		}
		last = a
	}
	return last
}

// ParseForwarded parses one X-Forwarded-For element: an IP address,
// optionally with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func ParseForwarded(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if a, ok := parseIPv4(b); ok {
		return a, true
	}
	if b[0] == '[' {
		i := bytes.IndexByte(b, ']')
		if i < 0 {
			return netip.Addr{}, false
		}
		b = b[1:i]
	} else if i := bytes.IndexByte(b, ':'); i >= 0 && bytes.LastIndexByte(b, ':') == i {
		// IPv4 with a port.
		return parseIPv4(b[:i])
	}
	if len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, false
	}
	// The string is only read during the call: on success the address
	// holds no reference to it (zones are refused), and the error that
	// would hold it is dropped.
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseIPv4 parses a dotted-quad IPv4 address without leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part, n, digits := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || part > 3 {
				return netip.Addr{}, false
			}
			ip[part] = byte(n)
			part++
			n, digits = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits == 1 && n == 0) {
			return netip.Addr{}, false
		}
		n = n*10 + int(c-'0')
		digits++
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}
