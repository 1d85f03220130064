package plugins

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Guest code compiled by wazero cannot be preempted by the Go scheduler: a
// guest that loops holds its goroutine's P (and the OS thread under it)
// until wazero notices the deadline. Run on the request's goroutine, a few
// such guests take every P and stall the whole process, including the
// timers and the goroutine that would stop them.
//
// So guests run on a workerPool: a fixed set of goroutines, each locked to
// an OS thread of its own, with GOMAXPROCS raised by the pool's size while
// the pool runs. Guests then occupy Ps of their own, and the Ps the rest of
// the process had stay free. A request hands its call to a worker and waits
// for the result or the deadline, whichever comes first: it returns at the
// deadline even if the guest has not stopped yet (the worker cleans up once
// it has). A worker whose call runs longer than demoteAfter lowers its OS
// thread to the lowest scheduling priority (nice 19), so that a guest
// spinning on a CPU yields it to the threads serving other routes; that
// thread ends when the call does (its priority cannot be raised again
// without privileges) and a fresh worker takes its place.
//
// Where threads cannot be deprioritised (see worker_other.go), there are no
// workers and guests run on the calling goroutine, as before.

// workerPool runs guest calls on dedicated, locked OS threads.
type workerPool struct {
	size        int
	demoteAfter time.Duration
	jobs        chan *instance
	quit        chan struct{}
	wg          sync.WaitGroup
	stopOnce    sync.Once
	// demoted counts the calls that overran demoteAfter (and the worker
	// threads replaced after them).
	demoted atomic.Int64
}

// worker is one pool goroutine and its OS thread.
type worker struct {
	pool *workerPool
	tid  int
	// demote lowers the thread's priority when a call overruns;
	// demoteDone receives once it has.
	demote     *time.Timer
	demoteDone chan struct{}
}

// startWorkers starts n workers and raises GOMAXPROCS by n.
func startWorkers(n int, demoteAfter time.Duration) *workerPool {
	p := &workerPool{
		size:        n,
		demoteAfter: demoteAfter,
		jobs:        make(chan *instance),
		quit:        make(chan struct{}),
	}
	addProcs(n)
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
		addProcs(-p.size)
	})
}

// work is a worker goroutine. It never unlocks its thread: when the
// goroutine returns, the runtime ends the thread with it, so a
// deprioritised thread never serves other goroutines.
func (p *workerPool) work() {
	defer p.wg.Done()
	runtime.LockOSThread()
	w := &worker{pool: p, tid: threadID(), demoteDone: make(chan struct{}, 1)}
	w.demote = time.AfterFunc(time.Hour, w.lower)
	w.demote.Stop()
	defer w.demote.Stop()
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
	if !inst.job.start() {
		// The caller gave up before the call started.
		inst.owner.abandoned(inst)
		return true
	}
	w.demote.Reset(w.pool.demoteAfter)
	inst.job.op(inst)
	fired := !w.demote.Stop()
	inst.job.finish(inst)
	if fired {
		<-w.demoteDone
		return false
	}
	return true
}

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
		inst.job.op(inst)
		return false
	}
	j := &inst.job
	j.state.Store(jobQueued)
	select {
	case p.jobs <- inst:
	case <-inst.ctx.done:
		j.state.Store(jobIdle)
		return false // never started: the caller sees the timeout
	case <-p.quit:
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
