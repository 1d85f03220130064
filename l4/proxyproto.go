package l4

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// proxyHeader returns a PROXY protocol header (version "v1" or "v2")
// announcing a TCP connection from src to dst.
func proxyHeader(version string, src, dst netip.AddrPort) []byte {
	v4 := src.Addr().Is4() && dst.Addr().Is4()
	if version == "v1" {
		fam := "TCP6"
		s, d := src.Addr(), dst.Addr()
		if v4 {
			fam = "TCP4"
		} else {
			s, d = as16(s), as16(d)
		}
		return []byte("PROXY " + fam + " " + s.String() + " " + d.String() + " " +
			strconv.Itoa(int(src.Port())) + " " + strconv.Itoa(int(dst.Port())) + "\r\n")
	}
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, 0x21) // version 2, PROXY command
	if v4 {
		h = append(h, 0x11) // TCP over IPv4
		h = binary.BigEndian.AppendUint16(h, 12)
		s, d := src.Addr().As4(), dst.Addr().As4()
		h = append(h, s[:]...)
		h = append(h, d[:]...)
	} else {
		h = append(h, 0x21) // TCP over IPv6
		h = binary.BigEndian.AppendUint16(h, 36)
		s, d := as16(src.Addr()).As16(), as16(dst.Addr()).As16()
		h = append(h, s[:]...)
		h = append(h, d[:]...)
	}
	h = binary.BigEndian.AppendUint16(h, src.Port())
	return binary.BigEndian.AppendUint16(h, dst.Port())
}

// as16 maps an IPv4 address into IPv6 (for a mixed-family pair).
func as16(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}
