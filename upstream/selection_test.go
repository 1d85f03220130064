package upstream

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRoundRobinOrder(t *testing.T) {
	bs := backends(t, 3)
	p := pool(t, bs, PoolOptions{})
	for i := range 9 {
		if got := indexOf(bs, p.Pick(0)); got != i%3 {
			t.Fatalf("pick %d = backend %d, want %d", i, got, i%3)
		}
	}
}

func TestRoundRobinSkipsUnavailable(t *testing.T) {
	bs := backends(t, 3)
	p := pool(t, bs, PoolOptions{})
	setDown(bs[1], true)
	var got []int
	for range 6 {
		got = append(got, indexOf(bs, p.Pick(0)))
	}
	// The down backend's turn goes to the next one.
	if want := []int{0, 2, 2, 0, 2, 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("picks = %v, want %v", got, want)
	}
	setDown(bs[1], false)
	seen := map[int]bool{}
	for range 3 {
		seen[indexOf(bs, p.Pick(0))] = true
	}
	if len(seen) != 3 {
		t.Errorf("after recovery picked %v, want all three", seen)
	}
}

// maxRun returns the longest run of one value in picks.
func maxRun(picks []int) int {
	best, run := 0, 0
	for i := range picks {
		if i > 0 && picks[i] == picks[i-1] {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return best
}

func checkShares(t *testing.T, picks []int, weights []int, tolerance float64) {
	t.Helper()
	counts := make([]int, len(weights))
	for _, i := range picks {
		counts[i]++
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		want := float64(w) / float64(total)
		got := float64(counts[i]) / float64(len(picks))
		if math.Abs(got-want) > tolerance*want {
			t.Errorf("backend %d: share %.4f, want %.4f ± %.0f%% (counts %v)", i, got, want, tolerance*100, counts)
		}
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	for _, tt := range []struct {
		name    string
		weights []int
		live    bool
	}{
		{name: "schedule", weights: []int{5, 3, 2}},
		// A cycle too long to precompute runs the algorithm live.
		{name: "live", weights: []int{500000, 300000, 199999}, live: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bs := backends(t, 3, tt.weights...)
			p := pool(t, bs, PoolOptions{Strategy: StrategyWeightedRoundRobin})
			if live := p.sel.(*weightedRoundRobin).schedule == nil; live != tt.live {
				t.Fatalf("live = %v, want %v", live, tt.live)
			}
			picks := make([]int, 10000)
			for i := range picks {
				picks[i] = indexOf(bs, p.Pick(0))
			}
			checkShares(t, picks, tt.weights, 0.05)
			// Smooth: 5:3:2 never gives the heaviest more than two in a row.
			if r := maxRun(picks); r > 2 {
				t.Errorf("longest run = %d, want <= 2", r)
			}
			if !tt.live {
				want := []int{0, 1, 2, 0, 0, 1, 0, 2, 1, 0} // nginx's order
				if got := picks[:10]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("first cycle = %v, want %v", got, want)
				}
			}
		})
	}
}

func TestWeightedRoundRobinDegraded(t *testing.T) {
	// With the weight-3 backend down, the others share in proportion 5:2.
	bs := backends(t, 3, 5, 3, 2)
	p := pool(t, bs, PoolOptions{Strategy: StrategyWeightedRoundRobin})
	setDown(bs[1], true)
	picks := make([]int, 0, 10000)
	for range 10000 {
		i := indexOf(bs, p.Pick(0))
		if i == 1 {
			t.Fatal("picked the down backend")
		}
		picks = append(picks, map[int]int{0: 0, 2: 1}[i])
	}
	checkShares(t, picks, []int{5, 2}, 0.05)
	if r := maxRun(picks); r > 4 {
		t.Errorf("longest run = %d, want <= 4", r)
	}
}

func TestLeastConnections(t *testing.T) {
	bs := backends(t, 3)
	p := pool(t, bs, PoolOptions{Strategy: StrategyLeastConnections})

	// Ties (all idle) are broken at random: every backend gets a share.
	counts := make([]int, 3)
	for range 3000 {
		counts[indexOf(bs, p.Pick(0))]++
	}
	for i, c := range counts {
		if c < 800 {
			t.Errorf("all idle: backend %d picked %d/3000 times (counts %v)", i, c, counts)
		}
	}

	bs[0].Acquire()
	bs[0].Acquire()
	bs[1].Acquire()
	for range 100 {
		if got := p.Pick(0); got != bs[2] {
			t.Fatalf("picked backend %d, want the idle backend 2", indexOf(bs, got))
		}
	}
	// A tie between 1 and 2 goes both ways.
	bs[2].Acquire()
	counts = make([]int, 3)
	for range 1000 {
		counts[indexOf(bs, p.Pick(0))]++
	}
	if counts[0] != 0 || counts[1] < 300 || counts[2] < 300 {
		t.Errorf("tie between 1 and 2: counts %v", counts)
	}
	// The least loaded backend down: the next least loaded.
	setDown(bs[1], true)
	setDown(bs[2], true)
	if got := p.Pick(0); got != bs[0] {
		t.Errorf("picked backend %d, want 0", indexOf(bs, got))
	}
}

func TestLeastConnectionsWeighted(t *testing.T) {
	// Active/weight: 2/1 > 3/3, so the heavier backend wins.
	bs := backends(t, 2, 1, 3)
	p := pool(t, bs, PoolOptions{Strategy: StrategyLeastConnections})
	for range 2 {
		bs[0].Acquire()
	}
	for range 3 {
		bs[1].Acquire()
	}
	for range 100 {
		if got := p.Pick(0); got != bs[1] {
			t.Fatalf("picked backend %d, want 1", indexOf(bs, got))
		}
	}
}

func TestTwoChoices(t *testing.T) {
	bs := backends(t, 10)
	p := pool(t, bs, PoolOptions{Strategy: StrategyRandomTwoChoices})
	// Idle: spread over all.
	counts := make([]int, 10)
	for range 10000 {
		counts[indexOf(bs, p.Pick(0))]++
	}
	for i, c := range counts {
		if c < 700 {
			t.Errorf("idle: backend %d picked %d/10000 times", i, c)
		}
	}
	// A loaded backend loses every pair it is drawn in.
	for range 5 {
		bs[3].Acquire()
	}
	for range 10000 {
		if p.Pick(0) == bs[3] {
			t.Fatal("picked the loaded backend")
		}
	}

	// Two backends: always the less loaded.
	two := backends(t, 2)
	p2 := pool(t, two, PoolOptions{Strategy: StrategyRandomTwoChoices})
	two[0].Acquire()
	for range 100 {
		if p2.Pick(0) != two[1] {
			t.Fatal("picked the loaded backend of two")
		}
	}
}

func TestTwoChoicesWeighted(t *testing.T) {
	// Under load, picks keep active requests in proportion to weights.
	bs := backends(t, 2, 1, 3)
	p := pool(t, bs, PoolOptions{Strategy: StrategyRandomTwoChoices})
	for range 400 {
		p.Pick(0).Acquire()
	}
	a, b := bs[0].Active(), bs[1].Active()
	if a < 99 || a > 101 || a+b != 400 {
		t.Errorf("active = %d, %d; want about 100, 300", a, b)
	}
}

func TestTwoChoicesMostlyDown(t *testing.T) {
	// Draws that keep hitting down backends fall back to a scan.
	bs := backends(t, 50)
	p := pool(t, bs, PoolOptions{Strategy: StrategyRandomTwoChoices})
	for _, b := range bs[1:] {
		setDown(b, true)
	}
	for range 1000 {
		if got := p.Pick(0); got != bs[0] {
			t.Fatalf("picked %v, want the only available backend", got)
		}
	}
}

func TestAllDown(t *testing.T) {
	for _, s := range strategies {
		t.Run(s, func(t *testing.T) {
			bs := backends(t, 3)
			closed := pool(t, bs, PoolOptions{Strategy: s})
			bs2 := backends(t, 3)
			open := pool(t, bs2, PoolOptions{Strategy: s, FailOpen: true})
			for i := range bs {
				setDown(bs[i], true)
				setDown(bs2[i], true)
			}
			seen := map[*Backend]bool{}
			for i := range 300 {
				if b := closed.Pick(uint64(i)); b != nil {
					t.Fatalf("closed pool picked %s", b.URL)
				}
				if b := closed.PickExcluding(uint64(i), bs[:1]); b != nil {
					t.Fatalf("closed pool picked %s for a retry", b.URL)
				}
				b := open.Pick(HashString(fmt.Sprint(i)))
				if b == nil {
					t.Fatal("fail-open pool picked nothing")
				}
				seen[b] = true
			}
			if len(seen) != 3 {
				t.Errorf("fail-open picked %d distinct backends, want 3", len(seen))
			}
			// One back up: fail-open picks only it again.
			setDown(bs2[2], false)
			for i := range 50 {
				if b := open.Pick(uint64(i)); b != bs2[2] {
					t.Fatalf("picked %v, want the available backend", b)
				}
			}
		})
	}
}

func TestPickExcluding(t *testing.T) {
	for _, s := range strategies {
		t.Run(s, func(t *testing.T) {
			bs := backends(t, 3)
			p := pool(t, bs, PoolOptions{Strategy: s})
			for i := range 100 {
				h := HashString(fmt.Sprint(i))
				first := p.Pick(h)
				second := p.PickExcluding(h, []*Backend{first})
				if second == nil || second == first {
					t.Fatalf("retry after %s picked %v", first.URL, second)
				}
				third := p.PickExcluding(h, []*Backend{first, second})
				if third == nil || third == first || third == second {
					t.Fatalf("second retry picked %v", third)
				}
				// Everything tried: an available backend is picked again.
				if b := p.PickExcluding(h, bs); b == nil {
					t.Fatal("nothing picked with every backend tried")
				}
			}
			// Tried and available beats untried and down.
			setDown(bs[1], true)
			setDown(bs[2], true)
			if b := p.PickExcluding(0, bs[:1]); b != bs[0] {
				t.Errorf("picked %v, want the tried available backend", b)
			}
		})
	}
}

// TestRoundRobinAlternatesWithRetries: over [dead, live], requests whose
// first pick fails and is retried still start on alternating backends
// (the retry's pick does not take a turn of the shared counter), and
// passive health still ejects the dead one after its failures.
func TestRoundRobinAlternatesWithRetries(t *testing.T) {
	for _, s := range []string{StrategyRoundRobin, StrategyWeightedRoundRobin} {
		t.Run(s, func(t *testing.T) {
			bs := backends(t, 2)
			dead, live := bs[0], bs[1]
			p := pool(t, bs, PoolOptions{Strategy: s, Outlier: OutlierOptions{Consecutive: 5, BaseEjection: time.Minute, MaxEjection: time.Minute}})
			var firsts []int
			now := time.Now()
			for range 10 {
				b := p.Pick(0)
				firsts = append(firsts, indexOf(bs, b))
				if b == dead {
					dead.ReportFailure("connect_failure", now)
					if r := p.PickExcluding(0, []*Backend{b}); r != live {
						t.Fatalf("retry after the dead backend picked %v", r)
					}
				}
				live.ReportSuccess()
			}
			// 5 failures of the dead backend (on every other request)
			// eject it; from then on only the live one is picked.
			want := []int{0, 1, 0, 1, 0, 1, 0, 1, 0, 1}
			if !slices.Equal(firsts, want) {
				t.Errorf("first picks %v, want %v", firsts, want)
			}
			for range 4 {
				if b := p.Pick(0); b != live {
					t.Fatalf("after 5 failures picked %s, want the dead backend ejected", b.URL)
				}
			}
		})
	}
}

func TestPickExcludingLimitsAndFailOpen(t *testing.T) {
	for _, s := range strategies {
		t.Run(s, func(t *testing.T) {
			// An untried backend at its limit beats the tried one with room.
			bs := backends(t, 2)
			p := pool(t, bs, PoolOptions{Strategy: s, MaxConns: 1, FailOpen: true})
			bs[1].Acquire()
			for i := range 20 {
				if b := p.PickExcluding(uint64(i), bs[:1]); b != bs[1] {
					t.Fatalf("picked %v, want the untried full backend", b)
				}
			}
			// Fail open: untried first, even when down.
			setDown(bs[0], true)
			setDown(bs[1], true)
			for i := range 20 {
				if b := p.PickExcluding(uint64(i), bs[:1]); b != bs[1] {
					t.Fatalf("fail open: picked %v, want the untried backend", b)
				}
				if b := p.PickExcluding(uint64(i), bs); b == nil {
					t.Fatal("fail open: picked nothing with all tried")
				}
			}
		})
	}
}

func TestPickPrefersRoom(t *testing.T) {
	for _, s := range strategies {
		t.Run(s, func(t *testing.T) {
			bs := backends(t, 3)
			p := pool(t, bs, PoolOptions{Strategy: s, MaxConns: 1})
			bs[0].Acquire()
			bs[1].Acquire()
			for i := range 100 {
				if b := p.Pick(uint64(i)); b != bs[2] {
					t.Fatalf("picked %d, want the backend below its limit", indexOf(bs, b))
				}
			}
			// All full: still picks (TryAcquire then waits or fails).
			bs[2].Acquire()
			if p.Pick(0) == nil {
				t.Fatal("all full: picked nothing")
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, s := range strategies {
		for _, n := range []int{1, 3, 64} {
			bs := backends(t, n)
			p := pool(t, bs, PoolOptions{Strategy: s, MaxConns: 10})
			setDown(bs[0], true)
			tried := bs[:1]
			h := uint64(0)
			allocs := testing.AllocsPerRun(1000, func() {
				h++
				if b := p.Pick(h); b != nil {
					b.Acquire()
					b.Release()
				}
				p.PickExcluding(h, tried)
			})
			if allocs != 0 {
				t.Errorf("%s/%d: %.1f allocations per pick", s, n, allocs)
			}
		}
	}
}

// TestPickConcurrent exercises every strategy from many goroutines while
// availability changes (run with -race).
func TestPickConcurrent(t *testing.T) {
	for _, s := range strategies {
		bs := backends(t, 8, 1, 2, 3, 4, 5, 6, 7, 8)
		p := pool(t, bs, PoolOptions{
			Strategy: s, MaxConns: 4, MaxConnsWait: time.Millisecond, FailOpen: true,
			Outlier: OutlierOptions{Consecutive: 1, BaseEjection: time.Millisecond},
		})
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				setDown(bs[i%8], i%3 == 0)
				if i%5 == 0 {
					bs[i%8].ReportFailure("test", time.Now())
				}
			}
		})
		var pickers sync.WaitGroup
		for g := range 4 {
			pickers.Go(func() {
				for i := range 2000 {
					b := p.Pick(uint64(g*1000 + i))
					if b == nil {
						t.Error("fail-open pool picked nothing")
						return
					}
					if b.TryAcquire(t.Context()) == nil {
						b.Release()
					}
				}
			})
		}
		pickers.Wait()
		close(stop)
		wg.Wait()
		for _, b := range bs {
			if b.Active() != 0 {
				t.Errorf("%s: %s has %d active after the run", s, b.URL, b.Active())
			}
		}
	}
}

func TestNewPoolErrors(t *testing.T) {
	bs := backends(t, 2)
	for _, tt := range []struct {
		name string
		bs   []*Backend
		opt  PoolOptions
		want string
	}{
		{"empty", nil, PoolOptions{}, "pool has no backends"},
		{"twice", []*Backend{bs[0], bs[0]}, PoolOptions{}, "backend http://10.0.0.1:8080 is listed twice"},
		{"strategy", bs, PoolOptions{Strategy: "random"}, `unknown strategy "random"`},
		{"max conns", bs, PoolOptions{MaxConns: -1}, "max conns must not be negative (got -1)"},
		{"health", bs, PoolOptions{Health: &HealthOptions{}}, "health check has no prober"},
		{"health timeout", bs, PoolOptions{Health: &HealthOptions{Prober: TCPProber{}, Interval: time.Second, Timeout: 2 * time.Second}}, "health check timeout 2s exceeds the interval 1s"},
		{"outlier", bs, PoolOptions{Outlier: OutlierOptions{MaxEjectionPercent: 101}}, "outlier max ejection percent must be between 0 and 100 (got 101)"},
	} {
		if _, err := NewPool(tt.bs, tt.opt); err == nil || err.Error() != tt.want {
			t.Errorf("%s: error = %v, want %s", tt.name, err, tt.want)
		}
	}
	if _, err := NewPool(bs, PoolOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPool(bs[:1], PoolOptions{}); err == nil || err.Error() != "backend http://10.0.0.1:8080 already belongs to a pool" {
		t.Errorf("reused backend: error = %v", err)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, s := range strategies {
		for _, n := range []int{2, 16, 256} {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%5 + 1
				}
				bs := backends(b, n, weights...)
				p := pool(b, bs, PoolOptions{Strategy: s})
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					h := uint64(0x12345)
					for pb.Next() {
						h += 0x9e3779b97f4a7c15
						if p.Pick(h) == nil {
							b.Error("nil pick")
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkPickAcquire is a pick plus the request accounting the proxy
// does around it, so the load-aware strategies see changing counts.
func BenchmarkPickAcquire(b *testing.B) {
	for _, s := range strategies {
		for _, n := range []int{2, 16, 256} {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				bs := backends(b, n)
				p := pool(b, bs, PoolOptions{Strategy: s})
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					h := uint64(0x12345)
					for pb.Next() {
						h += 0x9e3779b97f4a7c15
						x := p.Pick(h)
						x.Acquire()
						x.Release()
					}
				})
			})
		}
	}
}

// BenchmarkWeightedRoundRobin compares the precomputed lock-free cycle
// with the algorithm run live under the lock.
func BenchmarkWeightedRoundRobin(b *testing.B) {
	for _, mode := range []string{"schedule", "live"} {
		for _, n := range []int{2, 16, 256} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%5 + 1
				}
				p := pool(b, backends(b, n, weights...), PoolOptions{Strategy: StrategyWeightedRoundRobin})
				if mode == "live" {
					p.sel.(*weightedRoundRobin).schedule = nil
				}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						p.Pick(0)
					}
				})
			})
		}
	}
}
