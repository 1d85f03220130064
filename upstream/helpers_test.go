package upstream

import (
	"fmt"
	"testing"
)

// backends returns n backends with the given weights (1 when weights
// is shorter).
func backends(t testing.TB, n int, weights ...int) []*Backend {
	t.Helper()
	bs := make([]*Backend, n)
	for i := range bs {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		b, err := NewBackend(fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250+1), w)
		if err != nil {
			t.Fatal(err)
		}
		bs[i] = b
	}
	return bs
}

func pool(t testing.TB, bs []*Backend, opt PoolOptions) *Pool {
	t.Helper()
	p, err := NewPool(bs, opt)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func indexOf(bs []*Backend, b *Backend) int {
	for i, x := range bs {
		if x == b {
			return i
		}
	}
	return -1
}

// setDown marks b down as active health checks would.
func setDown(b *Backend, down bool) { b.st.down.Store(down) }

var strategies = []string{
	StrategyRoundRobin,
	StrategyWeightedRoundRobin,
	StrategyLeastConnections,
	StrategyRandomTwoChoices,
	StrategyConsistentHash,
}
