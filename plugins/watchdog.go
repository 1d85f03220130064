package plugins

import (
	"runtime"
	"sync"
	"time"
)

// A watchdog runs the deadlines of the calls handed to the workers, and
// the demotion of the worker threads whose call overruns, from a thread
// that sleeps in the kernel (watchdog_linux.go) rather than on Go timers.
//
// A Go timer lives on the P (the runtime's processor) of the goroutine that
// armed it, and only the thread holding that P, or an idle one stealing
// work, runs it. A caller that hands its call to a worker and waits hands
// its P to the worker's thread with it, so the timers armed just before
// (its deadline, the worker's demotion) ride on the P the guest runs on.
// Once the guest's thread is deprioritised, a busy machine may leave it
// off the CPU, and those timers with it, for a long time past the
// deadline. The watchdog's timers do not depend on which thread holds
// which P.
type watchdog struct {
	mu sync.Mutex
	// watches are the armed entries, in no order (there are at most a
	// few per worker).
	watches []*watch
	// sleeping is when the watchdog wakes up next (zero: not before
	// something is armed); an earlier entry wakes it.
	sleeping time.Time
	asleep   bool
	closed   bool
	waker    waker
	done     chan struct{}
}

// watch is one armed deadline: fn runs on the watchdog's goroutine once
// its time (when) has passed, unless removed first. fn must be short and
// not block.
type watch struct {
	when time.Time
	fn   func()
	idx  int // in watches, -1 when not armed
}

func newWatchdog() (*watchdog, error) {
	w, err := newWaker()
	if err != nil {
		return nil, err
	}
	d := &watchdog{waker: w, done: make(chan struct{})}
	go d.run()
	return d, nil
}

// add arms w to run at when; w must not be armed.
func (d *watchdog) add(w *watch, when time.Time) {
	d.mu.Lock()
	w.when = when
	w.idx = len(d.watches)
	d.watches = append(d.watches, w)
	wake := d.asleep && (d.sleeping.IsZero() || when.Before(d.sleeping))
	if wake {
		d.asleep = false
	}
	d.mu.Unlock()
	if wake {
		d.waker.wake()
	}
}

// remove disarms w. It reports false when w was not armed: its function
// ran, or is running.
func (d *watchdog) remove(w *watch) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removeLocked(w)
}

func (d *watchdog) removeLocked(w *watch) bool {
	i := w.idx
	if i < 0 || i >= len(d.watches) || d.watches[i] != w {
		return false
	}
	last := len(d.watches) - 1
	d.watches[i] = d.watches[last]
	d.watches[i].idx = i
	d.watches[last] = nil
	d.watches = d.watches[:last]
	w.idx = -1
	return true
}

// close stops the watchdog; armed entries never run.
func (d *watchdog) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.waker.wake()
	<-d.done
	d.waker.close()
}

// run fires the entries as they fall due, sleeping in between.
func (d *watchdog) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		now := time.Now()
		var next *watch
		for _, w := range d.watches {
			if next == nil || w.when.Before(next.when) {
				next = w
			}
		}
		if next != nil && !next.when.After(now) {
			d.removeLocked(next)
			d.mu.Unlock()
			next.fn()
			// The goroutines fn woke (a caller at its deadline) are
			// queued on this goroutine's P: they run now, on a thread
			// that has the CPU, rather than when another steals them.
			runtime.Gosched()
			continue
		}
		wait := time.Duration(-1)
		d.sleeping = time.Time{}
		if next != nil {
			wait, d.sleeping = next.when.Sub(now), next.when
		}
		d.asleep = true
		d.mu.Unlock()
		d.waker.wait(wait)
		d.mu.Lock()
		d.asleep = false
		d.mu.Unlock()
	}
}

// waitTimer is a one-shot timer for a wait on the call path (a slot, an
// instance): on the watchdog when the workers run one, on a Go timer
// otherwise. c is closed when it fires.
type waitTimer struct {
	c  chan struct{}
	w  watch
	d  *watchdog
	gt *time.Timer
}

func newWaitTimer(d *watchdog, dur time.Duration) *waitTimer {
	t := &waitTimer{c: make(chan struct{}), d: d}
	t.w = watch{fn: t.fire, idx: -1}
	if d == nil {
		t.gt = time.AfterFunc(dur, t.fire)
		return t
	}
	d.add(&t.w, time.Now().Add(dur))
	return t
}

func (t *waitTimer) fire() { close(t.c) }

// stop stops a timer that has not fired.
func (t *waitTimer) stop() {
	if t.d == nil {
		t.gt.Stop()
		return
	}
	t.d.remove(&t.w)
}
