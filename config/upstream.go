package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Values of route.strategy besides StrategyRoundRobin, and of
// route.hash_key and route.retries.on.
const (
	StrategyWeightedRoundRobin = "weighted_round_robin"
	StrategyLeastConnections   = "least_connections"
	StrategyRandomTwoChoices   = "random_two_choices"
	StrategyConsistentHash     = "consistent_hash"

	HashKeyIP = "ip"

	ProtocolHTTP1 = "http1"
	ProtocolH2C   = "h2c"
	ProtocolH2    = "h2"
	ProtocolAuto  = "auto"

	HealthCheckHTTP = "http"
	HealthCheckGRPC = "grpc"

	RetryOnConnectFailure = "connect_failure"
	RetryOnTimeout        = "timeout"
	RetryOnReset          = "reset"
)

// strategies lists the supported strategies, for messages.
var strategies = []string{
	StrategyRoundRobin, StrategyWeightedRoundRobin, StrategyLeastConnections,
	StrategyRandomTwoChoices, StrategyConsistentHash,
}

// Pool defaults.
const (
	defaultHealthInterval     = Duration(5 * time.Second)
	defaultHealthTimeout      = Duration(2 * time.Second)
	defaultHealthThreshold    = 2
	defaultOutlierConsecutive = 5
	defaultBaseEjection       = Duration(30 * time.Second)
	defaultMaxEjection        = Duration(300 * time.Second)
	defaultRetryAttempts      = 2
	defaultRetryBudget        = 0.2
	defaultRetryMaxBody       = 65536
	defaultMaxConnsWait       = Duration(time.Second)
)

// Pool limits.
const (
	maxHealthThreshold    = 100
	maxOutlierConsecutive = 1000
	maxRetryAttempts      = 10
	maxRetryBody          = 16 << 20
)

func defaultExpectStatus() []string { return []string{"2xx", "3xx"} }
func defaultOutlierStatuses() []int { return []int{502, 503, 504} }
func defaultRetryConditions() []string {
	// Not timeout: a backend that is slow because it is overloaded would
	// get each request 1+attempts times (Envoy and HAProxy do not retry
	// timeouts unless told to either).
	return []string{RetryOnConnectFailure, RetryOnReset}
}

// upstreamDefaults fills the defaults of a route's pool settings:
// strategy options, health checks, outlier detection and retries. A
// number, duration or list the file set explicitly (even to 0 or []) is
// kept: validation reports it if it is invalid, and an explicit 0 or []
// may mean "off" (retries.attempts: 0, outlier_detection.statuses: []).
func upstreamDefaults(r *Route, path string, unset func(string) bool) {
	if r.Strategy == StrategyConsistentHash && r.HashKey == "" {
		r.HashKey = HashKeyIP
	}

	if h := &r.HealthCheck; h.Enabled() {
		hp := path + ".health_check"
		setDuration(&h.Interval, defaultHealthInterval, unset(hp+".interval"))
		// The default timeout never reaches a short interval.
		setDuration(&h.Timeout, min(defaultHealthTimeout, h.Interval/2), unset(hp+".timeout"))
		setInt(&h.HealthyThreshold, defaultHealthThreshold, unset(hp+".healthy_threshold"))
		setInt(&h.UnhealthyThreshold, defaultHealthThreshold, unset(hp+".unhealthy_threshold"))
		if len(h.ExpectStatus) == 0 && unset(hp+".expect_status") && h.Type != HealthCheckGRPC {
			h.ExpectStatus = defaultExpectStatus()
		}
	}

	o := &r.Outlier
	op := path + ".outlier_detection"
	setInt(&o.Consecutive, defaultOutlierConsecutive, unset(op+".consecutive_failures"))
	setDuration(&o.BaseEjection, defaultBaseEjection, unset(op+".base_ejection"))
	setDuration(&o.MaxEjection, defaultMaxEjection, unset(op+".max_ejection"))
	if o.Statuses == nil && unset(op+".statuses") {
		o.Statuses = defaultOutlierStatuses()
	}

	rt := &r.Retries
	rp := path + ".retries"
	if rt.Attempts == nil {
		rt.Attempts = ptr(defaultRetryAttempts)
	}
	if rt.On == nil && unset(rp+".on") {
		rt.On = defaultRetryConditions()
	}
	if rt.Budget == nil {
		rt.Budget = ptr(defaultRetryBudget)
	}
	setInt(&rt.MaxBodyBytes, defaultRetryMaxBody, unset(rp+".max_body_bytes"))

	if r.MaxConns > 0 {
		setDuration(&r.MaxConnsWait, defaultMaxConnsWait, unset(path+".max_conns_wait"))
	}
	if r.TLS != nil {
		// A backend's own tls leaves min_version unset to inherit this.
		setString(&r.TLS.MinVersion, defaultTLSMinVersion)
	}
}

// validateUpstream checks a route's pool settings.
func validateUpstream(r *Route, path string, st *vstate) {
	strategyOK := oneOf(r.Strategy, strategies...)
	if !strategyOK && !st.reported(path+".strategy") {
		st.add(path+".strategy", "unknown strategy %q (supported: %s)", r.Strategy, strings.Join(strategies, ", "))
	}
	if r.HashKey != "" {
		switch {
		case !strategyOK:
		case r.Strategy != StrategyConsistentHash:
			st.add(path+".hash_key", "only applies to strategy %s (strategy is %s)", StrategyConsistentHash, r.Strategy)
		default:
			if msg := checkHashKey(r.HashKey); msg != "" {
				st.add(path+".hash_key", "%s", msg)
			}
		}
	}

	validateProtocol(r, path, st)
	validateHealthCheck(&r.HealthCheck, path+".health_check", st)
	validateBackendTLS(r, path, st)

	o := &r.Outlier
	op := path + ".outlier_detection"
	if o.Consecutive < 0 || o.Consecutive > maxOutlierConsecutive {
		st.add(op+".consecutive_failures", "must be between 0 and %d (got %d)", maxOutlierConsecutive, o.Consecutive)
	}
	checkPositive(st, op+".base_ejection", o.BaseEjection)
	checkPositive(st, op+".max_ejection", o.MaxEjection)
	if o.BaseEjection > 0 && o.MaxEjection > 0 && o.MaxEjection < o.BaseEjection {
		st.add(op+".max_ejection", "must be at least base_ejection (%s) (got %s)", o.BaseEjection, o.MaxEjection)
	}
	for i, s := range o.Statuses {
		if s < 400 || s > 599 {
			st.add(fmt.Sprintf("%s.statuses[%d]", op, i), "must be between 400 and 599 (got %d)", s)
		}
	}

	rt := &r.Retries
	rp := path + ".retries"
	if rt.Attempts != nil && (*rt.Attempts < 0 || *rt.Attempts > maxRetryAttempts) {
		st.add(rp+".attempts", "must be between 0 and %d (got %d)", maxRetryAttempts, *rt.Attempts)
	}
	seen := make(map[string]int)
	for i, c := range rt.On {
		cp := fmt.Sprintf("%s.on[%d]", rp, i)
		if !validRetryCondition(c) {
			st.add(cp, "unknown retry condition %q (supported: %s, %s, %s or a status 500-599)", c, RetryOnConnectFailure, RetryOnTimeout, RetryOnReset)
		} else if first, dup := seen[c]; dup {
			st.add(cp, "duplicate retry condition %q (also on[%d])", c, first)
		} else {
			seen[c] = i
		}
	}
	validateGRPCOn(rt.GRPCOn, rp+".grpc_on", st)
	if b := rt.Budget; b != nil && !(*b >= 0 && *b <= 1) {
		st.add(rp+".budget", "must be between 0 and 1 (got %s)", strconv.FormatFloat(*b, 'g', -1, 64))
	}
	if rt.MaxBodyBytes < 0 || rt.MaxBodyBytes > maxRetryBody {
		st.add(rp+".max_body_bytes", "must be between 0 and %d (got %d)", maxRetryBody, rt.MaxBodyBytes)
	}

	if r.MaxConns < 0 {
		st.add(path+".max_conns", "must not be negative (got %d)", r.MaxConns)
	}
	if r.MaxConnsWait < 0 {
		st.add(path+".max_conns_wait", "must not be negative (got %s)", r.MaxConnsWait)
	}
}

// Enabled reports whether active health checks are on: a path for HTTP
// checks, or type grpc.
func (h *HealthCheck) Enabled() bool { return h.Path != "" || h.Type == HealthCheckGRPC }

func validateHealthCheck(h *HealthCheck, hp string, st *vstate) {
	if h.Type != "" && h.Type != HealthCheckHTTP && h.Type != HealthCheckGRPC {
		st.add(hp+".type", "unknown health check type %q (supported: %s, %s)", h.Type, HealthCheckHTTP, HealthCheckGRPC)
		return
	}
	if !h.Enabled() {
		// Checks are off; settings without a path are a mistake.
		if h.Interval != 0 || h.Timeout != 0 || h.HealthyThreshold != 0 || h.UnhealthyThreshold != 0 || h.ExpectStatus != nil || h.Service != "" {
			st.add(hp+".path", "is required to enable health checks")
		}
		return
	}
	if h.Type == HealthCheckGRPC {
		if h.Path != "" {
			st.add(hp+".path", "does not apply to grpc health checks (they call grpc.health.v1.Health/Check; name the service in service)")
		}
		if h.ExpectStatus != nil {
			st.add(hp+".expect_status", "does not apply to grpc health checks (SERVING is healthy)")
		}
	} else if h.Service != "" {
		st.add(hp+".service", "only applies to type %s", HealthCheckGRPC)
	}
	validateHealthCheckTiming(h, hp, st)
	if h.Type == HealthCheckGRPC {
		return
	}
	switch {
	case h.Path[0] != '/':
		st.add(hp+".path", "must start with \"/\" (got %q)", h.Path)
	case strings.ContainsFunc(h.Path, isSpaceOrControl) || strings.Contains(h.Path, "#"):
		st.add(hp+".path", "invalid path %q (no spaces, control characters or \"#\")", h.Path)
	}
	if len(h.ExpectStatus) == 0 {
		st.add(hp+".expect_status", "must not be empty")
	}
	for i, s := range h.ExpectStatus {
		if !validExpectStatus(s) {
			st.add(fmt.Sprintf("%s.expect_status[%d]", hp, i), "invalid status %q (want a code 100-599 or a class 1xx-5xx)", s)
		}
	}
}

// validateHealthCheckTiming checks the interval, timeout and thresholds
// of enabled health checks.
func validateHealthCheckTiming(h *HealthCheck, hp string, st *vstate) {
	checkPositive(st, hp+".interval", h.Interval)
	checkPositive(st, hp+".timeout", h.Timeout)
	if h.Interval > 0 && h.Timeout > 0 && h.Timeout >= h.Interval {
		st.add(hp+".timeout", "must be less than interval (%s) (got %s)", h.Interval, h.Timeout)
	}
	for _, f := range []struct {
		key string
		n   int
	}{{"healthy_threshold", h.HealthyThreshold}, {"unhealthy_threshold", h.UnhealthyThreshold}} {
		if f.n < 1 || f.n > maxHealthThreshold {
			st.add(hp+"."+f.key, "must be between 1 and %d (got %d)", maxHealthThreshold, f.n)
		}
	}
}

// validateProtocol checks route.protocol against the backends' schemes:
// h2c speaks cleartext, h2 TLS.
func validateProtocol(r *Route, path string, st *vstate) {
	pp := path + ".protocol"
	if r.Protocol != "" && !oneOf(r.Protocol, ProtocolHTTP1, ProtocolH2C, ProtocolH2, ProtocolAuto) {
		st.add(pp, "unknown protocol %q (supported: %s, %s, %s, %s)", r.Protocol, ProtocolHTTP1, ProtocolH2C, ProtocolH2, ProtocolAuto)
		return
	}
	for j, b := range r.Backends {
		https := strings.HasPrefix(strings.ToLower(b.URL), "https://")
		switch {
		case r.Protocol == ProtocolH2C && https:
			st.add(pp, "h2c is HTTP/2 without TLS, but backends[%d] is %s (use h2 or auto for https:// backends)", j, b.URL)
			return
		case r.Protocol == ProtocolH2 && !https:
			st.add(pp, "h2 is HTTP/2 over TLS, but backends[%d] is %s (use h2c for cleartext HTTP/2)", j, b.URL)
			return
		}
	}
	if r.HealthCheck.Type == HealthCheckGRPC && (r.Protocol == ProtocolHTTP1 || r.Protocol == "") {
		st.add(path+".health_check.type", "grpc health checks need HTTP/2 backends (set protocol: h2c, h2 or auto)")
	}
}

// GRPCCodes are the gRPC status codes by the names retries.grpc_on
// accepts (lower-case forms of the canonical names).
var GRPCCodes = map[string]int{
	"cancelled": 1, "unknown": 2, "invalid_argument": 3, "deadline_exceeded": 4,
	"not_found": 5, "already_exists": 6, "permission_denied": 7, "resource_exhausted": 8,
	"failed_precondition": 9, "aborted": 10, "out_of_range": 11, "unimplemented": 12,
	"internal": 13, "unavailable": 14, "data_loss": 15, "unauthenticated": 16,
}

func validateGRPCOn(on []string, p string, st *vstate) {
	seen := map[string]int{}
	for i, c := range on {
		cp := fmt.Sprintf("%s[%d]", p, i)
		if _, ok := GRPCCodes[c]; !ok {
			st.add(cp, "unknown gRPC status %q (e.g. unavailable, resource_exhausted, aborted, internal)", c)
		} else if first, dup := seen[c]; dup {
			st.add(cp, "duplicate gRPC status %q (also grpc_on[%d])", c, first)
		} else {
			seen[c] = i
		}
	}
}

// checkHashKey checks a consistent_hash key: ip, header:NAME or
// cookie:NAME.
func checkHashKey(key string) string {
	switch {
	case key == HashKeyIP:
		return ""
	case strings.HasPrefix(key, "header:"):
		if name := key[len("header:"):]; !isToken(name) {
			return fmt.Sprintf("invalid header name %q in hash key %q", name, key)
		}
		return ""
	case strings.HasPrefix(key, "cookie:"):
		// A cookie name is a token (RFC 6265).
		if name := key[len("cookie:"):]; !isToken(name) {
			return fmt.Sprintf("invalid cookie name %q in hash key %q", name, key)
		}
		return ""
	}
	return fmt.Sprintf("invalid hash key %q (want ip, header:NAME or cookie:NAME)", key)
}

// validExpectStatus accepts a status code 100-599 or a class 1xx-5xx.
func validExpectStatus(s string) bool {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' {
		return false
	}
	if s[1:] == "xx" {
		return true
	}
	return isDigit(s[1]) && isDigit(s[2])
}

// validRetryCondition accepts connect_failure, timeout, reset and a
// status 500-599.
func validRetryCondition(c string) bool {
	switch c {
	case RetryOnConnectFailure, RetryOnTimeout, RetryOnReset:
		return true
	}
	return len(c) == 3 && c[0] == '5' && isDigit(c[1]) && isDigit(c[2])
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// reported reports whether a problem was already recorded at path, so
// that a field checked in two places is reported once.
func (st *vstate) reported(path string) bool {
	for _, e := range st.errs {
		if e.Path == path {
			return true
		}
	}
	return false
}
