package upstream

import (
	"fmt"
	"math/bits"
)

// Consistent hashing with Maglev (Eisenbud et al., NSDI 2016).
//
// Every backend has a pseudo-random permutation of the table slots,
// derived from its URL; backends take turns claiming their next preferred
// free slot until the table is full (a backend with a lower weight skips
// turns in proportion). A key's hash selects a slot. The table size is a
// prime of at least 100 × backends (65537 for up to 655 backends), so
// shares differ by well under 1%, and removing a backend moves few keys
// beyond those it held.
//
// When the slot's backend is not acceptable (down, ejected, full or
// already tried) the key falls through to the next slots of its own probe
// sequence (a stride derived from the key, so that the keys of a missing
// backend spread evenly over the others) until one is; every other key
// keeps its backend.

// maglevMinSize is the table size for small pools (a prime).
const maglevMinSize = 65537

// maglevMaxBackends bounds a consistent_hash pool (slots hold uint16).
const maglevMaxBackends = 1<<16 - 1

const maglevEmpty = 0xffff

type maglev struct {
	backends []*Backend
	table    []uint16
	// scan bounds the slots tried after the key's own before falling
	// back to a walk of the backends.
	scan int
}

func newMaglev(backends []*Backend) (*maglev, error) {
	n := len(backends)
	if n > maglevMaxBackends {
		return nil, fmt.Errorf("consistent_hash supports at most %d backends (got %d)", maglevMaxBackends, n)
	}
	m := maglevSize(n)
	table := make([]uint16, m)
	for i := range table {
		table[i] = maglevEmpty
	}
	type perm struct {
		pos, skip uint64
		// turn is the round at which the backend next claims a slot,
		// scaled by the largest weight.
		turn uint64
	}
	perms := make([]perm, n)
	var maxW uint64
	for _, b := range backends {
		maxW = max(maxW, uint64(b.Weight))
	}
	for i, b := range backends {
		h := HashString(b.URL)
		perms[i] = perm{
			pos:  h % m,
			skip: mix64(h^0x9e3779b97f4a7c15)%(m-1) + 1,
			turn: maxW,
		}
	}
	filled := uint64(0)
	for round := uint64(1); filled < m; round++ {
		for i, b := range backends {
			p := &perms[i]
			if round*uint64(b.Weight) < p.turn {
				continue
			}
			p.turn += maxW
			for table[p.pos] != maglevEmpty {
				p.pos += p.skip
				if p.pos >= m {
					p.pos -= m
				}
			}
			table[p.pos] = uint16(i)
			if filled++; filled == m {
				break
			}
		}
	}
	return &maglev{backends: backends, table: table, scan: 8*n + 64}, nil
}

// maglevSize returns the table size for n backends: the smallest prime
// at least 100 × n, and at least maglevMinSize.
func maglevSize(n int) uint64 {
	m := uint64(100 * n)
	if m <= maglevMinSize {
		return maglevMinSize
	}
	for !isPrime(m) {
		m++
	}
	return m
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func (s *maglev) pick(hash uint64, f filter) *Backend {
	m := uint64(len(s.table))
	i, _ := bits.Mul64(mix64(hash), m)
	if b := s.backends[s.table[i]]; f.ok(b) {
		return b
	}
	// The key's own stride: the keys of a missing backend spread over
	// the others in proportion to their shares (neighbouring slots are
	// not independent in a Maglev table).
	step := mix64(hash^0x2545f4914f6cdd1d)%(m-1) + 1
	for range s.scan {
		if i += step; i >= m {
			i -= m
		}
		if b := s.backends[s.table[i]]; f.ok(b) {
			return b
		}
	}
	// Nearly every backend is rejected: walk them from a point the key
	// decides.
	n := uint64(len(s.backends))
	j := hash % n
	for range n {
		if b := s.backends[j]; f.ok(b) {
			return b
		}
		if j++; j == n {
			j = 0
		}
	}
	return nil
}

// HashString hashes a consistent_hash key (a client address, a header or
// cookie value). The hash is the same in every process and release, so
// several proxies with the same configuration map a key to the same
// backend.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// HashBytes is HashString for a byte slice.
func HashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// mix64 is the splitmix64 finaliser: it spreads every input bit over the
// whole word.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
