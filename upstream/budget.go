package upstream

import (
	"sync/atomic"
	"time"
)

// Retry budget: retries are allowed while, over the last BudgetWindow,
//
//	retries ≤ ratio × requests + minRetriesPerSecond × BudgetWindow/1s
//
// so a failing backend set sees at most ratio more load from retries,
// while a quiet route can still retry a little. The window slides in one
// second buckets; each bucket is one atomic word holding its second and
// its count, so counting is lock-free. Concurrent TryRetry calls at the
// limit may each pass: the budget can be overshot by the number of
// retries decided at the same instant.

// BudgetWindow is the span a RetryBudget counts over.
const BudgetWindow = 10 * time.Second

const budgetBuckets = int(BudgetWindow / time.Second)

// RetryBudget bounds retries to a share of requests. A nil *RetryBudget
// allows every retry.
type RetryBudget struct {
	ratio    float64
	minRetry float64 // retries the window allows on its own
	now      func() int64

	requests [budgetBuckets]budgetBucket
	retries  [budgetBuckets]budgetBucket
}

// budgetBucket packs a unix second (high 32 bits) and a count (low 32).
type budgetBucket struct{ v atomic.Uint64 }

// NewRetryBudget returns a budget allowing retries up to ratio of the
// requests (0.2: one retry per five requests) plus minRetriesPerSecond.
func NewRetryBudget(ratio float64, minRetriesPerSecond int) *RetryBudget {
	return &RetryBudget{
		ratio:    max(ratio, 0),
		minRetry: float64(max(minRetriesPerSecond, 0) * budgetBuckets),
		now:      func() int64 { return time.Now().Unix() },
	}
}

// OnRequest counts a request (a first attempt; retries are not counted
// here).
func (b *RetryBudget) OnRequest() {
	if b == nil {
		return
	}
	b.onRequest(uint32(b.now()))
}

// OnRequestAt is OnRequest for a request that arrived at t, a time the
// caller has read already (a clock read per request is worth saving).
func (b *RetryBudget) OnRequestAt(t time.Time) {
	if b == nil {
		return
	}
	b.onRequest(uint32(t.Unix()))
}

func (b *RetryBudget) onRequest(sec uint32) {
	b.requests[sec%uint32(budgetBuckets)].add(sec)
}

// TryRetry reports whether a retry is within the budget, and if so counts
// it.
func (b *RetryBudget) TryRetry() bool {
	if b == nil {
		return true
	}
	sec := uint32(b.now())
	// The epsilon keeps 0.29 × 100 from rounding below 29.
	allowed := b.ratio*float64(sumBuckets(&b.requests, sec)) + b.minRetry + 1e-9
	if float64(sumBuckets(&b.retries, sec)+1) > allowed {
		return false
	}
	b.retries[sec%uint32(budgetBuckets)].add(sec)
	return true
}

func (c *budgetBucket) add(sec uint32) {
	for {
		v := c.v.Load()
		n := uint64(sec)<<32 | 1
		if uint32(v>>32) == sec {
			if uint32(v) == 1<<32-1 {
				return // saturated
			}
			n = v + 1
		}
		if c.v.CompareAndSwap(v, n) {
			return
		}
	}
}

// sumBuckets adds the counts of the buckets within the window ending at
// sec.
func sumBuckets(bs *[budgetBuckets]budgetBucket, sec uint32) uint64 {
	var total uint64
	for i := range bs {
		v := bs[i].v.Load()
		if v != 0 && sec-uint32(v>>32) < uint32(budgetBuckets) {
			total += v & 0xffffffff
		}
	}
	return total
}
