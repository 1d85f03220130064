package upstream

import (
	"fmt"
	"math"
	"strconv"
	"testing"
)

const hashKeys = 100000

// keyHashes returns the hashes of hashKeys distinct client addresses.
func keyHashes() []uint64 {
	hs := make([]uint64, hashKeys)
	for i := range hs {
		hs[i] = HashString(fmt.Sprintf("192.168.%d.%d", i/256, i%256))
	}
	return hs
}

// urls maps each key to the URL of the backend p picks for it.
func urls(p *Pool, hs []uint64) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = p.Pick(h).URL
	}
	return out
}

func TestConsistentHashStable(t *testing.T) {
	hs := keyHashes()
	a := urls(pool(t, backends(t, 5), PoolOptions{Strategy: StrategyConsistentHash}), hs)
	// Another pool over backends with the same URLs, built separately.
	b := urls(pool(t, backends(t, 5), PoolOptions{Strategy: StrategyConsistentHash}), hs)
	for i := range hs {
		if a[i] != b[i] {
			t.Fatalf("key %d: %s, then %s", i, a[i], b[i])
		}
	}
	p := pool(t, backends(t, 5), PoolOptions{Strategy: StrategyConsistentHash})
	for i := range 1000 {
		if p.Pick(hs[i]) != p.Pick(hs[i]) {
			t.Fatal("same key, different backends")
		}
	}
}

func TestConsistentHashBalance(t *testing.T) {
	for _, tt := range []struct {
		n       int
		weights []int
	}{
		{n: 3},
		{n: 10},
		{n: 3, weights: []int{1, 2, 3}},
	} {
		bs := backends(t, tt.n, tt.weights...)
		p := pool(t, bs, PoolOptions{Strategy: StrategyConsistentHash})
		picks := make([]int, 0, hashKeys)
		for _, h := range keyHashes() {
			picks = append(picks, indexOf(bs, p.Pick(h)))
		}
		w := tt.weights
		if w == nil {
			w = make([]int, tt.n)
			for i := range w {
				w[i] = 1
			}
		}
		checkShares(t, picks, w, 0.05)
	}
}

// TestConsistentHashRemoval removes one of n backends from the
// configuration: besides the keys it held, at most 1/n of the keys move.
func TestConsistentHashRemoval(t *testing.T) {
	hs := keyHashes()
	for _, n := range []int{3, 10, 50} {
		bs := backends(t, n)
		before := urls(pool(t, bs, PoolOptions{Strategy: StrategyConsistentHash}), hs)
		for _, removed := range []int{0, n / 2, n - 1} {
			rest := backends(t, n)
			rest = append(rest[:removed:removed], rest[removed+1:]...)
			after := urls(pool(t, rest, PoolOptions{Strategy: StrategyConsistentHash}), hs)
			gone := bs[removed].URL
			moved, orphans := 0, 0
			for i := range hs {
				switch {
				case before[i] == gone:
					orphans++
				case before[i] != after[i]:
					moved++
				}
			}
			t.Logf("n=%d removed %d: %d keys of it, %d others moved (%.2f%%)", n, removed, orphans, moved, 100*float64(moved)/hashKeys)
			if limit := hashKeys / n; moved > limit {
				t.Errorf("n=%d removed %d: %d other keys moved, want <= %d", n, removed, moved, limit)
			}
			if math.Abs(float64(orphans)-hashKeys/float64(n)) > 0.05*hashKeys/float64(n) {
				t.Errorf("n=%d: removed backend held %d keys, want about %d", n, orphans, hashKeys/n)
			}
		}
	}
}

// TestConsistentHashUnavailable: keys of an unavailable backend fall
// through to the next table entries and spread over the others; no other
// key moves, and all return when it recovers.
func TestConsistentHashUnavailable(t *testing.T) {
	hs := keyHashes()
	bs := backends(t, 5)
	p := pool(t, bs, PoolOptions{Strategy: StrategyConsistentHash})
	before := urls(p, hs)
	setDown(bs[2], true)
	during := urls(p, hs)
	spread := map[string]int{}
	for i := range hs {
		switch {
		case during[i] == bs[2].URL:
			t.Fatal("picked the down backend")
		case before[i] == bs[2].URL:
			spread[during[i]]++
		case during[i] != before[i]:
			t.Fatalf("key %d moved from %s to %s", i, before[i], during[i])
		}
	}
	t.Logf("orphaned keys: %v", spread)
	if len(spread) != 4 {
		t.Errorf("orphaned keys went to %d backends, want 4: %v", len(spread), spread)
	}
	for u, c := range spread {
		if c < hashKeys/5/4*8/10 {
			t.Errorf("%s took %d orphaned keys: %v", u, c, spread)
		}
	}
	setDown(bs[2], false)
	after := urls(p, hs)
	for i := range hs {
		if after[i] != before[i] {
			t.Fatalf("key %d: %s after recovery, was %s", i, after[i], before[i])
		}
	}
}

func TestMaglevSize(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want uint64
	}{{1, 65537}, {655, 65537}, {656, 65609}, {1000, 100003}} {
		got := maglevSize(tt.n)
		if got != tt.want || !isPrime(got) || got < uint64(100*tt.n) {
			t.Errorf("maglevSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	// The hash is part of the contract between proxy instances: pin it.
	if got, want := HashString("10.0.0.1"), HashBytes([]byte("10.0.0.1")); got != want {
		t.Errorf("HashString = %#x, HashBytes = %#x", got, want)
	}
	if got := strconv.FormatUint(HashString(""), 16); got != pinnedEmptyHash {
		t.Errorf(`HashString("") = %s, want %s`, got, pinnedEmptyHash)
	}
	if HashString("a") == HashString("b") {
		t.Error("collision")
	}
}

// pinnedEmptyHash is mix64(FNV-1a offset basis).
var pinnedEmptyHash = strconv.FormatUint(mix64(fnvOffset), 16)
