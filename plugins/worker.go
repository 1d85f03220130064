package plugins

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Guest code compiled by wazero cannot be preempted by the Go scheduler
// between two of its ticks (see instrument): a guest that loops comes back
// to Go every tickEvery iterations, where the runtime may preempt it, but
// a guest thread that the kernel leaves off the CPU holds its P all that
// while. Run on the requests' goroutines, a few such guests would take
// the Ps the rest of the gateway needs.
//
// So a workerPool keeps guests it does not trust to threads of their own,
// with Ps of their own (see procsFor):
//
//   - workers: the calls of a new guest (on probation), and of a suspect
//     (a guest whose call ran longer than demoteAfter: looping, or hogging
//     the CPU), are handed to a fixed set of goroutines, each locked to an
//     OS thread of its own. The request waits for the result or its
//     deadline, whichever comes first: it returns at the deadline even if
//     the guest has not stopped yet (the worker cleans up once it has). A
//     worker whose call runs longer than demoteAfter lowers its thread to
//     the lowest scheduling priority (SCHED_IDLE, nice 19), so that a
//     spinning guest yields its CPU to the threads serving other routes;
//     that thread ends with the call (its priority cannot be raised again
//     without privileges) and a fresh worker takes its place.
//   - inline: the calls (and instantiations) of a trusted guest, one that
//     made `probation` calls in a row within demoteAfter, run on the
//     request's goroutine (on its event loop, when it is on one), which
//     costs nothing more than the guest's own work, as long as fewer than
//     inlineMax do (the others go to the workers). A trusted guest that
//     overruns keeps its caller until it stops, once (its exchange leaves
//     the event loop at demoteAfter, see callCtx.tick): it is a suspect
//     from then on, until it passes its probation again (a call may be
//     slow because the machine is busy; a looping guest never passes).
//
// Where threads cannot be deprioritised (see worker_other.go), there is no
// pool: guests run on the calling goroutine, as before.

// workerPool runs guest calls on dedicated, locked OS threads.
type workerPool struct {
	size        int
	busy        atomic.Int64 // operations handed over and not finished
	demoteAfter time.Duration
	// inline counts the guest calls running on requests' goroutines, at
	// most inlineMax.
	inline    atomic.Int64
	inlineMax int64
	jobs      chan *instance
	quit      chan struct{}
	wg        sync.WaitGroup
	stopOnce  sync.Once
	// demoted counts the calls that overran demoteAfter (and the worker
	// threads replaced after them).
	demoted atomic.Int64
	// wd runs the deadlines of the calls on the workers and their
	// demotions.
	wd *watchdog

	// procsMu guards procsUp (the pool's Ps are added to GOMAXPROCS),
	// lastJob (when an operation last went to the workers) and idleCheck
	// (the timer that takes the Ps back once the workers were idle for
	// procsIdle).
	procsMu   sync.Mutex
	procsIdle time.Duration // procsIdle when the pool started
	procsUp   bool
	lastJob   time.Time
	idleCheck *time.Timer
}

// procsIdle is how long the workers stay idle before the pool gives its
// Ps back.
var procsIdle = 2 * time.Second

// worker is one pool goroutine and its OS thread.
type worker struct {
	pool *workerPool
	tid  int
	// demote lowers the thread's priority when a call overruns (on the
	// pool's watchdog); demoteDone receives once it has.
	demote     watch
	demoteDone chan struct{}
}

// startWorkers starts n workers and allows inline calls on the requests'
// goroutines. GOMAXPROCS rises by the workers while they have work (see
// procsFor), not by the inline calls: those run where their caller runs,
// and their guests reach a point where the runtime can preempt them at
// every tick. It returns nil, and guests run on the requests' goroutines,
// if the watchdog cannot start.
func startWorkers(n, inline int, demoteAfter time.Duration) *workerPool {
	wd, err := newWatchdog()
	if err != nil {
		return nil
	}
	p := &workerPool{
		wd:          wd,
		size:        n,
		demoteAfter: demoteAfter,
		inlineMax:   int64(inline),
		jobs:        make(chan *instance),
		quit:        make(chan struct{}),
		procsIdle:   procsIdle,
	}
	for range n {
		p.spawn()
	}
	return p
}

func (p *workerPool) spawn() {
	p.wg.Add(1)
	go p.work()
}

// stop ends the workers once their current calls return, and lowers
// GOMAXPROCS back. The caller stops running guests first (closing the
// runtime closes their modules).
func (p *workerPool) stop() {
	p.stopOnce.Do(func() {
		close(p.quit)
		p.wg.Wait()
		p.wd.close()
		p.procsMu.Lock()
		if p.idleCheck != nil {
			p.idleCheck.Stop()
		}
		if p.procsUp {
			p.procsUp = false
			addProcs(-p.size)
		}
		p.procsMu.Unlock()
	})
}

// procsFor raises GOMAXPROCS by the workers, if it is not yet, before an
// operation goes to them: a worker's guest holds its P while it runs, and
// a deprioritised one may hold it a long while, so the workers get Ps of
// their own and the rest of the gateway keeps its own. The Ps go back once
// the workers were idle for procsIdle (a trusted guest's calls run inline
// and need none). A change of GOMAXPROCS stops the world, which a guest
// on a worker would delay until its next tick: the Ps rise before the
// first operation and go back with no operation on the workers.
func (p *workerPool) procsFor() {
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	p.lastJob = time.Now()
	if p.procsUp {
		return
	}
	p.procsUp = true
	addProcs(p.size)
	if p.idleCheck == nil {
		p.idleCheck = time.AfterFunc(p.procsIdle, p.releaseProcs)
	} else {
		p.idleCheck.Reset(p.procsIdle)
	}
}

// releaseProcs gives the workers' Ps back if they were idle for
// procsIdle, or checks again later.
func (p *workerPool) releaseProcs() {
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	if !p.procsUp {
		return
	}
	if p.busy.Load() != 0 {
		p.idleCheck.Reset(p.procsIdle)
		return
	}
	if idle := time.Since(p.lastJob); idle < p.procsIdle {
		p.idleCheck.Reset(p.procsIdle - idle)
		return
	}
	p.procsUp = false
	addProcs(-p.size)
}

// work is a worker goroutine. It never unlocks its thread: when the
// goroutine returns, the runtime ends the thread with it, so a
// deprioritised thread never serves other goroutines. It keeps off the
// process's main thread, whose priority tools show for the whole process
// and which the runtime never ends: a goroutine started while this one
// holds the main thread takes over.
func (p *workerPool) work() {
	runtime.LockOSThread()
	if threadID() == os.Getpid() {
		started := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(started)
			p.serve(threadID())
		}()
		<-started
		runtime.UnlockOSThread()
		return
	}
	p.serve(threadID())
}

// serve runs jobs on the locked thread tid until quit, or until a call
// that overran leaves the thread deprioritised.
func (p *workerPool) serve(tid int) {
	defer p.wg.Done()
	w := &worker{pool: p, tid: tid, demoteDone: make(chan struct{}, 1)}
	w.demote.fn = w.lower
	for {
		select {
		case inst := <-p.jobs:
			if !w.run(inst) {
				select {
				case <-p.quit:
				default:
					p.spawn()
				}
				return
			}
			// The caller the call woke is queued on this thread's P:
			// hand the P over before the next call, whose guest may
			// hold it (deprioritised, off the CPU) with the caller on it.
			runtime.Gosched()
		case <-p.quit:
			return
		}
	}
}

// lower deprioritises the worker's thread (the demote timer's function).
func (w *worker) lower() {
	w.pool.demoted.Add(1)
	lowerThreadPriority(w.tid)
	w.demoteDone <- struct{}{}
}

// run runs inst's operation. It reports false when the thread was
// deprioritised and must end.
func (w *worker) run(inst *instance) bool {
	defer w.pool.busy.Add(-1)
	if !inst.job.start() {
		// The caller gave up before the call started.
		inst.owner.abandoned(inst)
		return true
	}
	// Instantiation is bounded by the start deadline and, but for a
	// suspect guest, not demoted: a language runtime's start takes
	// milliseconds of CPU.
	calling := inst.st.phase != phaseInit || inst.owner.suspect.Load()
	start := time.Now()
	if calling {
		d := w.pool.demoteAfter
		if inst.owner.suspect.Load() {
			// A suspect already overran once: a spinning guest's
			// calls (and the starts of its new instances) then take
			// a normal CPU share for a shorter while.
			d = min(d, suspectDemoteAfter)
		}
		w.pool.wd.add(&w.demote, start.Add(d))
	}
	inst.job.op(inst)
	fired := calling && !w.pool.wd.remove(&w.demote)
	inst.owner.judge(inst, time.Since(start), w.pool.demoteAfter)
	inst.job.finish(inst)
	if fired {
		<-w.demoteDone
		return false
	}
	return true
}

// suspectDemoteAfter is how long a suspect guest's operation runs at
// normal priority before its thread is deprioritised (at most
// demoteAfter).
const suspectDemoteAfter = time.Millisecond

// Job states of an instance's current operation.
const (
	jobIdle int32 = iota
	jobQueued
	jobRunning
	jobDone
	jobAbandoned
)

// job is the operation an instance's caller hands to a worker. It lives
// in the instance and is reused: an instance runs one operation at a time.
type job struct {
	op    func(*instance)
	state atomic.Int32
	// finished receives when the worker is done with a call the caller
	// still waits for.
	finished chan struct{}
}

// start moves a queued job to running; false if the caller abandoned it.
func (j *job) start() bool { return j.state.CompareAndSwap(jobQueued, jobRunning) }

// finish hands the result back to the caller, or cleans up after a call
// the caller abandoned at its deadline.
func (j *job) finish(inst *instance) {
	if j.state.CompareAndSwap(jobRunning, jobDone) {
		j.finished <- struct{}{}
		return
	}
	inst.owner.abandoned(inst)
}

// abandon is the caller giving up at the deadline. It reports false when
// the worker finished first (the result is then waiting in finished).
func (j *job) abandon() bool {
	for {
		s := j.state.Load()
		if s == jobDone {
			<-j.finished
			j.state.Store(jobIdle)
			return false
		}
		if j.state.CompareAndSwap(s, jobAbandoned) {
			return true
		}
	}
}

// exec runs inst.job.op with inst's deadline already armed: on a worker
// when the pool has workers, otherwise on the calling goroutine. It
// reports true when the deadline passed first: the instance then belongs
// to the worker, which discards it once the guest has stopped (see
// module.abandoned); the caller must not touch it again.
func (p *workerPool) exec(inst *instance) (abandoned bool) {
	if p == nil {
		inst.ctx.start()
		inst.job.op(inst)
		return false
	}
	if p.tryInline(inst) {
		return false
	}
	offload(inst.st.ex) // the request waits for a worker
	p.procsFor()
	inst.ctx.watchOn(p.wd)
	j := &inst.job
	j.state.Store(jobQueued)
	p.busy.Add(1)
	select {
	case p.jobs <- inst:
	case <-inst.ctx.done:
		p.busy.Add(-1)
		j.state.Store(jobIdle)
		return false // never started: the caller sees the timeout
	case <-p.quit:
		p.busy.Add(-1)
		j.state.Store(jobIdle)
		inst.ctx.fire()
		return false
	}
	select {
	case <-j.finished:
		j.state.Store(jobIdle)
		return false
	case <-inst.ctx.done:
		if !j.abandon() {
			return false
		}
		inst.st.abandon()
		return true
	}
}

// probation is the number of calls a guest makes on the workers, each
// within demoteAfter, before its calls run inline.
const probation = 32

// tryInline runs the operation of a trusted guest (one that made its
// probation calls on the workers, all within demoteAfter, and did not
// overrun since) on the calling goroutine, if fewer than inlineMax run so
// already; otherwise the operation goes to a worker (waiting for an inline
// call to end would convoy the requests behind it). A call that overruns
// demoteAfter, or a long instantiation, makes the guest a suspect: its
// later operations go to the workers, until it passes its probation again
// (see judge); a call that reached its deadline bars the guest from
// running inline for good (see module.barred): its caller was held until
// the guest noticed. It reports whether it ran the operation.
func (p *workerPool) tryInline(inst *instance) bool {
	m := inst.owner
	if !m.trusted() {
		return false
	}
	if p.inline.Add(1) > p.inlineMax {
		p.inline.Add(-1)
		return false
	}
	start := time.Now()
	inst.ctx.start()
	inst.ctx.offloadAt = start.Add(p.demoteAfter)
	inst.job.op(inst)
	inst.ctx.offloadAt = time.Time{}
	took := time.Since(start)
	p.inline.Add(-1)
	if inst.st.phase != phaseInit && inst.ctx.fired.Load() {
		m.barred.Store(true)
	}
	m.judge(inst, took, p.demoteAfter)
	return true
}

// judge records how an operation of the guest went. A call that took
// longer than demoteAfter, or an instantiation longer than a quarter of
// the start deadline, makes the guest a suspect and restarts its
// probation; probation calls count the calls within demoteAfter. A
// suspect that makes its probation calls (on the workers) is trusted
// again: a call can take long because the machine is busy, while a
// looping guest never passes.
func (m *module) judge(inst *instance, took, demoteAfter time.Duration) {
	if inst.st.phase == phaseInit {
		if took > m.opts.InitTimeout/4 {
			m.suspect.Store(true)
			m.good.Store(0)
		}
		return
	}
	if took > demoteAfter {
		m.suspect.Store(true)
		m.good.Store(0)
		return
	}
	if m.good.Load() < probation && m.good.Add(1) >= probation {
		m.suspect.Store(false)
	}
}

// procs is what the pools added to GOMAXPROCS.
var procs struct {
	sync.Mutex
	added int
	base  int
	set   int // the value last set, to leave a value set by others alone
}

// addProcs raises (n > 0) or lowers GOMAXPROCS by n. The base is the
// value before the first pool started: the user's GOMAXPROCS, or the
// runtime's default, to which it returns when the last pool stops.
func addProcs(n int) {
	procs.Lock()
	defer procs.Unlock()
	if procs.added == 0 {
		procs.base = runtime.GOMAXPROCS(0)
		procs.set = procs.base
	}
	procs.added += n
	if runtime.GOMAXPROCS(0) != procs.set {
		return // changed by someone else: theirs
	}
	if procs.added == 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	procs.set = procs.base + procs.added
	runtime.GOMAXPROCS(procs.set)
}
