package plugins

import (
	"math"
	"runtime"
	"sync/atomic"
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
//
// Nothing on the watchdog's side waits for a lock its callers hold. A
// goroutine that waits for a sync.Mutex is woken by the one that unlocks
// it, onto that one's P: a worker arming its demotion just before it runs a
// guest would leave the watchdog queued behind the guest, on a P no one
// else takes while every P is busy. So callers hand their entries over
// through a lock-free stack, and an entry's state is a word that add,
// remove and the watchdog change with compare-and-swap.
type watchdog struct {
	// pending are the entries armed since the watchdog last looked, each
	// at most once (watch.queued), linked by watch.next.
	pending atomic.Pointer[watch]
	// sleepUntil is when the sleeping watchdog wakes up (monotonic
	// nanoseconds, see mono; forever: math.MaxInt64), 0 while it is
	// awake: an entry due earlier wakes it.
	sleepUntil atomic.Int64
	closed     atomic.Bool
	waker      waker
	done       chan struct{}
	// armed are the entries the watchdog knows of, in no order, stale
	// ones (removed, or armed again since) included until it next scans
	// them. Used only on the watchdog's goroutine.
	armed []armedEntry
}

// watch is one deadline: fn runs on the watchdog's goroutine once the
// time it was armed for has passed, unless removed first. fn must be
// short and not block. A watch may be armed again once it ran or was
// removed.
type watch struct {
	fn func()
	// state is the arming's generation, shifted left by one, with the
	// low bit set while armed.
	state atomic.Uint64
	// when is the current arming's time (mono).
	when atomic.Int64
	// queued is set while the watch is on the pending stack, next its
	// link there.
	queued atomic.Bool
	next   *watch
}

// armedEntry is one arming as the watchdog took it: it fires only if the
// watch is still in that state.
type armedEntry struct {
	w     *watch
	state uint64
	when  int64
}

// monoBase is the origin of mono.
var monoBase = time.Now()

// mono is t on the monotonic clock, in nanoseconds since monoBase.
func mono(t time.Time) int64 { return int64(t.Sub(monoBase)) }

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
	at := mono(when)
	w.when.Store(at)
	w.state.Store((w.state.Load()>>1+1)<<1 | 1)
	if w.queued.CompareAndSwap(false, true) {
		for {
			head := d.pending.Load()
			w.next = head
			if d.pending.CompareAndSwap(head, w) {
				break
			}
		}
	}
	// The watchdog stores sleepUntil before it looks at pending a last
	// time: either it sees w there, or this sees it asleep.
	if until := d.sleepUntil.Load(); until != 0 && at < until && d.sleepUntil.CompareAndSwap(until, 0) {
		d.waker.wake()
	}
}

// remove disarms w. It reports false when w was not armed: its function
// ran, or is running.
func (d *watchdog) remove(w *watch) bool {
	for {
		s := w.state.Load()
		if s&1 == 0 {
			return false
		}
		if w.state.CompareAndSwap(s, s&^1) {
			return true
		}
	}
}

// close stops the watchdog; armed entries never run.
func (d *watchdog) close() {
	d.closed.Store(true)
	d.waker.wake()
	<-d.done
	d.waker.close()
}

// take moves the pending entries to armed.
func (d *watchdog) take() {
	for w := d.pending.Swap(nil); w != nil; {
		next := w.next
		w.next = nil
		// Cleared before the state is read: an add that finds the flag
		// still set has stored its state already, and one that finds it
		// clear pushes w again.
		w.queued.Store(false)
		if s := w.state.Load(); s&1 != 0 {
			d.armed = append(d.armed, armedEntry{w: w, state: s, when: w.when.Load()})
		}
		w = next
	}
}

// run fires the entries as they fall due, sleeping in between.
func (d *watchdog) run() {
	defer close(d.done)
	for !d.closed.Load() {
		d.take()
		now := mono(time.Now())
		next := int64(math.MaxInt64)
		var due *watch
		live := d.armed[:0]
		for _, e := range d.armed {
			if e.w.state.Load() != e.state {
				continue // removed, or armed again (a newer entry)
			}
			if due == nil && e.when <= now && e.w.state.CompareAndSwap(e.state, e.state&^1) {
				due = e.w
				continue
			}
			live = append(live, e)
			next = min(next, e.when)
		}
		clear(d.armed[len(live):])
		d.armed = live
		if due != nil {
			due.fn()
			// The goroutines fn woke (a caller at its deadline) are
			// queued on this goroutine's P: they run now, on a thread
			// that has the CPU, rather than when another steals them.
			runtime.Gosched()
			continue
		}
		if next <= now {
			continue // an entry fell due during the scan
		}
		d.sleepUntil.Store(next)
		if d.pending.Load() != nil || d.closed.Load() {
			d.sleepUntil.Store(0)
			continue
		}
		wait := time.Duration(-1)
		if next != math.MaxInt64 {
			wait = time.Duration(next - now)
		}
		d.waker.wait(wait)
		d.sleepUntil.Store(0)
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
	t.w.fn = t.fire
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
