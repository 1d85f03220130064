package ratelimit

import (
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"time"
)

// Store is the state of one limiter: the keys it has seen and their
// theoretical arrival times. It is safe for concurrent use, and may be
// shared by the limiters of two configuration snapshots.
//
// Each shard is an open-addressing hash table with linear probing and
// backward-shift deletion: 32 bytes per slot, at most 80% full, no
// tombstones, no pointers. (Go maps would leave a tombstone for every
// evicted key and double their size under the churn of a full store.)
type Store struct {
	id        string
	base      time.Time
	interval  int64 // nanoseconds between two requests at the limit rate
	tolerance int64 // burst * interval
	window    int64
	limit     int
	perShard  int
	seed      maphash.Seed
	seed2     maphash.Seed
	shards    []shard
}

// shard is one lock and its part of the keys, padded to its own cache
// line.
type shard struct {
	mu    sync.Mutex
	slots []slot // len is 0 or a power of two
	count int
	rng   uint64
	_     [64 - 8 - 24 - 8 - 8]byte
}

// storeKey is an IPv6 (or IPv4-mapped) address, or the 128-bit hash of a
// header or claim value.
type storeKey [2]uint64

// slot is one key and its state. tat is 0 in an empty slot: a stored TAT
// is always at least one interval after Store.base.
type slot struct {
	key storeKey
	tat int64  // theoretical arrival time, nanoseconds since Store.base
	win uint32 // fixed window of n
	n   uint32 // requests of the key in window win (for Options.OnExceeded)
}

// Table sizing.
const (
	// A table grows past 80% full.
	maxLoadNum, maxLoadDen = 4, 5
	// minSlots is the size of a shard's first table.
	minSlots = 8
	// evictSample is how many slots a full shard looks at to pick the key
	// to evict; cleanupSample how many every insert looks at for expired
	// keys.
	evictSample   = 16
	cleanupSample = 2
)

// shardCount returns how many shards hold maxKeys keys: up to 64
// shards of one small table each, else between 64 and 127 shards whose
// tables, once full, are each a power of two of slots about 75-80% used.
func shardCount(maxKeys int) int {
	const perTable = 48 // keys of a 64-slot table at 75%
	tables := (maxKeys + perTable - 1) / perTable
	if tables <= 64 {
		return max(tables, 1)
	}
	per := 1
	for tables/(per*2) >= 64 {
		per *= 2
	}
	return (tables + per - 1) / per
}

func newStore(id string, now time.Time, interval int64, cfg Settings) *Store {
	n := shardCount(cfg.MaxKeys)
	s := &Store{
		id:        id,
		base:      now,
		interval:  interval,
		tolerance: interval * int64(cfg.Burst),
		window:    int64(cfg.Window),
		limit:     cfg.Limit,
		perShard:  max(cfg.MaxKeys/n, 1),
		seed:      maphash.MakeSeed(),
		seed2:     maphash.MakeSeed(),
		shards:    make([]shard, n),
	}
	for i := range s.shards {
		s.shards[i].rng = uint64(i)*0x9e3779b97f4a7c15 + 1
	}
	return s
}

// Len returns the number of keys held.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.count
		sh.mu.Unlock()
	}
	return n
}

// MaxKeys returns the most keys the store holds.
func (s *Store) MaxKeys() int { return s.perShard * len(s.shards) }

func ipKey(a netip.Addr) storeKey {
	b := a.As16()
	return storeKey{leUint64(b[:8]), leUint64(b[8:])}
}

func leUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// hashKey returns the key of a header or claim value.
func (s *Store) hashKey(v string) storeKey {
	return storeKey{maphash.String(s.seed, v), maphash.String(s.seed2, v)}
}

// hashBytes is hashKey for a value held in bytes.
func (s *Store) hashBytes(v []byte) storeKey {
	return storeKey{maphash.Bytes(s.seed, v), maphash.Bytes(s.seed2, v)}
}

// hash is the seeded hash that places a key: its high bits pick the
// shard, its low bits the slot, so that clients cannot aim at one shard
// or one run of slots.
func (s *Store) hash(k storeKey) uint64 { return maphash.Comparable(s.seed, k) }

// result is the outcome of one take.
type result struct {
	ok        bool
	remaining int
	reset     time.Duration
	count     uint32 // requests of the key in the current window
}

// take counts one request of key k at time t.
func (s *Store) take(k storeKey, t time.Time) result {
	now := max(int64(t.Sub(s.base)), 0)
	win := uint32(now / s.window)
	h := s.hash(k)
	idx, _ := bits.Mul64(h, uint64(len(s.shards)))
	sh := &s.shards[idx]

	sh.mu.Lock()
	i, found := sh.find(k, h)
	if !found {
		if sh.makeRoom(s, now) {
			i, _ = sh.find(k, h)
		}
		sh.slots[i] = slot{key: k}
		sh.count++
	}
	e := &sh.slots[i]
	if e.win != win {
		e.win, e.n = win, 0
	}
	if e.n < math.MaxUint32 {
		e.n++
	}
	next := max(e.tat, now) + s.interval
	var r result
	if ahead := next - now; ahead <= s.tolerance {
		e.tat = next
		r = result{ok: true, remaining: int((s.tolerance - ahead) / s.interval), reset: time.Duration(ahead)}
	} else {
		r = result{reset: time.Duration(ahead - s.tolerance)}
	}
	r.count = e.n
	sh.mu.Unlock()
	return r
}

// find returns the slot of k, or the empty slot where it would go.
func (sh *shard) find(k storeKey, h uint64) (int, bool) {
	if len(sh.slots) == 0 {
		return 0, false
	}
	mask := len(sh.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		e := &sh.slots[i]
		if e.tat == 0 {
			return i, false
		}
		if e.key == k {
			return i, true
		}
	}
}

// makeRoom prepares sh for one more key: it deletes expired keys among a
// few sampled slots and, when the shard is full, evicts one key (an
// expired one, else the sampled one closest to expiring); then it grows
// the table if it would be more than 80% full. It reports whether slots
// moved, so that a position found before is stale. Called with sh.mu
// held.
func (sh *shard) makeRoom(s *Store, now int64) bool {
	moved := false
	full := sh.count >= s.perShard
	if sh.count > 0 {
		sample := cleanupSample
		if full {
			sample = evictSample
		}
		mask := len(sh.slots) - 1
		start := int(sh.next()) & mask
		victim, victimTAT := -1, int64(math.MaxInt64)
		for j, seen := 0, 0; j < len(sh.slots) && seen < sample; j++ {
			i := (start + j) & mask
			e := &sh.slots[i]
			if e.tat == 0 {
				continue
			}
			seen++
			if e.tat <= now {
				victim, victimTAT = i, e.tat
				break
			}
			if e.tat < victimTAT {
				victim, victimTAT = i, e.tat
			}
		}
		if victim >= 0 && (full || victimTAT <= now) {
			sh.remove(s, victim)
			moved = true
		}
	}
	if (sh.count+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
		sh.grow(s)
		moved = true
	}
	return moved
}

// next returns a pseudo-random number (xorshift64) for sampling.
func (sh *shard) next() uint64 {
	x := sh.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	sh.rng = x
	return x
}

// remove empties slot i and shifts back the keys of its probe run.
func (sh *shard) remove(s *Store, i int) {
	mask := len(sh.slots) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		e := &sh.slots[j]
		if e.tat == 0 {
			break
		}
		home := int(s.hash(e.key)) & mask
		// e stays when its home lies cyclically in (i, j].
		if (i < j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
			continue
		}
		sh.slots[i] = *e
		i = j
	}
	sh.slots[i] = slot{}
	sh.count--
}

// grow doubles the table (or makes the first one).
func (sh *shard) grow(s *Store) {
	old := sh.slots
	sh.slots = make([]slot, max(2*len(old), minSlots))
	mask := len(sh.slots) - 1
	for _, e := range old {
		if e.tat == 0 {
			continue
		}
		i := int(s.hash(e.key)) & mask
		for sh.slots[i].tat != 0 {
			i = (i + 1) & mask
		}
		sh.slots[i] = e
	}
}
