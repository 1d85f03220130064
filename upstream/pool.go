package upstream

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
)

// Backend is one upstream server. Its identity is its URL; state that must
// survive a configuration reload is keyed by it.
type Backend struct {
	// URL as configured, e.g. "http://127.0.0.1:8001/base".
	URL string
	// Addr is host:port to dial.
	Addr string
	// Host is the host part of the URL (no port).
	Host string
	// BasePath is the URL path, without a trailing slash ("" for none).
	BasePath string
	// Weight for weighted strategies.
	Weight int

	active atomic.Int64
}

// NewBackend parses a backend URL ("http://host[:port][/path]").
func NewBackend(rawURL string, weight int) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("backend %q: scheme %q is not supported", rawURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("backend %q: missing host", rawURL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if weight <= 0 {
		weight = 1
	}
	return &Backend{
		URL:      rawURL,
		Addr:     net.JoinHostPort(u.Hostname(), port),
		Host:     u.Hostname(),
		BasePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		Weight:   weight,
	}, nil
}

// Active is the number of requests in flight on the backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// Acquire counts a request starting on b; Release counts it finished.
func (b *Backend) Acquire() { b.active.Add(1) }

// Release counts a request on b as finished.
func (b *Backend) Release() { b.active.Add(-1) }

// Pool is an ordered set of backends with a selection strategy.
type Pool struct {
	backends []*Backend
	next     atomic.Uint64
}

// NewPool builds a pool. strategy is "round_robin" (the default).
func NewPool(backends []*Backend, strategy string) (*Pool, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("pool has no backends")
	}
	switch strategy {
	case "", "round_robin":
	default:
		return nil, fmt.Errorf("unknown strategy %q", strategy)
	}
	return &Pool{backends: backends}, nil
}

// Backends returns the pool's backends in configuration order.
func (p *Pool) Backends() []*Backend { return p.backends }

// Pick selects a backend: round robin, lock-free.
func (p *Pool) Pick() *Backend {
	if len(p.backends) == 1 {
		return p.backends[0]
	}
	n := p.next.Add(1) - 1
	return p.backends[n%uint64(len(p.backends))]
}
