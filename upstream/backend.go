package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPoolFull is returned by TryAcquire when a backend's connection limit
// stays reached for the whole wait bound. The proxy answers 503.
var ErrPoolFull = errors.New("upstream: backend connection limit reached")

// Backend is one upstream server as seen by one pool.
//
// The exported fields describe the server and never change. The dynamic
// state (requests in flight, health, ejection) lives in a state object
// that a Registry shares between the Backend values of successive
// configurations with the same identity, so a reload keeps it. Pool
// settings (connection limit, outlier detection) are attached by NewPool;
// a Backend belongs to at most one pool.
type Backend struct {
	// URL as configured, e.g. "http://127.0.0.1:8001/base".
	URL string
	// Scheme is the URL's scheme: "http", "https" (the proxy speaks TLS
	// to the backend) or "tcp".
	Scheme string
	// Addr is host:port to dial.
	Addr string
	// Host is the host part of the URL (no port).
	Host string
	// BasePath is the URL path, without a trailing slash ("" for none).
	BasePath string
	// Weight for weighted strategies (at least 1).
	Weight int

	st    *backendState
	scope string

	// Set by NewPool before the pool is published.
	pool     *Pool
	maxConns int64
	maxWait  time.Duration
}

// backendState is the mutable state of a backend. Fields written on every
// request are kept on a different cache line from those read on every
// pick.
type backendState struct {
	// active counts requests in flight.
	active atomic.Int64
	_      [64]byte

	// down is the verdict of active health checks (false when they are
	// off or have not failed yet).
	down atomic.Bool
	// ejectedUntil is the unix-nano time an outlier ejection ends, 0 when
	// the backend is not ejected. An expired value is cleared lazily.
	ejectedUntil atomic.Int64
	_            [64]byte

	// Outlier detection bookkeeping (see outlier.go).
	consecutive     atomic.Int64
	ejections       atomic.Int64
	lastEjectionEnd atomic.Int64
	lastReason      atomic.Pointer[string]

	// Connection-limit waiters (see TryAcquire).
	waiters atomic.Int32
	mu      sync.Mutex
	wake    chan struct{} // closed by Release when waiters > 0
}

// NewBackend parses a backend URL ("http://host[:port][/path]",
// "https://..." or "tcp://host:port"). The
// backend has state of its own; use a Registry to keep state across
// configuration reloads.
func NewBackend(rawURL string, weight int) (*Backend, error) {
	return newBackend(rawURL, weight, "", &backendState{})
}

func newBackend(rawURL string, weight int, scope string, st *backendState) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tcp" {
		return nil, fmt.Errorf("backend %q: scheme %q is not supported", rawURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("backend %q: missing host", rawURL)
	}
	port := u.Port()
	if port == "" {
		if u.Scheme == "tcp" {
			return nil, fmt.Errorf("backend %q: missing port", rawURL)
		}
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if weight <= 0 {
		weight = 1
	}
	return &Backend{
		URL:      rawURL,
		Scheme:   u.Scheme,
		Addr:     net.JoinHostPort(u.Hostname(), port),
		Host:     u.Hostname(),
		BasePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		Weight:   weight,
		st:       st,
		scope:    scope,
	}, nil
}

// Scope is the Registry scope the backend was created in ("" for
// NewBackend).
func (b *Backend) Scope() string { return b.scope }

// Active is the number of requests in flight on the backend.
func (b *Backend) Active() int64 { return b.st.active.Load() }

// Acquire counts a request starting on b, ignoring any connection limit.
// Every Acquire or successful TryAcquire must be paired with a Release.
func (b *Backend) Acquire() { b.st.active.Add(1) }

// Release counts a request on b as finished and wakes requests waiting
// for a free connection.
func (b *Backend) Release() {
	s := b.st
	s.active.Add(-1)
	if s.waiters.Load() > 0 {
		s.mu.Lock()
		if s.wake != nil {
			close(s.wake)
			s.wake = nil
		}
		s.mu.Unlock()
	}
}

// TryAcquire counts a request starting on b, within the pool's connection
// limit. Without a limit it is Acquire. When the limit is reached it waits
// for a Release up to the pool's MaxConnsWait and then returns
// ErrPoolFull; it returns ctx.Err() if ctx ends first. On a nil error the
// caller must Release.
func (b *Backend) TryAcquire(ctx context.Context) error {
	if b.maxConns <= 0 {
		b.st.active.Add(1)
		return nil
	}
	if b.st.tryInc(b.maxConns) {
		return nil
	}
	if b.maxWait <= 0 {
		return ErrPoolFull
	}
	return b.st.wait(ctx, b.maxConns, b.maxWait)
}

// tryInc increments active if it is below max.
func (s *backendState) tryInc(max int64) bool {
	for {
		n := s.active.Load()
		if n >= max {
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// wait blocks until tryInc succeeds, d passes or ctx ends. A waiter is
// counted before it checks the counter, and Release decrements the counter
// before it looks for waiters, so a Release is never missed.
func (s *backendState) wait(ctx context.Context, max int64, d time.Duration) error {
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		ch := s.wake
		s.mu.Unlock()
		if s.tryInc(max) {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			if s.tryInc(max) {
				return nil
			}
			return ErrPoolFull
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Available reports whether b may be picked: its active health state is up
// (or health checks are off) and outlier detection has not ejected it.
func (b *Backend) Available() bool { return b.st.available() }

// Up reports the active health state: false once health checks marked the
// backend down, true otherwise (also when checks are off).
func (b *Backend) Up() bool { return !b.st.down.Load() }

// EjectedUntil returns the end of the current outlier ejection, or the
// zero time when the backend is not ejected.
func (b *Backend) EjectedUntil() time.Time {
	u := b.st.ejectedUntil.Load()
	if u == 0 || u <= time.Now().UnixNano() {
		return time.Time{}
	}
	return time.Unix(0, u)
}

// available is checked on every pick: two atomic loads, and a clock read
// only while an ejection is recorded.
func (s *backendState) available() bool {
	return !s.down.Load() && (s.ejectedUntil.Load() == 0 || s.ejectionOver())
}

// ejectionOver reports whether a recorded ejection has ended, and clears
// it if so.
func (s *backendState) ejectionOver() bool {
	u := s.ejectedUntil.Load()
	if u != 0 && time.Now().UnixNano() < u {
		return false
	}
	s.ejectedUntil.CompareAndSwap(u, 0)
	return true
}

// availableAt is available at the given time, without clearing anything.
func (s *backendState) availableAt(now int64) bool {
	return !s.down.Load() && s.ejectedUntil.Load() <= now
}

// hasRoom reports whether b is below its connection limit.
func (b *Backend) hasRoom() bool {
	return b.maxConns <= 0 || b.st.active.Load() < b.maxConns
}
