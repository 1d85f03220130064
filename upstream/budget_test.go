package upstream

import (
	"sync"
	"sync/atomic"
	"testing"
)

// fakeClock returns a budget clock set to sec, and a way to move it.
func fakeClock(b *RetryBudget, sec int64) *atomic.Int64 {
	c := new(atomic.Int64)
	c.Store(sec)
	b.now = c.Load
	return c
}

// retries counts the retries b allows, up to limit.
func retries(b *RetryBudget, limit int) int {
	n := 0
	for n < limit && b.TryRetry() {
		n++
	}
	return n
}

func TestRetryBudget(t *testing.T) {
	b := NewRetryBudget(0.2, 0)
	fakeClock(b, 1_000_000)
	for range 1000 {
		b.OnRequest()
	}
	if got := retries(b, 10000); got != 200 {
		t.Errorf("ratio 0.2 of 1000 requests: %d retries allowed, want 200", got)
	}
	if b.TryRetry() {
		t.Error("retry allowed beyond the budget")
	}
	// More requests earn more retries.
	for range 10 {
		b.OnRequest()
	}
	if got := retries(b, 100); got != 2 {
		t.Errorf("10 more requests: %d retries, want 2", got)
	}
}

func TestRetryBudgetMinimum(t *testing.T) {
	// The minimum rate allows retries without requests: 3/s over the
	// 10 s window.
	b := NewRetryBudget(0.2, 3)
	fakeClock(b, 500)
	if got := retries(b, 1000); got != 30 {
		t.Errorf("no requests: %d retries, want 30", got)
	}
	b = NewRetryBudget(0.2, 3)
	fakeClock(b, 500)
	for range 1000 {
		b.OnRequest()
	}
	if got := retries(b, 10000); got != 230 {
		t.Errorf("1000 requests: %d retries, want 230", got)
	}
}

func TestRetryBudgetWindow(t *testing.T) {
	b := NewRetryBudget(0.5, 0)
	clock := fakeClock(b, 100)
	for range 100 {
		b.OnRequest()
	}
	if got := retries(b, 1000); got != 50 {
		t.Fatalf("%d retries, want 50", got)
	}
	// Nine seconds later both still count.
	clock.Store(109)
	if b.TryRetry() {
		t.Error("retry allowed 9 s later")
	}
	// Ten seconds later the second has left the window.
	clock.Store(110)
	if b.TryRetry() {
		t.Error("retry allowed with no requests in the window")
	}
	for range 10 {
		b.OnRequest()
	}
	if got := retries(b, 1000); got != 5 {
		t.Errorf("new window: %d retries, want 5", got)
	}
	// A bucket is reused when its second comes round again.
	clock.Store(120)
	for range 4 {
		b.OnRequest()
	}
	if got := retries(b, 1000); got != 2 {
		t.Errorf("reused bucket: %d retries, want 2", got)
	}
}

func TestRetryBudgetRounding(t *testing.T) {
	b := NewRetryBudget(0.29, 0)
	fakeClock(b, 7)
	for range 100 {
		b.OnRequest()
	}
	if got := retries(b, 1000); got != 29 {
		t.Errorf("%d retries, want 29", got)
	}
}

func TestRetryBudgetNil(t *testing.T) {
	var b *RetryBudget
	b.OnRequest()
	if !b.TryRetry() {
		t.Error("nil budget refused a retry")
	}
}

func TestRetryBudgetConcurrent(t *testing.T) {
	b := NewRetryBudget(0.1, 0)
	fakeClock(b, 42)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2500 {
				b.OnRequest()
			}
		})
	}
	wg.Wait()
	var allowed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if b.TryRetry() {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// Concurrent decisions at the limit may overshoot by a few.
	if got := allowed.Load(); got < 1000 || got > 1004 {
		t.Errorf("%d retries allowed, want 1000 (+ at most 4)", got)
	}
}

func BenchmarkRetryBudget(b *testing.B) {
	rb := NewRetryBudget(0.2, 10)
	b.Run("OnRequest", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rb.OnRequest()
			}
		})
	})
	b.Run("TryRetry", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rb.TryRetry()
			}
		})
	})
}
