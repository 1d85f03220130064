package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewBackend(t *testing.T) {
	for _, tt := range []struct {
		url, addr, host, base string
		weight, wantWeight    int
	}{
		{"http://127.0.0.1:8001", "127.0.0.1:8001", "127.0.0.1", "", 3, 3},
		{"http://users/base/", "users:80", "users", "/base", 0, 1},
		{"http://[::1]:8002/a%20b", "[::1]:8002", "::1", "/a%20b", 1, 1},
		{"https://api.internal", "api.internal:443", "api.internal", "", 1, 1},
	} {
		b, err := NewBackend(tt.url, tt.weight)
		if err != nil {
			t.Fatal(err)
		}
		if b.URL != tt.url || b.Addr != tt.addr || b.Host != tt.host || b.BasePath != tt.base || b.Weight != tt.wantWeight {
			t.Errorf("NewBackend(%q) = %+v", tt.url, b)
		}
		if !b.Available() || !b.Up() || b.Active() != 0 || b.Scope() != "" {
			t.Errorf("new backend state: available %v up %v active %d", b.Available(), b.Up(), b.Active())
		}
	}
	for _, bad := range []string{"ftp://a", "http://", "::"} {
		if _, err := NewBackend(bad, 1); err == nil {
			t.Errorf("NewBackend(%q) succeeded", bad)
		}
	}
}

func limited(t *testing.T, max int, wait time.Duration) *Backend {
	t.Helper()
	b := backends(t, 1)[0]
	pool(t, []*Backend{b}, PoolOptions{MaxConns: max, MaxConnsWait: wait})
	return b
}

func TestTryAcquireUnlimited(t *testing.T) {
	b := backends(t, 1)[0]
	for range 1000 {
		if err := b.TryAcquire(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if b.Active() != 1000 {
		t.Errorf("active = %d", b.Active())
	}
}

func TestTryAcquireLimit(t *testing.T) {
	ctx := t.Context()
	b := limited(t, 2, 0)
	if b.TryAcquire(ctx) != nil || b.TryAcquire(ctx) != nil {
		t.Fatal("below the limit: refused")
	}
	if err := b.TryAcquire(ctx); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("at the limit without wait: %v, want ErrPoolFull", err)
	}
	b.Release()
	if err := b.TryAcquire(ctx); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	// Acquire ignores the limit.
	b.Acquire()
	if b.Active() != 3 {
		t.Errorf("active = %d", b.Active())
	}
}

func TestTryAcquireWait(t *testing.T) {
	ctx := t.Context()
	b := limited(t, 1, 5*time.Second)
	if err := b.TryAcquire(ctx); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(20*time.Millisecond, b.Release)
	start := time.Now()
	if err := b.TryAcquire(ctx); err != nil {
		t.Fatalf("waiting for a release: %v", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > 2*time.Second {
		t.Errorf("waited %s for a release after 20ms", d)
	}

	// Nobody releases: ErrPoolFull after the wait bound.
	b = limited(t, 1, 30*time.Millisecond)
	_ = b.TryAcquire(ctx)
	start = time.Now()
	if err := b.TryAcquire(ctx); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("error %v, want ErrPoolFull", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("gave up after %s, want 30ms", d)
	}

	// The request goes away first.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(10*time.Millisecond, cancel)
	b = limited(t, 1, time.Hour)
	_ = b.TryAcquire(ctx)
	if err := b.TryAcquire(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if b.Active() != 1 {
		t.Errorf("active = %d after failed acquires", b.Active())
	}
}

// TestTryAcquireNoLostWakeup has many requests queue for few slots: all
// get through, never more than the limit at once.
func TestTryAcquireNoLostWakeup(t *testing.T) {
	const limit, workers, rounds = 3, 16, 50
	b := limited(t, limit, 10*time.Second)
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				if err := b.TryAcquire(t.Context()); err != nil {
					t.Error(err)
					return
				}
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(50 * time.Microsecond)
				inFlight.Add(-1)
				b.Release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Errorf("peak %d requests in flight, limit %d", p, limit)
	}
	if b.Active() != 0 {
		t.Errorf("active = %d", b.Active())
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, tt := range []struct {
		name string
		max  int
	}{{"unlimited", 0}, {"limited", 1 << 20}} {
		b.Run(tt.name, func(b *testing.B) {
			be := backends(b, 1)[0]
			pool(b, []*Backend{be}, PoolOptions{MaxConns: tt.max, MaxConnsWait: time.Second})
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if be.TryAcquire(ctx) == nil {
						be.Release()
					}
				}
			})
		})
	}
}
