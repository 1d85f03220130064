package plugins

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
)

// phase is what a guest instance is doing, which decides what the host
// functions act on.
type phase uint8

const (
	phaseIdle     phase = iota
	phaseInit           // instantiation (_initialize): no request
	phaseRequest        // handle_request
	phaseResponse       // handle_response
)

// callState is the per-instance state the host functions work on. It is
// reset at the start of every call and reused, so that a call does not
// allocate for its bookkeeping.
type callState struct {
	mod   *module
	ex    Exchange
	phase phase

	// mu is held by every host function while it runs; gone is set (under
	// mu) when the caller left at the deadline while the guest still ran
	// on a worker: the request has moved on, and the host functions trap
	// instead of touching it.
	mu   sync.Mutex
	gone bool

	// initFeatures were enabled outside of any request (at instantiation)
	// and hold for every request of the instance; features is the set of
	// the current request.
	initFeatures Features
	features     Features

	// The response a guest composes during handle_request: sent as a Reply
	// when it returns next=0; its headers are added to the forwarded
	// response otherwise.
	status          int
	respHeaders     [][2]string
	respBody        []byte
	respBodyWritten bool

	// A request body the guest wrote during handle_request.
	reqBodyOut     []byte
	reqBodyWritten bool

	// Body read cursors (read_body is stateful).
	reqBodyIn      []byte
	reqBodyLoaded  bool
	reqBodyRead    int
	respBodyIn     []byte
	respBodyLoaded bool
	respBodyRead   int

	// Scratch space for the multi-value header functions.
	names   []string
	values  [][]byte
	scratch []byte

	// interned strings (see intern).
	strs map[string]string
}

// Interning bounds: header names and short values repeat from request to
// request, so a guest setting the same header each time does not allocate.
const (
	maxInterned   = 128
	maxInternSize = 64
)

// intern returns b as a string, reusing an equal string made before.
func (st *callState) intern(b []byte) string {
	if len(b) > maxInternSize {
		return string(b)
	}
	if s, ok := st.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(st.strs) < maxInterned {
		if st.strs == nil {
			st.strs = make(map[string]string)
		}
		st.strs[s] = s
	}
	return s
}

func (st *callState) begin(ex Exchange, ph phase) {
	st.ex = ex
	st.phase = ph
	st.features = st.initFeatures
	st.status = 200
	st.respHeaders = st.respHeaders[:0]
	st.respBody = st.respBody[:0]
	st.respBodyWritten = false
	st.reqBodyOut = st.reqBodyOut[:0]
	st.reqBodyWritten = false
	st.reqBodyIn, st.reqBodyLoaded, st.reqBodyRead = nil, false, 0
	st.respBodyIn, st.respBodyLoaded, st.respBodyRead = nil, false, 0
}

// abandon fences the state off the caller that leaves at the deadline:
// once it returns, no host function touches the exchange any more. It
// waits for a host function in progress (they are short, except a
// read_body that waits for the client, bounded by the read timeout).
func (st *callState) abandon() {
	st.mu.Lock()
	st.gone = true
	st.ex = nil
	st.reqBodyIn, st.respBodyIn = nil, nil
	st.mu.Unlock()
}

// end drops the references to the exchange so that a pooled instance does
// not keep a finished request alive.
func (st *callState) end() {
	st.ex = nil
	st.phase = phaseIdle
	st.reqBodyIn, st.respBodyIn = nil, nil
	clear(st.names)
	clear(st.values)
	clear(st.respHeaders)
}

// reply turns what the guest wrote during handle_request into a Reply. The
// buffers are handed over (not copied); the state gets new ones next time.
func (st *callState) reply() *middleware.Reply {
	r := &middleware.Reply{Status: st.status}
	if len(st.respHeaders) > 0 {
		r.Headers = st.respHeaders
		st.respHeaders = nil
	}
	if st.respBodyWritten && len(st.respBody) > 0 {
		r.Body = st.respBody
		st.respBody = nil
	}
	return r
}

// forward applies what the guest wrote during a handle_request that
// returned next=1: response headers to add to whatever response the
// client gets, and a replaced request body. It hands over the response
// body the guest wrote, if any, which goes before the backend's.
func (st *callState) forward() (respBody []byte) {
	for _, h := range st.respHeaders {
		st.ex.AddResponseHeader(h[0], h[1])
	}
	if st.reqBodyWritten {
		st.ex.SetRequestBody(st.reqBodyOut)
		st.reqBodyOut = nil
	}
	if st.respBodyWritten && len(st.respBody) > 0 {
		respBody = st.respBody
		st.respBody = nil
	}
	return respBody
}

// finishResponse applies a response body the guest wrote during
// handle_response.
func (st *callState) finishResponse() {
	if st.respBodyWritten {
		st.ex.SetResponseBody(st.respBody)
		st.respBody = nil
	}
}

// pendingSet replaces (add=false) or extends the response headers composed
// during handle_request.
func (st *callState) pendingSet(name, value string, add bool) {
	if !add {
		st.pendingDel(name)
	}
	st.respHeaders = append(st.respHeaders, [2]string{name, value})
}

func (st *callState) pendingDel(name string) {
	kept := st.respHeaders[:0]
	for _, h := range st.respHeaders {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	clear(st.respHeaders[len(kept):])
	st.respHeaders = kept
}

// stateKey finds the callState of the instance a host function runs for.
type stateKey struct{}

// callCtx is the context.Context of every call into one instance. It carries
// the instance's callState and the call deadline without allocating per
// call. The guest's code checks the deadline itself, through the host's
// tick (see instrument and callCtx.tick); done is closed when the deadline
// passes on the watchdog. A call on the caller's goroutine needs no timer:
// tick, and disarm after the call, compare the deadline with the clock. A
// call handed to a worker has an entry on the pool's watchdog (see
// watchdog), which lets its caller return at the deadline. A callCtx
// fires at most once: an instance whose deadline fired is discarded.
type callCtx struct {
	st    *callState
	done  chan struct{}
	fired atomic.Bool
	once  sync.Once
	// clock: the current call's deadline is checked against the clock
	// (see start).
	clock bool
	// offloadAt, when set, is when an inline call moves its exchange off
	// its event loop, if it is still running then (see tick).
	offloadAt time.Time
	// deadline is the current call's, set by arm.
	deadline time.Time
	watch    watch
	// wd is the watchdog watch is armed on, nil when the clock is used.
	wd *watchdog
}

func newCallCtx(st *callState) *callCtx {
	c := &callCtx{st: st, done: make(chan struct{})}
	c.watch.fn = c.fire
	return c
}

func (c *callCtx) fire() {
	c.once.Do(func() {
		c.fired.Store(true) // before close: Err is read once Done is closed
		close(c.done)
	})
}

// errGuestClosed is the trap of a guest that reached tick after its
// module was closed.
var errGuestClosed = errors.New("the plugin was closed")

// errDeadline is the trap of a guest that reached tick past its deadline.
var errDeadline = errors.New("the call ran past its deadline")

// tick is the guest's periodic call into the host (see instrument): it
// traps once the call's deadline has passed, whether the watchdog fired
// already or not. An inline call still running at offloadAt moves its
// exchange off its event loop there and then, so that a trusted guest
// that starts to loop holds its loop for at most that long: the call goes
// on, on a goroutine of its own.
func (c *callCtx) tick() {
	if c.fired.Load() {
		panic(errDeadline)
	}
	now := time.Now()
	if !c.deadline.IsZero() && !now.Before(c.deadline) {
		c.fire()
		panic(errDeadline)
	}
	if !c.offloadAt.IsZero() && !now.Before(c.offloadAt) {
		c.offloadAt = time.Time{}
		offload(c.st.ex)
	}
}

// arm sets the deadline of a call; start (on the caller's goroutine, now
// being the current time) or watchOn (on a worker) starts it.
func (c *callCtx) arm(deadline time.Time) { c.deadline = deadline }

// start starts the deadline of a call on the caller's goroutine: the
// guest's ticks and disarm check it against the clock. (A Go timer would
// cost more than the call of a small guest: its reset takes the lock of
// the P's timer heap.)
func (c *callCtx) start() { c.clock = true }

// watchOn starts the deadline on the watchdog d.
func (c *callCtx) watchOn(d *watchdog) {
	c.wd = d
	d.add(&c.watch, c.deadline)
}

// disarm stops the deadline; false means it fired (or is firing) and the
// instance must not be used again.
func (c *callCtx) disarm() bool {
	if c.wd != nil {
		stopped := c.wd.remove(&c.watch)
		c.wd = nil
		return stopped && !c.fired.Load()
	}
	if c.clock {
		c.clock = false
		if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			c.fire()
		}
	}
	return !c.fired.Load()
}

// stop releases the deadline of a discarded instance.
func (c *callCtx) stop() { c.disarm() }

func (c *callCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *callCtx) Done() <-chan struct{}       { return c.done }

func (c *callCtx) Err() error {
	if c.fired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *callCtx) Value(key any) any {
	switch key.(type) {
	case stateKey:
		return c.st
	case callCtxKey:
		return c
	}
	return nil
}

// callCtxKey finds the callCtx of a call (for tick).
type callCtxKey struct{}
