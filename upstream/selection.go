package upstream

import (
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// selector is one selection strategy. pick returns a backend that f
// accepts, or nil when there is none. Implementations are safe for
// concurrent use and do not allocate.
type selector interface {
	pick(hash uint64, f filter) *Backend
}

// roundRobin hands out backends in order with a lock-free counter,
// skipping those the filter rejects (the next one takes their turn).
type roundRobin struct {
	backends []*Backend
	next     atomic.Uint64
}

func (s *roundRobin) pick(_ uint64, f filter) *Backend {
	n := uint64(len(s.backends))
	var i uint64
	if len(f.tried) > 0 {
		// A retry takes the backend after the one that failed and leaves
		// the counter alone: taking a turn here too would have every
		// request of a pool of two start at the same backend.
		i = (uint64(indexIn(s.backends, f.tried[len(f.tried)-1])) + 1) % n
	} else {
		i = (s.next.Add(1) - 1) % n
	}
	for range n {
		if b := s.backends[i]; f.ok(b) {
			return b
		}
		if i++; i == n {
			i = 0
		}
	}
	return nil
}

// maxSchedule bounds the precomputed weighted schedule (entries), and
// maxScheduleWork the steps spent computing it (entries × backends).
const (
	maxSchedule     = 1 << 14
	maxScheduleWork = 1 << 22
)

// weightedRoundRobin is nginx's smooth weighted round robin. While every
// backend is acceptable it walks a precomputed cycle of the algorithm
// with a lock-free counter. A slot whose backend is rejected is filled by
// running the algorithm live, under a short lock, over the acceptable
// backends: a rejected backend's share then goes to the others in
// proportion to their weights. Pools whose cycle (the sum of the weights
// divided by their GCD) is too long to precompute always run it live.
type weightedRoundRobin struct {
	backends []*Backend
	schedule []uint16 // nil: always live
	next     atomic.Uint64

	mu      sync.Mutex
	weights []int64
	current []int64
}

func newWeightedRoundRobin(backends []*Backend) *weightedRoundRobin {
	s := &weightedRoundRobin{
		backends: backends,
		weights:  make([]int64, len(backends)),
		current:  make([]int64, len(backends)),
	}
	g, sum := 0, 0
	for i, b := range backends {
		s.weights[i] = int64(b.Weight)
		g = gcd(g, b.Weight)
		sum += b.Weight
	}
	if length := sum / g; length <= maxSchedule && length*len(backends) <= maxScheduleWork {
		s.schedule = make([]uint16, length)
		cur := make([]int64, len(backends))
		total := int64(sum / g)
		for k := range s.schedule {
			best := 0
			for i := range backends {
				cur[i] += s.weights[i] / int64(g)
				if cur[i] > cur[best] {
					best = i
				}
			}
			cur[best] -= total
			s.schedule[k] = uint16(best)
		}
	}
	return s
}

// retryScan bounds how far a retry looks ahead in the weighted schedule
// before running the algorithm live.
const retryScan = 64

func (s *weightedRoundRobin) pick(_ uint64, f filter) *Backend {
	if s.schedule != nil && len(f.tried) > 0 {
		// A retry takes the next acceptable slot without consuming it,
		// so the schedule's order holds for the requests' first picks.
		n := s.next.Load()
		for k := range uint64(min(len(s.schedule), retryScan)) {
			if b := s.backends[s.schedule[(n+k)%uint64(len(s.schedule))]]; f.ok(b) {
				return b
			}
		}
		return s.live(f)
	}
	if s.schedule != nil {
		n := s.next.Add(1) - 1
		if b := s.backends[s.schedule[n%uint64(len(s.schedule))]]; f.ok(b) {
			return b
		}
	}
	return s.live(f)
}

// live runs one step of smooth weighted round robin over the backends f
// accepts.
func (s *weightedRoundRobin) live(f filter) *Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := -1
	var total int64
	for i, b := range s.backends {
		if !f.ok(b) {
			continue
		}
		s.current[i] += s.weights[i]
		total += s.weights[i]
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.current[best] -= total
	return s.backends[best]
}

// indexIn returns b's position in backends, or -1.
func indexIn(backends []*Backend, b *Backend) int {
	for i, x := range backends {
		if x == b {
			return i
		}
	}
	return -1
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// uniformWeights reports whether all backends have the same weight.
func uniformWeights(backends []*Backend) bool {
	for _, b := range backends {
		if b.Weight != backends[0].Weight {
			return false
		}
	}
	return true
}

// leastConnections picks the backend with the fewest requests in flight
// (relative to its weight when weights differ, as nginx does), breaking
// ties uniformly at random. It reads every backend's counter, lock-free.
type leastConnections struct {
	backends []*Backend
	uniform  bool
}

func newLeastConnections(backends []*Backend) *leastConnections {
	return &leastConnections{backends: backends, uniform: uniformWeights(backends)}
}

func (s *leastConnections) pick(_ uint64, f filter) *Backend {
	return leastLoaded(s.backends, s.uniform, 0, f)
}

// leastLoaded returns the acceptable backend with the lowest
// (active+bias)/weight, ties broken by reservoir sampling.
func leastLoaded(backends []*Backend, uniform bool, bias int64, f filter) *Backend {
	var (
		best         *Backend
		bestA, bestW int64
		ties         uint32
		rng          prng
	)
	for _, b := range backends {
		if !f.ok(b) {
			continue
		}
		a, w := b.st.active.Load()+bias, int64(b.Weight)
		if best == nil {
			best, bestA, bestW, ties = b, a, w, 1
			continue
		}
		var c int64
		if uniform {
			c = a - bestA
		} else {
			c = a*bestW - bestA*w
		}
		switch {
		case c < 0:
			best, bestA, bestW, ties = b, a, w, 1
		case c == 0:
			ties++
			if rng.s == 0 {
				rng.s = rand.Uint64() | 1
			}
			if rng.below(ties) == 0 {
				best, bestA, bestW = b, a, w
			}
		}
	}
	return best
}

// twoChoices is the power of two random choices: it draws two distinct
// backends and keeps the less loaded, by requests in flight (by
// (active+1)/weight when weights differ). Ties go either way at random.
type twoChoices struct {
	backends []*Backend
	uniform  bool
}

func newTwoChoices(backends []*Backend) *twoChoices {
	return &twoChoices{backends: backends, uniform: uniformWeights(backends)}
}

// p2cTries is how many pairs are drawn before falling back to a scan
// when the draws keep hitting rejected backends.
const p2cTries = 4

func (s *twoChoices) pick(_ uint64, f filter) *Backend {
	n := uint32(len(s.backends))
	if n == 1 {
		if b := s.backends[0]; f.ok(b) {
			return b
		}
		return nil
	}
	for range p2cTries {
		r := rand.Uint64()
		i := below(uint32(r), n)
		j := below(uint32(r>>32), n-1)
		if j >= i {
			j++
		}
		a, b := s.backends[i], s.backends[j]
		aok, bok := f.ok(a), f.ok(b)
		switch {
		case aok && bok:
			return s.better(a, b, r)
		case aok:
			return a
		case bok:
			return b
		}
	}
	return leastLoaded(s.backends, s.uniform, 1, f)
}

func (s *twoChoices) better(a, b *Backend, r uint64) *Backend {
	la, lb := a.st.active.Load(), b.st.active.Load()
	var c int64
	if s.uniform {
		c = la - lb
	} else {
		c = (la+1)*int64(b.Weight) - (lb+1)*int64(a.Weight)
	}
	switch {
	case c < 0:
		return a
	case c > 0:
		return b
	case mix64(r)&1 == 0:
		return a
	default:
		return b
	}
}

// below maps a uniform 32-bit value onto [0, n) (Lemire's reduction).
func below(x, n uint32) uint32 {
	return uint32(uint64(x) * uint64(n) >> 32)
}

// prng is a tiny generator (wyrand), seeded from math/rand/v2 by its
// user on first need, for the many draws of one pick.
type prng struct{ s uint64 }

// below returns a value in [0, n). The generator must be seeded.
func (p *prng) below(n uint32) uint32 {
	p.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(p.s, p.s^0xe7037ed1a0b428db)
	return below(uint32(hi^lo), n)
}
