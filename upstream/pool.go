package upstream

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Strategies, as named in the configuration.
const (
	StrategyRoundRobin         = "round_robin"
	StrategyWeightedRoundRobin = "weighted_round_robin"
	StrategyLeastConnections   = "least_connections"
	StrategyRandomTwoChoices   = "random_two_choices"
	StrategyConsistentHash     = "consistent_hash"
)

// PoolOptions configures a pool.
type PoolOptions struct {
	// Strategy selects a backend; "" means round_robin.
	Strategy string
	// FailOpen picks among all backends when none is available, instead
	// of Pick returning nil.
	FailOpen bool
	// MaxConns bounds the requests in flight per backend (0: unlimited).
	// Pick prefers backends below the limit; TryAcquire enforces it.
	MaxConns int
	// MaxConnsWait is how long TryAcquire waits for a free slot before
	// ErrPoolFull (0: no wait).
	MaxConnsWait time.Duration
	// Outlier configures passive health (off when Consecutive is 0).
	Outlier OutlierOptions
	// Health configures active health checks (nil: off). They run once
	// the pool is given to Registry.Sync (or to a HealthChecker).
	Health *HealthOptions
}

// Pool is an ordered set of backends with a selection strategy. It is
// immutable and safe for concurrent use; the backends' state changes
// underneath it.
type Pool struct {
	backends []*Backend
	sel      selector
	needHash bool
	// levels of preference tried by Pick, see filter.
	first, last level

	outlier OutlierOptions
	health  *HealthOptions
	// ejectMu serialises ejection decisions so that the max ejection
	// percentage holds.
	ejectMu sync.Mutex
}

// NewPool builds a pool over backends, which must be distinct and not
// already in another pool (a Registry hands out a new Backend value per
// call, sharing state, so each configuration builds fresh ones).
func NewPool(backends []*Backend, opt PoolOptions) (*Pool, error) {
	if len(backends) == 0 {
		return nil, errors.New("pool has no backends")
	}
	seen := make(map[*Backend]bool, len(backends))
	for _, b := range backends {
		switch {
		case b == nil:
			return nil, errors.New("pool has a nil backend")
		case seen[b]:
			return nil, fmt.Errorf("backend %s is listed twice", b.URL)
		case b.pool != nil:
			return nil, fmt.Errorf("backend %s already belongs to a pool", b.URL)
		}
		seen[b] = true
	}
	if opt.MaxConns < 0 {
		return nil, fmt.Errorf("max conns must not be negative (got %d)", opt.MaxConns)
	}
	if opt.MaxConnsWait < 0 {
		return nil, fmt.Errorf("max conns wait must not be negative (got %s)", opt.MaxConnsWait)
	}
	outlier, err := opt.Outlier.normalise()
	if err != nil {
		return nil, err
	}
	var health *HealthOptions
	if opt.Health != nil {
		h, err := opt.Health.normalise()
		if err != nil {
			return nil, err
		}
		health = &h
	}

	p := &Pool{
		backends: backends,
		first:    levelAvailable,
		last:     levelAvailable,
		outlier:  outlier,
		health:   health,
	}
	if opt.MaxConns > 0 {
		p.first = levelRoom
	}
	if opt.FailOpen {
		p.last = levelAny
	}
	switch opt.Strategy {
	case "", StrategyRoundRobin:
		p.sel = &roundRobin{backends: backends}
	case StrategyWeightedRoundRobin:
		p.sel = newWeightedRoundRobin(backends)
	case StrategyLeastConnections:
		p.sel = newLeastConnections(backends)
	case StrategyRandomTwoChoices:
		p.sel = newTwoChoices(backends)
	case StrategyConsistentHash:
		m, err := newMaglev(backends)
		if err != nil {
			return nil, err
		}
		p.sel = m
		p.needHash = true
	default:
		return nil, fmt.Errorf("unknown strategy %q", opt.Strategy)
	}
	for _, b := range backends {
		b.pool = p
		b.maxConns = int64(opt.MaxConns)
		b.maxWait = opt.MaxConnsWait
	}
	return p, nil
}

// Backends returns the pool's backends in configuration order. The slice
// must not be modified.
func (p *Pool) Backends() []*Backend { return p.backends }

// HealthChecked reports whether the pool has active health checks.
func (p *Pool) HealthChecked() bool { return p.health != nil }

// NeedsHash reports whether Pick uses its hash argument (consistent_hash);
// other strategies ignore it and the caller may pass 0.
func (p *Pool) NeedsHash() bool { return p.needHash }

// Pick selects an available backend, preferring one below its connection
// limit. hash keys consistent_hash (see HashString). It returns nil when
// no backend is available, unless the pool fails open, in which case it
// picks among all backends.
func (p *Pool) Pick(hash uint64) *Backend {
	return p.pickLevels(hash, p.first, p.last, nil)
}

// PickExcluding is Pick for a retry: it prefers a backend not in tried.
// The order is: untried and available (below the connection limit first),
// then tried and available, then, when the pool fails open, untried and
// then tried among all. So a retry goes to another backend when one is
// available, even a full one, and an available backend already tried
// wins over an unavailable one. It returns nil only when Pick would.
func (p *Pool) PickExcluding(hash uint64, tried []*Backend) *Backend {
	if len(tried) == 0 {
		return p.Pick(hash)
	}
	last := min(p.last, levelAvailable)
	if b := p.pickLevels(hash, p.first, last, tried); b != nil {
		return b
	}
	if b := p.pickLevels(hash, p.first, last, nil); b != nil {
		return b
	}
	if p.last == levelAny {
		if b := p.sel.pick(hash, filter{level: levelAny, tried: tried}); b != nil {
			return b
		}
		return p.sel.pick(hash, filter{level: levelAny})
	}
	return nil
}

func (p *Pool) pickLevels(hash uint64, first, last level, tried []*Backend) *Backend {
	for l := first; l <= last; l++ {
		if b := p.sel.pick(hash, filter{level: l, tried: tried}); b != nil {
			return b
		}
	}
	return nil
}

// level is how demanding a pick is.
type level uint8

const (
	// levelRoom: available and below the connection limit.
	levelRoom level = iota
	// levelAvailable: available (health up, not ejected).
	levelAvailable
	// levelAny: any backend (fail open).
	levelAny
)

// filter says which backends a pick may return. It is passed by value so
// that picking does not allocate.
type filter struct {
	tried []*Backend
	level level
}

func (f filter) ok(b *Backend) bool {
	if f.level != levelAny && !b.st.available() ||
		f.level == levelRoom && !b.hasRoom() {
		return false
	}
	return len(f.tried) == 0 || !f.wasTried(b)
}

func (f filter) wasTried(b *Backend) bool {
	for _, t := range f.tried {
		if t == b {
			return true
		}
	}
	return false
}
