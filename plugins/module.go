package plugins

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Plugin is one loaded guest with its configuration, ready to serve
// requests. It is safe for concurrent use.
type Plugin interface {
	// OnRequest runs handle_request. It returns a Reply when the guest
	// answered the request itself (next=0), nil to forward it. A non-nil
	// error (always an *Error) means the guest failed; the request was
	// possibly changed before it did.
	OnRequest(ex Exchange) (*middleware.Reply, error)
	// OnResponse runs handle_response for a request OnRequest forwarded; it
	// does nothing for the others.
	OnResponse(ex Exchange) error
	// Close stops new calls; calls in flight finish on their instances,
	// which are then closed.
	Close() error
}

var (
	_ Plugin = (*module)(nil)
	_ Plugin = (*Handler)(nil)
)

// Error is the error of a failed guest call.
type Error struct {
	// Reason is short and bounded, usable as a metric label: "timeout",
	// "trap", "exit", "bad_return", "busy", "overloaded", "instantiate" or
	// "closed".
	Reason string
	Err    error
}

func (e *Error) Error() string { return "wasm plugin " + e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

var (
	errClosed  = &Error{Reason: "closed", Err: errors.New("plugin closed")}
	errBusy    = &Error{Reason: "busy", Err: errors.New("no free guest instance in time")}
	errTimeout = errors.New("deadline exceeded")
)

// module is a Plugin: one compiled guest, one configuration, and a bounded
// pool of instances of it.
type module struct {
	c      *compiled
	rt     wazero.Runtime
	lim    *limiter    // shared by the versions of one Handler
	pool   *workerPool // nil: guests run on the calling goroutine
	modCfg wazero.ModuleConfig
	config []byte
	opts   *Options
	log    *slog.Logger
	path   string
	route  string
	// key is the Exchange value under which the state between
	// handle_request and handle_response is kept.
	key string

	idle  chan *instance // instances ready for a call
	slots chan struct{}  // one per live instance: bounds the pool
	done  chan struct{}  // closed by Close
	live  atomic.Int64   // instances not yet closed
	shut  atomic.Bool    // Close was called
	fin   sync.Once      // releases c once shut and live == 0
	once  sync.Once      // Close
	// suspect: a call ran longer than the pool's demoteAfter; calls then
	// go to the workers (see workerPool). good counts the calls within it
	// since the guest started or last overran, up to probation.
	suspect atomic.Bool
	good    atomic.Int64
	// barred: a call of the guest ran on its caller's goroutine until its
	// deadline; its calls never run there again (see workerPool.tryInline).
	barred atomic.Bool
	// overruns counts the calls in a row that reached their deadline;
	// holdNew is when a new instance may start again (UnixNano, 0: now).
	// See overran.
	overruns atomic.Int64
	holdNew  atomic.Int64
	// created counts the instances made, for the Manager's statistics.
	created *atomic.Int64
	// mem allocates the instances' linear memories (nil: wazero's).
	mem *guestMemory
}

// instance is one instantiated guest.
type instance struct {
	owner      *module
	mod        api.Module
	handleReq  api.Function
	handleResp api.Function // nil when the guest does not export it
	st         callState
	ctx        *callCtx
	stack      [2]uint64
	// job is the operation handed to a worker; fn, n and err are the
	// guest call it makes and its error.
	job job
	fn  api.Function
	n   int
	err error
	// slot: the current operation holds a slot of the owner's limiter,
	// released by whoever finishes with the instance.
	slot bool
}

// pending is what OnRequest leaves in the Exchange for OnResponse.
type pending struct {
	features Features
	reqCtx   uint32
	inst     *instance // kept when the guest returned a request context
	// body is the response body the guest wrote in handle_request before
	// it forwarded the request.
	body []byte
}

var pendingPool = sync.Pool{New: func() any { return new(pending) }}

func newModule(c *compiled, rt wazero.Runtime, lim *limiter, pool *workerPool, opts *Options, log *slog.Logger, config []byte, path, route, key string) *module {
	m := &module{
		c:      c,
		rt:     rt,
		lim:    lim,
		pool:   pool,
		config: config,
		opts:   opts,
		log:    log,
		path:   path,
		route:  route,
		key:    key,
		idle:   make(chan *instance, opts.MaxInstances),
		slots:  make(chan struct{}, opts.MaxInstances),
		done:   make(chan struct{}),
	}
	out := &logWriter{log: log, level: slog.LevelDebug, path: path, route: route, stream: "stdout"}
	errw := &logWriter{log: log, level: slog.LevelWarn, path: path, route: route, stream: "stderr"}
	m.modCfg = wazero.NewModuleConfig().
		WithName(""). // anonymous: any number of instances
		// The start function (compiled.start) runs in opInstantiate: a
		// command's proc_exit(0) must not close the instance.
		WithStartFunctions().
		WithStdout(out).
		WithStderr(errw).
		WithSysNanotime().
		WithSysWalltime().
		// No real sleep: a guest cannot block a host thread in a WASI
		// call beyond its deadline (wazero only stops it in guest code).
		WithRandSource(rand.Reader)
	return m
}

// prewarm creates one instance, so that a guest that cannot start is
// reported when the handler is built, not on the first request.
func (m *module) prewarm() error {
	inst, err := m.acquire(nil, nil, time.Time{})
	if err != nil {
		return err
	}
	m.release(inst)
	return nil
}

// acquire returns an idle instance, a new one while the pool is under
// MaxInstances, or waits up to QueueTimeout (and at most until deadline,
// unless it is zero) for one to come back; a new instance must start by
// then too. held points to whether the caller holds a concurrency slot
// (nil: none); a new instance's start takes it along, and leaves it false
// when the worker took the slot over (see instantiate). Unless an idle
// instance is there, ex (nil: none) leaves its event loop first.
func (m *module) acquire(ex Exchange, held *bool, deadline time.Time) (*instance, error) {
	if m.shut.Load() {
		return nil, errClosed
	}
	select {
	case inst := <-m.idle:
		return inst, nil
	default:
	}
	offload(ex) // what follows may wait, or start an instance
	wait := m.opts.QueueTimeout
	if !deadline.IsZero() {
		wait = min(wait, time.Until(deadline))
	}
	if hold := m.holdNew.Load(); hold != 0 {
		if left := time.Duration(hold - time.Now().UnixNano()); left > 0 {
			// No new instance yet (see overran): an idle one may
			// come back meanwhile.
			t := newWaitTimer(m.watchdog(), min(left, wait))
			select {
			case inst := <-m.idle:
				t.stop()
				return inst, nil
			case <-m.done:
				t.stop()
				return nil, errClosed
			case <-t.c:
			}
			if left >= wait {
				return nil, errBusy
			}
			wait -= left
		}
	}
	select {
	case inst := <-m.idle:
		return inst, nil
	case m.slots <- struct{}{}:
		return m.instantiate(held, deadline)
	default:
	}
	t := newWaitTimer(m.watchdog(), wait)
	defer t.stop()
	select {
	case inst := <-m.idle:
		return inst, nil
	case m.slots <- struct{}{}:
		return m.instantiate(held, deadline)
	case <-m.done:
		return nil, errClosed
	case <-t.c:
		return nil, errBusy
	}
}

// watchdog is the workers' watchdog, nil without workers (see watchdog:
// with workers, a Go timer may sit on the P of a deprioritised guest).
func (m *module) watchdog() *watchdog {
	if m.pool == nil {
		return nil
	}
	return m.pool.wd
}

// instantiate creates an instance in a slot the caller took. The guest's
// start functions run like a call: on a worker, within InitTimeout.
func (m *module) instantiate(held *bool, deadline time.Time) (*instance, error) {
	// live before shut: Close then either sees this instance, or this
	// sees Close and gives up before touching the compiled module.
	m.live.Add(1)
	if m.shut.Load() {
		m.dropSlot()
		return nil, errClosed
	}
	inst := &instance{owner: m, job: job{op: opInstantiate, finished: make(chan struct{}, 1)}}
	inst.st.mod = m
	inst.ctx = newCallCtx(&inst.st)
	inst.st.phase = phaseInit
	limit := m.opts.InitTimeout
	if !deadline.IsZero() {
		limit = min(limit, max(time.Until(deadline), time.Millisecond))
	}
	inst.ctx.arm(time.Now().Add(limit))
	inst.slot = held != nil && *held
	if m.pool.exec(inst) {
		if held != nil {
			*held = false
		}
		return nil, &Error{Reason: "timeout", Err: fmt.Errorf("instantiating %s: %w", m.path, errTimeout)}
	}
	ok := inst.ctx.disarm()
	inst.st.phase = phaseIdle
	inst.slot = false
	err := inst.err
	if err == nil && !ok {
		if inst.mod != nil {
			_ = inst.mod.Close(context.Background())
		}
		err = errTimeout
	}
	if err != nil {
		inst.ctx.stop()
		m.dropSlot()
		reason := "instantiate"
		if !ok {
			reason = "timeout"
		}
		return nil, &Error{Reason: reason, Err: fmt.Errorf("instantiating %s: %w", m.path, err)}
	}
	inst.err = nil
	inst.handleReq = inst.mod.ExportedFunction("handle_request")
	if m.c.hasResponse {
		inst.handleResp = inst.mod.ExportedFunction("handle_response")
	}
	if m.created != nil {
		m.created.Add(1)
	}
	return inst, nil
}

// Restarting a guest whose calls keep reaching their deadline backs off, as
// Envoy's FAIL_RELOAD does: after overrunsBeforeHold such calls in a row, a
// new instance may start only holdMin later, twice as long after each
// further one, up to holdMax. Each such call held a CPU until its deadline
// and left its instance to be replaced, a start that costs milliseconds of
// CPU for a language runtime. Meanwhile idle instances still serve, and a
// request that finds none within its deadline gets errBusy. A call that
// returns in time ends the backoff.
const (
	overrunsBeforeHold = 3
	holdMin            = 50 * time.Millisecond
	holdMax            = time.Second
)

// overran records a call that reached its deadline.
func (m *module) overran() {
	n := m.overruns.Add(1)
	if n < overrunsBeforeHold {
		return
	}
	hold := holdMax
	if shift := n - overrunsBeforeHold; shift < 5 {
		hold = min(holdMax, holdMin<<shift)
	}
	m.holdNew.Store(time.Now().Add(hold).UnixNano())
}

// inTime records a call that returned before its deadline.
func (m *module) inTime() {
	if m.overruns.Load() != 0 {
		m.overruns.Store(0)
		m.holdNew.Store(0)
	}
}

// opInstantiate is the worker's part of instantiate.
func opInstantiate(inst *instance) {
	m := inst.owner
	ctx := context.Context(inst.ctx)
	if m.mem != nil {
		ctx = experimental.WithMemoryAllocator(ctx, m.mem)
	}
	inst.mod, inst.err = m.rt.InstantiateModule(ctx, m.c.mod, m.modCfg)
	if inst.err != nil || m.c.start == "" {
		return
	}
	if inst.err = runStart(ctx, inst.mod, m.c.start); inst.err != nil {
		_ = inst.mod.Close(context.Background())
		inst.mod = nil
	}
}

// runStart runs the start function of a new instance: a command's _start
// (its main, which registers the handler: once per instance) or a
// reactor's _initialize. A main that ends with proc_exit(0) succeeded.
func runStart(ctx context.Context, mod api.Module, name string) error {
	_, err := mod.ExportedFunction(name).Call(ctx)
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 && !mod.IsClosed() {
		return nil // not the runtime closing at shutdown
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// opCall is the worker's part of call.
func opCall(inst *instance) {
	inst.err = inst.fn.CallWithStack(inst.ctx, inst.stack[:inst.n])
}

// release puts a healthy instance back in the pool.
func (m *module) release(inst *instance) {
	if m.shut.Load() {
		m.discard(inst)
		return
	}
	m.idle <- inst // never blocks: at most MaxInstances exist
	if m.shut.Load() {
		m.drain() // Close may have drained before the send
	}
}

// discard closes an instance that failed (or belongs to a closed pool).
func (m *module) discard(inst *instance) {
	inst.ctx.stop()
	inst.st.end()
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
	m.dropSlot()
}

// abandoned is the worker finishing an operation whose caller left at the
// deadline: the guest has stopped now, so its instance is closed and the
// call's concurrency slot freed.
func (m *module) abandoned(inst *instance) {
	slot := inst.slot
	inst.slot = false
	// The caller may still be fencing the state off (callState.abandon).
	inst.st.mu.Lock()
	inst.st.gone = true
	inst.st.end()
	inst.st.mu.Unlock()
	inst.ctx.stop()
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
	m.dropSlot()
	if slot {
		m.lim.release()
	}
}

func (m *module) dropSlot() {
	<-m.slots
	if m.live.Add(-1) == 0 && m.shut.Load() {
		m.finish()
	}
}

func (m *module) drain() {
	for {
		select {
		case inst := <-m.idle:
			m.discard(inst)
		default:
			return
		}
	}
}

func (m *module) finish() {
	m.fin.Do(func() { m.c.release() })
}

// Close implements Plugin.
func (m *module) Close() error {
	m.once.Do(func() {
		m.shut.Store(true)
		close(m.done)
		m.drain()
		if m.live.Load() == 0 {
			m.finish()
		}
	})
	return nil
}

// call runs fn on inst until deadline. abandoned reports that the
// caller left at the deadline while the guest was still running: the
// instance and its slot are the worker's now (see exec). Otherwise
// timedOut reports that the deadline fired, in which case the instance
// must be discarded even if the call returned. The module counts the
// overrun, or the call in time (see overran).
func (inst *instance) call(fn api.Function, n int, deadline time.Time) (abandoned, timedOut bool, err error) {
	m := inst.owner
	left := time.Until(deadline)
	if left <= 0 {
		m.overran()
		return false, true, errTimeout // the wait took the whole budget
	}
	inst.fn, inst.n, inst.err = fn, n, nil
	inst.job.op = opCall
	inst.ctx.arm(deadline)
	if m.pool.exec(inst) {
		m.overran()
		return true, true, errTimeout
	}
	timedOut = !inst.ctx.disarm()
	if timedOut {
		m.overran()
	} else {
		m.inTime()
	}
	err, inst.err = inst.err, nil
	return false, timedOut, err
}

// callError classifies the error of a guest call.
func callError(phase string, timedOut bool, err error) *Error {
	if err == nil {
		err = errTimeout
	}
	reason := "trap"
	var exit *sys.ExitError
	switch {
	case timedOut:
		reason = "timeout"
	case errors.As(err, &exit):
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			reason = "timeout"
		default:
			reason = "exit"
		}
	}
	return &Error{Reason: reason, Err: fmt.Errorf("%s: %w", phase, err)}
}

// enter takes a concurrency slot for a call, unless the guest is trusted
// to run inline (see workerPool.tryInline): such calls are bounded by the
// pool's inline tokens instead, and never outlive their deadline by more
// than the guest takes to notice it, once. held reports a slot taken. ex
// leaves its event loop before it may wait for a slot (the guest may have
// lost its trust since the caller looked).
func (m *module) enter(ex Exchange) (held bool, err error) {
	if m.inlines() {
		return false, nil
	}
	offload(ex)
	if err := m.lim.acquire(m.watchdog()); err != nil {
		return false, err
	}
	return true, nil
}

// inlines reports whether the guest's calls run inline (trusted, with a
// worker pool: without one, every call runs on the caller's goroutine and
// the exchange leaves the loop first).
func (m *module) inlines() bool { return m.pool != nil && m.trusted() }

// trusted: the guest passed its probation and did not overrun since.
func (m *module) trusted() bool {
	return !m.suspect.Load() && m.good.Load() >= probation && !m.barred.Load()
}

// offload moves ex off its event loop, if it is on one, before anything
// that may wait: a guest call that is not run inline (the guest is new or
// a suspect, or the inline calls are all taken: the call goes to a worker
// and the request waits for it), a wait for a concurrency slot or an
// instance, the start of a new instance, or the read of a request body.
// A trusted guest's call on an idle instance runs on the loop: it waits
// for nothing, and its deadline needs no goroutine (see instrument). Off
// the loop, the exchange runs on a goroutine of its own until it ends; the
// connection then rejoins its loop. ex may be nil (no exchange: an
// instance started ahead of requests).
func offload(ex Exchange) {
	if ex != nil {
		ex.Offload()
	}
}

// OnRequest implements Plugin. Unless the guest is trusted to run inline,
// the exchange first leaves its event loop, if it is on one (see enter and
// offload).
func (m *module) OnRequest(ex Exchange) (*middleware.Reply, error) {
	deadline := time.Now().Add(m.opts.Timeout)
	held, err := m.enter(ex)
	if err != nil {
		return nil, err
	}
	defer func() {
		if held {
			m.lim.release()
		}
	}()
	inst, err := m.acquire(ex, &held, deadline)
	if err != nil {
		return nil, err
	}
	st := &inst.st
	st.begin(ex, phaseRequest)
	inst.slot = held
	abandoned, timedOut, err := inst.call(inst.handleReq, 1, deadline)
	if abandoned {
		held = false
		return nil, callError("handle_request", true, err)
	}
	inst.slot = false
	if err != nil || timedOut {
		m.discard(inst)
		return nil, callError("handle_request", timedOut, err)
	}
	return m.afterRequest(ex, inst)
}

// afterRequest turns what handle_request did into OnRequest's result.
func (m *module) afterRequest(ex Exchange, inst *instance) (*middleware.Reply, error) {
	st := &inst.st
	ctxNext := inst.stack[0]
	switch uint32(ctxNext) {
	case 0:
		reply := st.reply()
		st.end()
		m.release(inst)
		return reply, nil
	case 1:
	default:
		m.discard(inst)
		return nil, &Error{Reason: "bad_return", Err: fmt.Errorf("handle_request returned next=%d (want 0 or 1)", uint32(ctxNext))}
	}
	body := st.forward()
	if inst.handleResp == nil && body == nil {
		st.end()
		m.release(inst)
		return nil, nil
	}
	p := pendingPool.Get().(*pending)
	p.features = st.features
	p.reqCtx = uint32(ctxNext >> 32)
	p.body = body
	st.end()
	if p.reqCtx != 0 && inst.handleResp != nil {
		// The guest correlates handle_response with this request through
		// its own memory: the same instance must run it.
		p.inst = inst
	} else {
		m.release(inst)
	}
	ex.SetValue(m.key, p)
	return nil, nil
}

// responseNeeds reports what OnResponse needs for ex. NeedBody implies
// NeedResponse.
func responseNeeds(ex Exchange, key string) ResponseNeeds {
	p, _ := ex.Value(key).(*pending)
	if p == nil {
		return NeedNone
	}
	if p.features&FeatureBufferResponse != 0 || p.body != nil {
		return NeedBody
	}
	return NeedResponse
}

// writeBody puts the body the guest wrote while forwarding the request
// before the backend's (the stream it wrote to), once. The gateway's own
// error response is left alone.
func (p *pending) writeBody(ex Exchange) {
	if p.body == nil {
		return
	}
	if !ex.ResponseIsError() {
		ex.SetResponseBody(append(p.body, ex.ResponseBody()...))
	}
	p.body = nil
}

// free drops the pending state of a request.
func (p *pending) free(ex Exchange, key string) {
	ex.SetValue(key, nil)
	*p = pending{}
	pendingPool.Put(p)
}

// OnResponse implements Plugin. Like OnRequest, it moves the exchange off
// its event loop unless the guest runs inline.
func (m *module) OnResponse(ex Exchange) error {
	p, _ := ex.Value(m.key).(*pending)
	if p == nil {
		return nil
	}
	p.writeBody(ex)
	if p.inst == nil && !m.c.hasResponse {
		p.free(ex, m.key)
		return nil
	}
	deadline := time.Now().Add(m.opts.Timeout)
	held, err := m.enter(ex)
	if err != nil {
		if p.inst != nil {
			// Its guest keeps state for this request: not reusable.
			p.inst.owner.discard(p.inst)
		}
		p.free(ex, m.key)
		return err
	}
	defer func() {
		if held {
			m.lim.release()
		}
	}()
	inst := p.inst
	if inst == nil {
		// Any instance will do. On failure the pending state stays for a
		// retry on the module swapped in meanwhile.
		if inst, err = m.acquire(ex, &held, deadline); err != nil {
			return err
		}
	}
	features, reqCtx := p.features, p.reqCtx
	p.free(ex, m.key)
	// inst may come from a module that was swapped out since: it goes back
	// to its own pool.
	owner := inst.owner
	st := &inst.st
	st.begin(ex, phaseResponse)
	st.features |= features
	inst.stack[0] = uint64(reqCtx)
	inst.stack[1] = 0
	if ex.ResponseIsError() {
		inst.stack[1] = 1
	}
	inst.slot = held
	abandoned, timedOut, err := inst.call(inst.handleResp, 2, deadline)
	if abandoned {
		held = false
		return callError("handle_response", true, err)
	}
	inst.slot = false
	if err != nil || timedOut {
		owner.discard(inst)
		return callError("handle_response", timedOut, err)
	}
	st.finishResponse()
	st.end()
	owner.release(inst)
	return nil
}
