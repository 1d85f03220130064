package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	defaultL4ConnectTimeout = Duration(5 * time.Second)
	defaultL4IdleTimeout    = Duration(time.Hour)
	// defaultL4HandshakeTimeout bounds the ClientHello read and the TLS
	// handshake, like server.read_header_timeout bounds a request head.
	defaultL4HandshakeTimeout = Duration(10 * time.Second)
)

// l4Defaults fills the defaults of the TCP listeners.
func l4Defaults(c *Config, unset func(string) bool) {
	for i := range c.L4 {
		l := &c.L4[i]
		p := fmt.Sprintf("l4[%d]", i)
		setString(&l.Strategy, defaultStrategy)
		setString(&l.Datapath, "auto")
		setDuration(&l.ConnectTimeout, defaultL4ConnectTimeout, unset(p+".connect_timeout"))
		setDuration(&l.IdleTimeout, defaultL4IdleTimeout, unset(p+".idle_timeout"))
		if l.Retries == nil {
			l.Retries = ptr(2)
		}
		for j := range l.Backends {
			setInt(&l.Backends[j].Weight, defaultWeight, unset(fmt.Sprintf("%s.backends[%d].weight", p, j)))
		}
		setDuration(&l.HandshakeTimeout, defaultL4HandshakeTimeout, unset(p+".handshake_timeout"))
		l4RouteDefaults(l, p, unset)
		if hc := &l.HealthCheck; hc.Interval > 0 {
			setDuration(&hc.Timeout, Duration(time.Second), unset(p+".health_check.timeout"))
			setInt(&hc.HealthyThreshold, 2, unset(p+".health_check.healthy_threshold"))
			setInt(&hc.UnhealthyThreshold, 2, unset(p+".health_check.unhealthy_threshold"))
		}
	}
}

// validateL4 checks the TCP listeners.
func validateL4(c *Config, st *vstate) {
	names := map[string]int{}
	for i := range c.L4 {
		l := &c.L4[i]
		p := fmt.Sprintf("l4[%d]", i)
		if l.Name == "" {
			st.add(p+".name", "is required")
		} else if j, dup := names[l.Name]; dup {
			st.add(p+".name", "duplicate name %q (also l4[%d])", l.Name, j)
		} else {
			names[l.Name] = i
		}
		if msg := checkL4Listen(l.Listen); msg != "" {
			st.add(p+".listen", "%s", msg)
		} else {
			checkL4Overlaps(c, i, st)
		}
		if len(l.Backends) == 0 && len(l.Routes) == 0 {
			st.add(p+".backends", "at least one backend is required")
		}
		checkL4Backends(st, p+".backends", l.Backends)
		checkL4Strategy(st, p+".strategy", l.Strategy)
		validateL4Routes(l, p, st)
		validateL4TLS(l, p, st)
		checkPositive(st, p+".handshake_timeout", l.HandshakeTimeout)
		if !oneOf(l.ProxyProtocol, "", "v1", "v2") {
			st.add(p+".proxy_protocol", "unknown version %q (supported: v1, v2)", l.ProxyProtocol)
		}
		if !oneOf(l.Datapath, "auto", "splice", "kernel") {
			st.add(p+".datapath", "unknown datapath %q (supported: auto, splice, kernel)", l.Datapath)
		}
		checkPositive(st, p+".connect_timeout", l.ConnectTimeout)
		if l.IdleTimeout < 0 {
			st.add(p+".idle_timeout", "must not be negative")
		}
		if *l.Retries < 0 || *l.Retries > 10 {
			st.add(p+".retries", "must be between 0 and 10 (got %d)", *l.Retries)
		}
		if l.MaxConns < 0 {
			st.add(p+".max_conns", "must not be negative")
		}
		if hc := l.HealthCheck; hc.Interval > 0 {
			if hc.Timeout >= hc.Interval {
				st.add(p+".health_check.timeout", "must be shorter than interval (%s)", hc.Interval)
			}
			if hc.HealthyThreshold < 1 || hc.HealthyThreshold > 100 {
				st.add(p+".health_check.healthy_threshold", "must be between 1 and 100")
			}
			if hc.UnhealthyThreshold < 1 || hc.UnhealthyThreshold > 100 {
				st.add(p+".health_check.unhealthy_threshold", "must be between 1 and 100")
			}
		}
	}
}

// checkL4Backends checks a list of TCP backends at path.
func checkL4Backends(st *vstate, path string, backends []L4Backend) {
	seen := map[string]int{}
	for j, b := range backends {
		bp := fmt.Sprintf("%s[%d]", path, j)
		host, port, err := net.SplitHostPort(b.Addr)
		if err != nil || host == "" {
			st.add(bp+".addr", "invalid address %q (want host:port)", b.Addr)
		} else if n, ok := parsePort(port); !ok || n == 0 {
			st.add(bp+".addr", "invalid port %q in %q (want 1-65535)", port, b.Addr)
		}
		if k, dup := seen[b.Addr]; dup {
			st.add(bp+".addr", "duplicate backend (also backends[%d])", k)
		}
		seen[b.Addr] = j
		if b.Weight < minWeight || b.Weight > maxWeight {
			st.add(bp+".weight", "must be between %d and %d (got %d)", minWeight, maxWeight, b.Weight)
		}
	}
}

func checkL4Strategy(st *vstate, path, s string) {
	if !oneOf(s, "round_robin", "weighted_round_robin", "least_connections", "random_two_choices", "consistent_hash") {
		st.add(path, "unknown strategy %q (supported: round_robin, weighted_round_robin, least_connections, random_two_choices, consistent_hash)", s)
	}
}

// ListenRange is an l4 listen address with a range of ports,
// "HOST:LO-HI" (e.g. "0.0.0.0:9000-9099" or "[::1]:9000-9010"): the
// listener serves every port from Lo to Hi.
type ListenRange struct {
	// Host is an IP address, or "" for every address ("0.0.0.0" and "::"
	// too listen on every address of both families).
	Host   string
	Lo, Hi uint16
}

// IsListenRange reports whether an l4 listen address gives a range of
// ports rather than one.
func IsListenRange(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && strings.Contains(port, "-")
}

// ParseListenRange parses a port range listen address, "HOST:LO-HI".
func ParseListenRange(addr string) (ListenRange, error) {
	if !IsListenRange(addr) {
		return ListenRange{}, fmt.Errorf("%q is not a port range (want host:LO-HI)", addr)
	}
	if msg := checkListenRange(addr); msg != "" {
		return ListenRange{}, errors.New(msg)
	}
	host, lo, hi := listenSpan(addr)
	return ListenRange{Host: host, Lo: uint16(lo), Hi: uint16(hi)}, nil
}

// Addr is the listen address of one port of the range.
func (r ListenRange) Addr(port uint16) string {
	return net.JoinHostPort(r.Host, strconv.Itoa(int(port)))
}

// Wildcard reports whether the range is on every address.
func (r ListenRange) Wildcard() bool { return isWildcardHost(r.Host) }

// checkL4Listen checks an l4 listen address: host:port like the other
// listeners, or a port range.
func checkL4Listen(addr string) string {
	if IsListenRange(addr) {
		return checkListenRange(addr)
	}
	return checkListen(addr)
}

// checkListenRange checks a port range listen address, "HOST:LO-HI":
// both ports 1-65535, LO <= HI, and an IP address or no host (a range is
// steered by address prefix, so a host name will not do).
func checkListenRange(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	l, h, _ := strings.Cut(port, "-")
	lo, ok1 := parsePort(l)
	hi, ok2 := parsePort(h)
	switch {
	case !ok1 || !ok2:
		return fmt.Sprintf("invalid port range %q in %q (want LO-HI, both ports 1-65535)", port, addr)
	case lo > hi:
		return fmt.Sprintf("invalid port range %q in %q (the first port is above the last)", port, addr)
	case host != "" && !validIP(host):
		return fmt.Sprintf("invalid host %q in %q (a port range needs an IP address, or no host for every address)", host, addr)
	}
	return ""
}

// checkL4Overlaps reports an l4[i].listen that shares a port with
// server.listen, admin.listen or an earlier l4 listener (on the same host,
// or where either host is a wildcard). i's address is valid.
func checkL4Overlaps(c *Config, i int, st *vstate) {
	p := fmt.Sprintf("l4[%d].listen", i)
	addr := c.L4[i].Listen
	ranged := IsListenRange(addr)
	for _, other := range []struct{ field, addr string }{{"server.listen", c.Server.Listen}, {"admin.listen", c.Admin.Listen}} {
		if other.addr == AdminOff || checkListen(other.addr) != "" {
			continue
		}
		lo, hi := overlap(addr, other.addr)
		switch {
		case lo > hi:
		case ranged:
			st.add(p, "must differ from %s (both use %s)", other.field, portsString(lo, hi))
		default:
			st.add(p, "must differ from %s", other.field)
		}
	}
	for j := 0; j < i; j++ {
		o := c.L4[j].Listen
		if checkL4Listen(o) != "" {
			continue
		}
		lo, hi := overlap(addr, o)
		switch {
		case lo > hi:
		case ranged || IsListenRange(o):
			st.add(p, "overlaps l4[%d].listen (both use %s)", j, portsString(lo, hi))
		default:
			st.add(p, "same address as l4[%d]", j)
		}
	}
}

// listenSpan returns the host and the ports of a valid listen address:
// lo == hi for one port, 0 for port 0 (any free port).
func listenSpan(addr string) (host string, lo, hi int) {
	host, port, _ := net.SplitHostPort(addr)
	if l, h, ok := strings.Cut(port, "-"); ok {
		lo, _ = parsePort(l)
		hi, _ = parsePort(h)
		return host, lo, hi
	}
	n, _ := parsePort(port)
	return host, n, n
}

// overlap returns the ports [lo, hi] two valid listen addresses would
// both listen on: same host or a wildcard host, and ports in common. lo >
// hi when there are none (port 0 shares nothing).
func overlap(a, b string) (lo, hi int) {
	ha, loA, hiA := listenSpan(a)
	hb, loB, hiB := listenSpan(b)
	lo, hi = max(loA, loB), min(hiA, hiB)
	if lo == 0 || lo > hi || (ha != hb && !isWildcardHost(ha) && !isWildcardHost(hb)) {
		return 1, 0
	}
	return lo, hi
}

func portsString(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("port %d", lo)
	}
	return fmt.Sprintf("ports %d-%d", lo, hi)
}

// ListenPorts are the ports the gateway serves traffic on: server.listen's
// and every l4[].listen's, each port of a range included (port 0, any free
// port, is left out). datapath.kernel_rate_limit.ports: auto stands for
// them. Invalid addresses are skipped.
func (c *Config) ListenPorts() []int {
	var ports []int
	add := func(addr string, check func(string) string) {
		if check(addr) != "" {
			return
		}
		_, lo, hi := listenSpan(addr)
		for p := lo; p > 0 && p <= hi; p++ {
			ports = append(ports, p)
		}
	}
	add(c.Server.Listen, checkListen)
	if c.Server.TLS != nil {
		add(c.Server.TLS.Listen, checkListen)
	}
	for _, l := range c.L4 {
		add(l.Listen, checkL4Listen)
	}
	return ports
}
