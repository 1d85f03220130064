package ipfilter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// next returns a+1, and false when a is the largest value.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

type range4 struct{ lo, hi uint32 }
type range6 struct{ lo, hi u128 }

// ranges is a set of addresses: per family, sorted, non-overlapping and
// non-adjacent ranges.
type ranges struct {
	v4 []range4
	v6 []range6
}

// parseRanges parses a list of IPs and CIDRs into ranges.
func parseRanges(list []string) (ranges, error) {
	var rs ranges
	for _, s := range list {
		p, err := clientip.ParsePrefix(s)
		if err != nil {
			return ranges{}, fmt.Errorf("invalid address %q", s)
		}
		rs.add(p)
	}
	rs.v4 = merge(rs.v4, func(a, b range4) bool { return a.lo < b.lo },
		func(last, r range4) bool { return last.hi == ^uint32(0) || r.lo <= last.hi+1 },
		func(last *range4, r range4) { last.hi = max(last.hi, r.hi) })
	rs.v6 = merge(rs.v6, func(a, b range6) bool { return a.lo.less(b.lo) },
		func(last, r range6) bool { n, ok := last.hi.next(); return !ok || !n.less(r.lo) },
		func(last *range6, r range6) {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
		})
	return rs, nil
}

// add adds prefix p.
func (rs *ranges) add(p netip.Prefix) {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		lo := binary.BigEndian.Uint32(b[:])
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		rs.v4 = append(rs.v4, range4{lo, hi})
		return
	}
	b := a.As16()
	lo := u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	hi := lo
	switch host := 128 - p.Bits(); {
	case host >= 64:
		hi.lo = ^uint64(0)
		hi.hi |= uint64(1)<<(host-64) - 1
		if host == 128 {
			hi.hi = ^uint64(0)
		}
	default:
		hi.lo |= uint64(1)<<host - 1
	}
	rs.v6 = append(rs.v6, range6{lo, hi})
}

// merge sorts rs and merges overlapping or adjacent ranges.
func merge[R any](rs []R, less func(a, b R) bool, joins func(last, r R) bool, extend func(last *R, r R)) []R {
	slices.SortFunc(rs, func(a, b R) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && joins(out[n-1], r) {
			extend(&out[n-1], r)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// contains reports whether a is in the set.
func (rs *ranges) contains(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		v := rs.v4
		i, j := 0, len(v)
		for i < j {
			h := int(uint(i+j) >> 1)
			if v[h].hi < x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i < len(v) && v[i].lo <= x
	}
	if !a.Is6() {
		return false
	}
	b := a.As16()
	x := u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	v := rs.v6
	i, j := 0, len(v)
	for i < j {
		h := int(uint(i+j) >> 1)
		if v[h].hi.less(x) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(v) && !x.less(v[i].lo)
}
