package loader

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// sourceLimiter is the userspace twin of the kernel's rg_sources map: a
// token bucket per source address, at most max sources, the least
// recently seen evicted first (as an LRU hash evicts). Buckets are kept
// as GCRA theoretical arrival times, the same arithmetic as bpf/limiter.c.
type sourceLimiter struct {
	mu      sync.Mutex
	max     int
	sources map[netip.Addr]*list.Element
	lru     list.List // of *bucket, most recent first
}

type bucket struct {
	addr netip.Addr
	tat  int64 // theoretical arrival time, monotonic nanoseconds
}

func newSourceLimiter(max int) *sourceLimiter {
	return &sourceLimiter{max: max, sources: make(map[netip.Addr]*list.Element)}
}

// allow charges one new connection from a to its bucket at time now and
// reports whether it fits.
func (l *sourceLimiter) allow(a netip.Addr, now int64, interval, tolerance time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.sources[a]; ok {
		l.lru.MoveToFront(e)
		b := e.Value.(*bucket)
		next := max(b.tat, now) + int64(interval)
		if next-now > int64(tolerance) {
			return false
		}
		b.tat = next
		return true
	}
	for len(l.sources) >= l.max {
		l.evictOldest()
	}
	// A fresh bucket is full: this connection takes one token.
	l.sources[a] = l.lru.PushFront(&bucket{addr: a, tat: now + int64(interval)})
	return true
}

// setMax changes the number of tracked sources, evicting the least
// recently seen when it shrinks.
func (l *sourceLimiter) setMax(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = n
	for len(l.sources) > l.max {
		l.evictOldest()
	}
}

func (l *sourceLimiter) evictOldest() {
	e := l.lru.Back()
	delete(l.sources, e.Value.(*bucket).addr)
	l.lru.Remove(e)
}

func (l *sourceLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// banTable is the userspace twin of rg_bans: source address to expiry.
// Expired entries stop counting at once and are deleted by sweep.
type banTable struct {
	mu   sync.RWMutex
	bans map[netip.Addr]time.Time
}

func newBanTable() *banTable { return &banTable{bans: make(map[netip.Addr]time.Time)} }

func (t *banTable) banned(a netip.Addr, now time.Time) bool {
	t.mu.RLock()
	until, ok := t.bans[a]
	t.mu.RUnlock()
	return ok && now.Before(until)
}

// add bans a until the given time. A full table drops the ban that
// expires first, as the kernel's LRU drops one to make room.
func (t *banTable) add(a netip.Addr, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.bans[a]; !ok && len(t.bans) >= maxBans {
		var first netip.Addr
		var firstUntil time.Time
		for b, u := range t.bans {
			if !first.IsValid() || u.Before(firstUntil) {
				first, firstUntil = b, u
			}
		}
		delete(t.bans, first)
	}
	t.bans[a] = until
}

func (t *banTable) remove(a netip.Addr) {
	t.mu.Lock()
	delete(t.bans, a)
	t.mu.Unlock()
}

// list returns the bans in force at now, by address.
func (t *banTable) list(now time.Time) []Ban {
	t.mu.RLock()
	out := make([]Ban, 0, len(t.bans))
	for a, until := range t.bans {
		if now.Before(until) {
			out = append(out, Ban{IP: a, Until: until})
		}
	}
	t.mu.RUnlock()
	sortBans(out)
	return out
}

// sweep deletes the bans that expired by now.
func (t *banTable) sweep(now time.Time) {
	t.mu.Lock()
	for a, until := range t.bans {
		if !now.Before(until) {
			delete(t.bans, a)
		}
	}
	t.mu.Unlock()
}

func sortBans(bans []Ban) {
	slices.SortFunc(bans, func(a, b Ban) int { return a.IP.Compare(b.IP) })
}

// epoch anchors monoNow.
var epoch = time.Now()

// monoNow is a monotonic clock in nanoseconds for the token buckets.
func monoNow() int64 { return int64(time.Since(epoch)) }
