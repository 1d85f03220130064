package plugins

import (
	"errors"
	"sync/atomic"
	"time"
)

// errOverloaded is the error of a call refused by the concurrency limit.
var errOverloaded = &Error{Reason: "overloaded", Err: errors.New("too many concurrent calls")}

// limiter bounds the guest calls of one wasm entry (a Handler, across the
// versions a reload swaps in): at most cap(slots) run at once, and a call
// whose deadline passed keeps its slot until its guest has really stopped,
// so a looping guest cannot pile up running instances. At most queue
// more calls wait for a slot, each for at most wait; the others are
// refused at once.
type limiter struct {
	slots   chan struct{}
	queue   int64
	wait    time.Duration
	waiting atomic.Int64
}

func newLimiter(concurrency, queue int, wait time.Duration) *limiter {
	return &limiter{slots: make(chan struct{}, concurrency), queue: int64(queue), wait: wait}
}

// acquire takes a slot, or returns errOverloaded. The wait is timed on
// wd (nil: a Go timer).
func (l *limiter) acquire(wd *watchdog) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	if l.waiting.Add(1) > l.queue {
		l.waiting.Add(-1)
		return errOverloaded
	}
	defer l.waiting.Add(-1)
	t := newWaitTimer(wd, l.wait)
	defer t.stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-t.c:
		return errOverloaded
	}
}

func (l *limiter) release() { <-l.slots }

// running is the number of calls holding a slot.
func (l *limiter) running() int { return len(l.slots) }
