package certs

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
)

// maxServerName is the longest DNS name; a longer SNI matches nothing.
const maxServerName = 253

// table selects the certificate for a handshake. It is immutable once
// published: any change (a renewed pair, a new OCSP staple) builds a new
// one.
type table struct {
	// certs holds the served certificate of each configured pair, in
	// configuration order (with its OCSP staple, if any).
	certs []*tls.Certificate
	// exact maps a DNS SAN to the first pair that names it; wild maps the
	// parent of a "*." SAN ("example.com" for "*.example.com").
	exact map[string]int
	wild  map[string]int
	// ips maps IP SANs, matched against the local address of a
	// connection that sent no SNI (a client that dialled an IP literal).
	ips map[netip.Addr]int
	// def is the pair for unknown or absent SNI, -1 when such a
	// handshake fails (strict SNI).
	def int
}

// buildTable indexes pairs (served[i] is what pairs[i] serves). When two
// pairs name the same host, the first listed wins.
func buildTable(pairs []*Pair, served []*tls.Certificate, def int) *table {
	t := &table{
		certs: served,
		exact: make(map[string]int),
		wild:  make(map[string]int),
		ips:   make(map[netip.Addr]int),
		def:   def,
	}
	for i, p := range pairs {
		for _, n := range p.DNSNames {
			m, key := t.exact, n
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				m, key = t.wild, parent
			}
			if _, taken := m[key]; !taken {
				m[key] = i
			}
		}
		for _, a := range p.IPs {
			if _, taken := t.ips[a]; !taken {
				t.ips[a] = i
			}
		}
	}
	return t
}

// lookup returns the pair for a server name (any case) and the local
// address of the connection, or -1. It allocates nothing.
func (t *table) lookup(name string, local net.Addr) int {
	if name == "" {
		return t.lookupIP(local)
	}
	if len(name) > maxServerName {
		return -1
	}
	var buf [maxServerName]byte
	n := copy(buf[:], name)
	lower := buf[:n]
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	// string(bytes) as a map key is not allocated.
	if i, ok := t.exact[string(lower)]; ok {
		return i
	}
	// A wildcard covers exactly one label, as browsers match it.
	for j, c := range lower {
		if c == '.' {
			if i, ok := t.wild[string(lower[j+1:])]; ok && j > 0 {
				return i
			}
			break
		}
	}
	return -1
}

func (t *table) lookupIP(local net.Addr) int {
	tcp, ok := local.(*net.TCPAddr)
	if !ok || len(t.ips) == 0 {
		return -1
	}
	a, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return -1
	}
	if i, ok := t.ips[a.Unmap()]; ok {
		return i
	}
	return -1
}

// localAddr returns the local address of the connection a ClientHello
// arrived on, or nil.
func localAddr(hello *tls.ClientHelloInfo) net.Addr {
	if hello.Conn == nil {
		return nil
	}
	return hello.Conn.LocalAddr()
}
