// Package upstream owns backend pools: the backends of a route or L4
// listener, how one is selected for a request or connection, and the
// per-backend state that selection uses: requests in flight, active
// health (health.go), passive health or outlier ejection (outlier.go) and
// connection limits. It also provides retry budgets (budget.go) and the
// Registry that keeps backend state and health checkers across
// configuration reloads (registry.go). It is shared by the HTTP proxy
// (l7) and the TCP proxy (l4) and knows nothing of either protocol,
// except for active health probes: HTTPProber sends GET over HTTP/1.1 or
// HTTP/2 (h2c, or h2 by ALPN), over TLS to an https:// backend with the
// client configuration l7 gives it, and GRPCProber makes the standard
// grpc.health.v1 Health/Check call (healthgrpc.go).
//
// Selection strategies (selection.go, maglev.go) are round_robin,
// weighted_round_robin, least_connections, random_two_choices and
// consistent_hash. Picks do not allocate and are lock-free, except that
// weighted_round_robin takes a short lock while a backend is unavailable
// or when its cycle is too long to precompute. A
// backend is available when its active health state is up (or checks are
// off) and outlier detection has not ejected it; Pick returns nil when
// none is, unless the pool fails open.
package upstream
