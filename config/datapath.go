package config

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Values of datapath.mode.
const (
	DatapathAuto      = "auto"
	DatapathKernel    = "kernel"
	DatapathUserspace = "userspace"
)

// PortsAuto in datapath.kernel_rate_limit.ports stands for the ports of
// the configured listeners.
const PortsAuto = "auto"

// Datapath defaults.
const (
	defaultDatapathMode = DatapathAuto
	defaultBPFFS        = "/sys/fs/bpf/rustygate"
	defaultMaxSources   = 65536
	defaultBanDuration  = Duration(10 * time.Minute)
	defaultJWTWindow    = Duration(60 * time.Second)
	defaultWAFWindow    = Duration(60 * time.Second)
)

// Datapath limits.
const (
	// maxMaxSources bounds the kernel's LRU of tracked sources (about
	// 40 bytes of key and value each, plus kernel overhead).
	maxMaxSources = 1 << 24
	// maxIfaceName is IFNAMSIZ minus the terminating NUL.
	maxIfaceName = 15
	// maxGuardedPorts is the size of the kernel's port map (rg_ports);
	// the userspace twin keeps the same bound.
	maxGuardedPorts = 1024
)

// datapathDefaults fills the datapath section's defaults. burst defaults
// to rate; an explicit value (even 0) is kept for validation to judge.
func datapathDefaults(c *Config, unset func(string) bool) {
	d := &c.Datapath
	setString(&d.Mode, defaultDatapathMode)
	setString(&d.BPFFS, defaultBPFFS)

	k := &d.KernelRateLimit
	setInt(&k.Burst, k.Rate, unset("datapath.kernel_rate_limit.burst"))
	setInt(&k.MaxSources, defaultMaxSources, unset("datapath.kernel_rate_limit.max_sources"))
	if k.Ports == nil && unset("datapath.kernel_rate_limit.ports") {
		k.Ports = []string{PortsAuto}
	}

	b := &d.Bans
	setDuration(&b.Duration, defaultBanDuration, unset("datapath.bans.duration"))
	setDuration(&b.JWTWindow, defaultJWTWindow, unset("datapath.bans.jwt_window"))
	setDuration(&b.WAFWindow, defaultWAFWindow, unset("datapath.bans.waf_window"))
}

// validateDatapath checks the datapath section.
func validateDatapath(c *Config, st *vstate) {
	d := &c.Datapath
	if !oneOf(d.Mode, DatapathAuto, DatapathKernel, DatapathUserspace) {
		st.add("datapath.mode", "unknown mode %q (supported: %s, %s, %s)", d.Mode, DatapathAuto, DatapathKernel, DatapathUserspace)
	}
	switch {
	case !filepath.IsAbs(d.BPFFS):
		st.add("datapath.bpffs", "must be an absolute path (got %q)", d.BPFFS)
	case strings.ContainsFunc(d.BPFFS, isControl):
		st.add("datapath.bpffs", "must not contain control characters")
	case filepath.Clean(d.BPFFS) == "/":
		st.add("datapath.bpffs", "must not be the root directory")
	}
	seenIfaces := make(map[string]int)
	for i, name := range d.Interfaces {
		p := fmt.Sprintf("datapath.interfaces[%d]", i)
		if !validIfaceName(name) {
			st.add(p, "invalid interface name %q (1-%d characters, none of \"/\", \":\" or whitespace)", name, maxIfaceName)
		} else if first, dup := seenIfaces[name]; dup {
			st.add(p, "duplicate interface %q (also interfaces[%d])", name, first)
		} else {
			seenIfaces[name] = i
		}
	}

	k := &d.KernelRateLimit
	const kp = "datapath.kernel_rate_limit"
	if k.Rate < 0 {
		st.add(kp+".rate", "must not be negative (got %d)", k.Rate)
	}
	switch {
	case k.Burst < 0:
		st.add(kp+".burst", "must not be negative (got %d)", k.Burst)
	case k.Rate > 0 && k.Burst == 0:
		st.add(kp+".burst", "must be at least 1 when rate is set (got 0)")
	}
	if k.MaxSources < 1 || k.MaxSources > maxMaxSources {
		st.add(kp+".max_sources", "must be between 1 and %d (got %d)", maxMaxSources, k.MaxSources)
	}
	seenPorts := make(map[string]int)
	for i, port := range k.Ports {
		p := fmt.Sprintf("%s.ports[%d]", kp, i)
		if _, ok := parsePort(port); !ok && port != PortsAuto {
			st.add(p, "invalid port %q (want %q or 1-65535)", port, PortsAuto)
		} else if first, dup := seenPorts[port]; dup {
			st.add(p, "duplicate port %q (also ports[%d])", port, first)
		} else {
			seenPorts[port] = i
		}
	}
	if n := guardedPorts(c); n > maxGuardedPorts {
		st.add(kp+".ports", "guards %d ports, more than the %d the limiter holds (auto stands for the listeners' ports, every port of an l4 port range included): list the ports to guard", n, maxGuardedPorts)
	}
	checkCIDRs(st, kp+".allow", k.Allow)
	checkCIDRs(st, kp+".deny", k.Deny)

	b := &d.Bans
	const bp = "datapath.bans"
	if b.RateLimitFactor < 0 || math.IsNaN(b.RateLimitFactor) || math.IsInf(b.RateLimitFactor, 0) {
		st.add(bp+".rate_limit_factor", "must be 0 or more (got %g)", b.RateLimitFactor)
	}
	if b.JWTFailures < 0 {
		st.add(bp+".jwt_failures", "must not be negative (got %d)", b.JWTFailures)
	}
	checkPositive(st, bp+".jwt_window", b.JWTWindow)
	if b.WAFBlocks < 0 {
		st.add(bp+".waf_blocks", "must not be negative (got %d)", b.WAFBlocks)
	}
	checkPositive(st, bp+".waf_window", b.WAFWindow)
	checkPositive(st, bp+".duration", b.Duration)
}

// checkCIDRs checks a list of CIDRs (a bare address counts as a /32 or
// /128).
func checkCIDRs(st *vstate, path string, list []string) {
	for i, s := range list {
		if _, ok := ParseCIDR(s); !ok {
			st.add(fmt.Sprintf("%s[%d]", path, i), "invalid CIDR %q (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)", s)
		}
	}
}

// ParseCIDR parses an allow or deny list entry of
// datapath.kernel_rate_limit: a CIDR or a bare IP address (a /32 or
// /128), without a zone. The prefix is returned masked, IPv4-mapped IPv6
// forms unmapped, so that it compares equal to the same network written
// another way.
func ParseCIDR(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			// ::ffff:0:0/80 and the like span more than IPv4.
			return p.Masked(), true
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

// validIfaceName reports whether name is a valid Linux interface name,
// as the kernel's dev_valid_name checks it.
func validIfaceName(name string) bool {
	if name == "" || len(name) > maxIfaceName || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// guardedPorts counts the distinct ports kernel_rate_limit.ports stands
// for, auto expanded to the listeners' ports.
func guardedPorts(c *Config) int {
	set := make(map[int]bool)
	for _, port := range c.Datapath.KernelRateLimit.Ports {
		if port == PortsAuto {
			for _, p := range c.ListenPorts() {
				set[p] = true
			}
		} else if n, ok := parsePort(port); ok {
			set[n] = true
		}
	}
	return len(set)
}
