package ratelimit

import (
	"sync"

	"github.com/rustygate/rustygate/cluster"
)

// combiner batches the concurrent requests of one key on this node into
// one Redis step (group commit): while a step of a key is in flight, the
// requests of that key that arrive join the next step, which the first
// of them sends when the step in flight returns. A step of k requests
// gives each the verdict k sequential steps would (cluster.Batch), so
// batching changes no count: no token is taken ahead or wasted, and the
// cluster-wide count stays exact. It only saves round trips when one key
// is busy (the hot clients a limit is for).
type combiner struct {
	mu   sync.Mutex
	busy map[string]*batchCall // key -> the step collecting the next requests (nil: none yet)
}

// batchCall is one Redis step of a key and the requests it carries.
type batchCall struct {
	start chan struct{} // closed when the step may be sent
	done  chan struct{} // closed when the verdicts are in
	n     int
	batch cluster.Batch
	err   error
}

func newCombiner() *combiner { return &combiner{busy: map[string]*batchCall{}} }

// take counts one request of rkey with step, batched with the
// concurrent requests of the same key.
func (cb *combiner) take(rkey string, step func(k int) (cluster.Batch, error)) (cluster.Verdict, error) {
	cb.mu.Lock()
	next, inFlight := cb.busy[rkey]
	if !inFlight {
		// Nothing in flight: send now, alone.
		cb.busy[rkey] = nil
		cb.mu.Unlock()
		c := &batchCall{n: 1}
		cb.run(rkey, c, step)
		return c.batch.Verdict(0), c.err
	}
	if next == nil {
		next = &batchCall{start: make(chan struct{}), done: make(chan struct{})}
		cb.busy[rkey] = next
	}
	j := next.n
	next.n++
	cb.mu.Unlock()
	if j == 0 {
		<-next.start
		cb.run(rkey, next, step)
	} else {
		<-next.done
	}
	if next.err != nil {
		return cluster.Verdict{}, next.err
	}
	return next.batch.Verdict(j), nil
}

// run sends c's step, then hands the key over to the step that collected
// requests meanwhile, or marks the key idle.
func (cb *combiner) run(rkey string, c *batchCall, step func(k int) (cluster.Batch, error)) {
	cb.mu.Lock()
	if cb.busy[rkey] == c {
		cb.busy[rkey] = nil // later arrivals collect into a new step
	}
	cb.mu.Unlock()
	c.batch, c.err = step(c.n)
	if c.done != nil {
		close(c.done)
	}
	cb.mu.Lock()
	next := cb.busy[rkey]
	if next == nil {
		delete(cb.busy, rkey)
	} else {
		close(next.start)
	}
	cb.mu.Unlock()
}
