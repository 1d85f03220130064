// Package upstream owns backend pools: the backends of a route or L4
// listener, how one is selected for a request or connection, and the
// per-backend state (active requests) that selection uses. It is shared by
// the HTTP proxy (l7) and the TCP proxy (l4) and knows nothing of either
// protocol.
package upstream
