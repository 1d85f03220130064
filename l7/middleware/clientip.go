package middleware

import (
	"bytes"
	"net/netip"
	"strings"
	"unsafe"
)

// TrustedProxies are the peers whose X-Forwarded-For a middleware
// believes (a `trusted_proxies` list): the rate limiter, and every
// middleware that needs the client's address, use the same rule, so
// they all see the same client.
type TrustedProxies []netip.Prefix

// ParsePrefix parses a CIDR prefix or a single IP address, as written in
// a trusted_proxies list; IPv4-mapped IPv6 forms are unmapped.
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

// Contains reports whether a is one of the trusted proxies.
func (t TrustedProxies) Contains(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address of r: the peer's, or, when the
// peer is a trusted proxy, the right-most address in X-Forwarded-For that
// is not a trusted proxy (if every address there is trusted, the
// left-most; if one cannot be parsed, the last trusted hop before it).
// It does not allocate.
func (t TrustedProxies) ClientIP(r Request) netip.Addr {
	peer := r.PeerIP().Unmap()
	if len(t) == 0 || !t.Contains(peer) {
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
		a, ok := parseForwarded(elem)
		if !ok {
			return last
		}
		if !t.Contains(a) {
			return a
		}
		last = a
	}
	return last
}

// parseForwarded parses one X-Forwarded-For element: an IP address,
// optionally with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwarded(b []byte) (netip.Addr, bool) {
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
