package config

import (
	"fmt"
	"net"
	"time"
)

const (
	defaultL4ConnectTimeout = Duration(5 * time.Second)
	defaultL4IdleTimeout    = Duration(time.Hour)
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
		if msg := checkListen(l.Listen); msg != "" {
			st.add(p+".listen", "%s", msg)
		} else {
			if checkListen(c.Server.Listen) == "" && sameListener(l.Listen, c.Server.Listen) {
				st.add(p+".listen", "must differ from server.listen")
			}
			if c.Admin.Listen != AdminOff && checkListen(c.Admin.Listen) == "" && sameListener(l.Listen, c.Admin.Listen) {
				st.add(p+".listen", "must differ from admin.listen")
			}
			for j := 0; j < i; j++ {
				if checkListen(c.L4[j].Listen) == "" && sameListener(l.Listen, c.L4[j].Listen) {
					st.add(p+".listen", "same address as l4[%d]", j)
				}
			}
		}
		if len(l.Backends) == 0 {
			st.add(p+".backends", "at least one backend is required")
		}
		seen := map[string]int{}
		for j, b := range l.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", p, j)
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
		if !oneOf(l.Strategy, "round_robin", "weighted_round_robin", "least_connections", "random_two_choices", "consistent_hash") {
			st.add(p+".strategy", "unknown strategy %q (supported: round_robin, weighted_round_robin, least_connections, random_two_choices, consistent_hash)", l.Strategy)
		}
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
