//go:build linux

package l7

import (
	"io"
	"iter"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event loops: the fast engine's connections wait on epoll loops instead
// of each parking its own goroutine on the runtime's poller.
//
// Each connection still runs the ordinary blocking code (clientConn.serve),
// but as a coroutine (iter.Pull) driven by one loop. When a read or write
// would block, the connection registers what it waits for and yields; the
// loop's epoll_wait wakes it, on the loop's thread, without a trip through
// the scheduler's run queues or a wake-up of another thread. With a
// goroutine per connection a request costs two such wake-ups (the client's
// request, the backend's answer) and a read that only returns EAGAIN
// before each; with loops it costs two epoll events handled in arrival
// order, as in nginx or HAProxy. That keeps the tail latency down when the
// CPUs are busy.
//
// What may block on something other than the connection's own sockets
// (dialing a backend, a request body streamed while the response is read,
// a WebSocket tunnel, HTTP/2, WASM plugins, a JWKS fetch) must not run on
// a loop: the connection first detaches (waiter.detach) and goes on as a
// plain goroutine, then rejoins its loop at the next request
// (waiter.rejoin).

// EventLoopsSupported reports whether the fast engine can run event loops
// on this platform.
const EventLoopsSupported = true

// loopTick bounds how late a timeout fires.
const loopTick = 100 * time.Millisecond

// loopState is what a connection's coroutine did when it last yielded.
type loopState uint8

const (
	stWait loopState = iota + 1
	stDetach
	stRejoin
	stTurn
)

// errLoopClosed ends a wait when the server closes its connections.
var errLoopClosed = &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}

// errLoopTimeout ends a wait whose deadline passed.
var errLoopTimeout = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// waiter is one connection's handle on its loop.
type waiter struct {
	lp       *loop
	cc       *clientConn
	next     func() (struct{}, bool)
	yield    func(struct{}) bool
	attached bool
	// stay keeps a detached connection off the loop (detachToStay).
	stay bool
	// driveFn is drive, made once: starting it on a detach allocates
	// nothing.
	driveFn func()
	state   loopState
	// run counts the requests served since the connection last waited.
	run int
	// waits counts the waits; parkSeen is the wait a sweep last saw
	// parkable (one still the same at the next sweep is parked).
	waits, parkSeen uint32
	parkable        bool

	// The current wait.
	fd       int
	write    bool
	deadline time.Time
	err      error
}

// wait parks the coroutine until fd is ready for reading (or writing),
// the deadline passes (errLoopTimeout) or the server closes it
// (errLoopClosed). b owns fd.
func (w *waiter) wait(b *bufConn, write bool, deadline time.Time) error {
	lp := w.lp
	if err := lp.register(b, write); err != nil {
		return err
	}
	w.fd, w.write, w.deadline, w.err = b.fd, write, deadline, nil
	w.state = stWait
	w.run = 0
	w.waits++
	w.parkable = b.parkable && !write
	if w.parkable && len(lp.live) > liveIdleMax && !lp.srv.stopping.Load() {
		// Many coroutines already: an idle one parks at once instead
		// of after a sweep (see park).
		lp.srv.loopStats.burstParks.Add(1)
		return errPark
	}
	lp.waiting[b.fd] = w
	ok := w.yield(struct{}{})
	if write {
		// Back to read events only: a writable socket would otherwise
		// wake the loop at every acknowledgement.
		lp.register(b, false)
	}
	if !ok {
		return errLoopClosed
	}
	return w.err
}

// detach moves the connection off its loop: from here until rejoin it
// runs as an ordinary goroutine and may block on anything.
func (w *waiter) detach() {
	if w == nil || !w.attached {
		return
	}
	w.attached = false
	w.state = stDetach
	w.yield(struct{}{})
}

// detachToStay detaches for good: the connection's requests go to a
// route whose policies may block, and its next ones likely will too.
func (w *waiter) detachToStay() {
	if w == nil {
		return
	}
	w.stay = true
	w.detach()
}

// rejoin puts a detached connection back on its loop.
func (w *waiter) rejoin() {
	if w == nil || w.attached || w.stay {
		return
	}
	w.attached = true
	w.state = stRejoin
	w.yield(struct{}{})
	// Reads while detached did not track readiness.
	w.cc.bc.rready.Store(true)
}

// maxRun is how many requests a connection may serve on its loop without
// waiting (pipelined requests answered without a backend, say) before it
// lets the loop's other connections have a turn.
const maxRun = 16

// turn is called after each request: a connection that has not waited
// for maxRun requests goes to the back of its loop's queue.
func (w *waiter) turn() {
	if w == nil || !w.attached {
		return
	}
	if w.run++; w.run < maxRun {
		return
	}
	w.run = 0
	w.state = stTurn
	w.yield(struct{}{})
}

// loop returns the loop w is attached to, or nil.
func (w *waiter) loop() *loop {
	if w == nil || !w.attached {
		return nil
	}
	return w.lp
}

// loop is one epoll loop.
type loop struct {
	srv  *Server
	ep   int
	wake int // eventfd

	mu       sync.Mutex
	incoming []*waiter
	// taken is the slice of the incoming last taken, reused (used only on
	// the loop's goroutine): a connection rejoining costs no allocation.
	taken  []*waiter
	stop   bool
	abort  bool
	closed bool // ep and wake are closed

	// Used only on the loop's goroutine (or a coroutine it runs).
	waiting map[int]*waiter
	// parked are idle connections waiting without a coroutine, by
	// descriptor (see park).
	parked    map[int]*waiter
	regs      map[int]*bufConn
	live      map[*waiter]struct{}
	stopSince time.Time
	done      chan struct{}
	events    []unix.EpollEvent
	pollFn    func(uintptr) bool
	nextTick  time.Time
	exit      bool
	epFile    *os.File
	armed     bool // epFile's deadline is set for nextTick
	// turns are connections waiting for their next turn (waiter.turn).
	turns, turnsNext []*waiter
}

// newLoops starts n loops; it returns nil when epoll is not available.
func newLoops(s *Server, n int) []*loop {
	var loops []*loop
	for range n {
		lp, err := newLoop(s)
		if err != nil {
			s.slog.Warn("event loops unavailable; a goroutine per connection", "error", err.Error())
			for _, l := range loops {
				l.shutdown()
			}
			return nil
		}
		loops = append(loops, lp)
		go lp.run()
	}
	return loops
}

func newLoop(s *Server) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	lp := &loop{
		srv: s, ep: ep, wake: wake,
		waiting: map[int]*waiter{},
		parked:  map[int]*waiter{},
		regs:    map[int]*bufConn{},
		live:    map[*waiter]struct{}{},
		done:    make(chan struct{}),
		events:  make([]unix.EpollEvent, 256),
	}
	lp.pollFn = lp.poll
	return lp, nil
}

// useLoop prepares b for I/O on a loop: its descriptor, and the raw
// connection its system calls go through. It reports false for a
// connection without a descriptor.
func (b *bufConn) useLoop() bool {
	sc, ok := b.c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if raw.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return false
	}
	b.fd, b.raw = fd, raw
	b.ioFn = b.rawIO
	return true
}

// sys reads into p (or writes p) with one system call. It goes through
// the connection's RawConn, which holds the descriptor open for the call,
// so a Close from another goroutine cannot hand the number to a new file
// in between.
func (b *bufConn) sys(write bool, p []byte) (int, error) {
	b.ioWrite, b.ioBuf = write, p
	err := b.raw.Control(b.ioFn)
	b.ioBuf = nil
	if err != nil {
		return 0, err
	}
	return b.ioN, b.ioErr
}

func (b *bufConn) rawIO(fd uintptr) {
	if raceEnabled {
		if b.ioWrite {
			b.ioN, b.ioErr = syscall.Write(int(fd), b.ioBuf)
		} else {
			b.ioN, b.ioErr = syscall.Read(int(fd), b.ioBuf)
		}
		return
	}
	nr := uintptr(unix.SYS_READ)
	if b.ioWrite {
		nr = unix.SYS_WRITE
	}
	b.ioN, b.ioErr = rawSyscall(nr, fd, b.ioBuf)
}

// rawSyscall is read(2) or write(2) of p on fd, made without the
// runtime's system call bookkeeping (entersyscall/exitsyscall). The
// loops' sockets are non-blocking, so the call never blocks: it only
// copies to or from the socket's buffers. Made as an ordinary system
// call, the runtime would count the loop's P as in a system call, and
// sysmon, finding one there at each of its ticks under load, would hand
// the P to another thread (a futex wake-up, and the loop's thread
// parking when its call returns) and keep polling every 20 µs. A -race
// build goes through package syscall instead (see raceEnabled).
func rawSyscall(nr, fd uintptr, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	} else {
		ptr = unsafe.Pointer(&rawZero)
	}
	n, _, e := unix.RawSyscall(nr, fd, uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

var rawZero byte

// epollPoll is a non-blocking epoll_wait(2) (timeout 0), made without the
// runtime's bookkeeping as rawSyscall is.
func epollPoll(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// add hands a new connection to the loop. It reports false when the
// connection cannot use loops (no descriptor, or the loop is stopping).
func (lp *loop) add(cc *clientConn) bool {
	if !cc.bc.useLoop() {
		return false
	}
	w := &waiter{lp: lp, cc: cc, attached: true}
	w.driveFn = w.drive
	cc.wt = w
	cc.bc.wt = w
	stop := w.start()
	if !lp.enqueue(w) {
		stop() // never started
		return false
	}
	lp.srv.loopStats.conns.Add(1)
	return true
}

func (lp *loop) enqueue(w *waiter) bool {
	lp.mu.Lock()
	if lp.stop {
		lp.mu.Unlock()
		return false
	}
	lp.incoming = append(lp.incoming, w)
	lp.pokeLocked()
	lp.mu.Unlock()
	return true
}

// pokeLocked wakes the loop; lp.mu is held.
func (lp *loop) pokeLocked() {
	if !lp.closed {
		one := [8]byte{1}
		unix.Write(lp.wake, one[:])
	}
}

// register puts b's descriptor in the loop's epoll set, edge-triggered,
// for reading and, with write, writing; a descriptor registered with
// another loop moves here.
func (lp *loop) register(b *bufConn, write bool) error {
	if b.regLoop == lp && b.regWrite == write {
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(b.fd)}
	if write {
		ev.Events |= unix.EPOLLOUT
	}
	var err error
	switch {
	case b.regLoop == lp:
		err = unix.EpollCtl(lp.ep, unix.EPOLL_CTL_MOD, b.fd, &ev)
	default:
		if b.regLoop != nil {
			unix.EpollCtl(b.regLoop.ep, unix.EPOLL_CTL_DEL, b.fd, nil)
			b.regLoop = nil
			lp.srv.loopStats.moves.Add(1)
		}
		err = unix.EpollCtl(lp.ep, unix.EPOLL_CTL_ADD, b.fd, &ev)
		if err == unix.EEXIST {
			err = unix.EpollCtl(lp.ep, unix.EPOLL_CTL_MOD, b.fd, &ev)
		}
	}
	if err != nil {
		return &net.OpError{Op: "epoll_ctl", Net: "tcp", Err: os.NewSyscallError("epoll_ctl", err)}
	}
	b.regLoop, b.regWrite = lp, write
	lp.regs[b.fd] = b
	return nil
}

func (lp *loop) unregister(b *bufConn) {
	if b.regLoop == lp {
		unix.EpollCtl(lp.ep, unix.EPOLL_CTL_DEL, b.fd, nil)
		b.regLoop = nil
	}
	if lp.regs[b.fd] == b {
		delete(lp.regs, b.fd)
	}
}

// start gives the connection a new coroutine running clientConn.serve,
// to be resumed first; it returns the coroutine's stop.
func (w *waiter) start() func() {
	cc := w.cc
	next, stop := iter.Pull(func(yield func(struct{}) bool) {
		w.yield = yield
		cc.serve()
	})
	w.next = next
	return stop
}

// resume runs w's coroutine until it yields or ends, then acts on what it
// asked for.
func (lp *loop) resume(w *waiter) {
	if _, ok := w.next(); !ok {
		if w.cc.parking {
			lp.park(w)
			return
		}
		lp.finished(w)
		return
	}
	switch w.state {
	case stDetach:
		lp.srv.loopStats.detaches.Add(1)
		delete(lp.live, w)
		lp.unregister(w.cc.bc)
		go w.driveFn()
	case stTurn:
		lp.srv.loopStats.turns.Add(1)
		lp.turns = append(lp.turns, w)
	}
}

// drive runs a detached connection's coroutine on its own goroutine until
// it ends or rejoins the loop.
func (w *waiter) drive() {
	if _, ok := w.next(); !ok {
		return
	}
	// Rejoining: the loop resumes it. If the loop is stopping, go on here.
	for !w.lp.enqueue(w) {
		w.attached = false
		if _, ok := w.next(); !ok {
			return
		}
	}
}

// Parking: a keep-alive connection idle between requests (or a new one
// that has not sent its first byte) holds a coroutine, with its stack,
// and buffers while it waits. One that stays idle from one sweep to the
// next (loopTick) is parked instead: its coroutine ends (clientConn.serve
// returns, giving its buffers and request state back to their pools), and
// only its descriptor stays in the epoll set, with the deadline of the
// wait. The next event for it starts a new coroutine (unpark); the
// deadline, or a shutdown, closes it from the loop (closeParked).

// liveIdleMax is the number of coroutines a loop keeps before an idle
// connection parks as soon as it waits rather than at the next sweep: a
// burst of new or returning connections (thousands of clients that each
// send a request and go idle) then holds a bounded number of stacks at its
// peak, instead of one per connection until the sweep, memory that the
// runtime would only give back to the system slowly. Below it, a busy
// keep-alive connection keeps its coroutine between requests.
var liveIdleMax = 256

// park keeps w, whose coroutine has just ended, waiting without one.
func (lp *loop) park(w *waiter) {
	delete(lp.live, w)
	w.next, w.yield = nil, nil
	lp.parked[w.cc.bc.fd] = w
	lp.srv.loopStats.parks.Add(1)
}

// unpark starts a new coroutine for a parked connection with an event.
func (lp *loop) unpark(w *waiter) {
	delete(lp.parked, w.cc.bc.fd)
	w.start()
	lp.live[w] = struct{}{}
	lp.srv.loopStats.unparks.Add(1)
	lp.resume(w)
}

// closeParked closes a parked connection (its deadline passed, or the
// server stops).
func (lp *loop) closeParked(w *waiter) {
	b := w.cc.bc
	delete(lp.parked, b.fd)
	if lp.regs[b.fd] == b {
		delete(lp.regs, b.fd)
	}
	if b.regLoop == lp {
		// Through the RawConn: the descriptor may have been closed (a
		// shutdown's deadline), and its number taken by another file.
		b.raw.Control(func(fd uintptr) { unix.EpollCtl(lp.ep, unix.EPOLL_CTL_DEL, int(fd), nil) })
		b.regLoop = nil
	}
	w.cc.c.Close()
	w.cc.forget()
}

func (lp *loop) finished(w *waiter) {
	delete(lp.live, w)
	if b := w.cc.bc; b != nil && lp.regs[b.fd] == b {
		delete(lp.regs, b.fd)
	}
}

// run is the loop's goroutine. It does not block in epoll_wait itself:
// the loop's epoll descriptor is waited on through the runtime's poller
// (an epoll set is readable when it has events), so an idle loop parks
// like any goroutine and no thread sits in a blocking system call. Each
// wake drains the set with non-blocking epoll_wait calls.
func (lp *loop) run() {
	defer close(lp.done)
	ep := os.NewFile(uintptr(lp.ep), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		lp.srv.slog.Error("event loop: cannot poll its epoll set", "error", err.Error())
		return
	}
	lp.epFile = ep
	lp.nextTick = time.Now().Add(loopTick)
	for !lp.exit {
		lp.armed = false
		ep.SetReadDeadline(time.Time{})
		rc.Read(lp.pollFn)
		if now := time.Now(); !now.Before(lp.nextTick) {
			lp.nextTick = now.Add(loopTick)
			lp.sweep(now)
		}
	}
	lp.mu.Lock()
	lp.closed = true
	ep.Close()
	unix.Close(lp.wake)
	lp.mu.Unlock()
}

// poll handles the ready events until there are none; it reports true to
// stop waiting (the loop ends, or a sweep is due).
func (lp *loop) poll(fd uintptr) bool {
	for {
		n, err := epollPoll(int(fd), lp.events)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			lp.srv.slog.Error("event loop: epoll_wait failed", "error", err.Error())
			return true
		}
		for i := 0; i < n; i++ {
			lp.event(int(lp.events[i].Fd), lp.events[i].Events)
		}
		if lp.exit {
			return true
		}
		if len(lp.turns) > 0 {
			// Connections that yielded their turn go on, after the
			// events that were ready.
			lp.turns, lp.turnsNext = lp.turnsNext[:0], lp.turns
			for i, w := range lp.turnsNext {
				lp.turnsNext[i] = nil
				lp.resume(w)
			}
			if lp.exit {
				return true
			}
			runtime.Gosched()
			continue
		}
		if n == len(lp.events) {
			// More may be ready. Let the other loops sharing this CPU
			// have their turn first: the scheduler would otherwise leave
			// them waiting until it preempts this one (10 ms).
			runtime.Gosched()
			continue
		}
		// The set was drained when epoll_wait returned; anything ready
		// since makes it readable again and ends the wait at once.
		if len(lp.waiting) > 0 || len(lp.parked) > 0 {
			if !time.Now().Before(lp.nextTick) {
				return true // sweep
			}
			if !lp.armed {
				// Wake for the next sweep even if no event comes.
				lp.armed = true
				lp.epFile.SetReadDeadline(lp.nextTick)
			}
		}
		return false
	}
}

// event handles one epoll event.
func (lp *loop) event(fd int, ev uint32) {
	if fd == lp.wake {
		lp.exit = lp.takeIncoming()
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		if b := lp.regs[fd]; b != nil {
			b.rready.Store(true)
		}
	}
	w := lp.waiting[fd]
	if w == nil {
		if w = lp.parked[fd]; w != nil {
			lp.unpark(w)
		}
		return
	}
	ready := ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0
	if w.write {
		ready = ready || ev&unix.EPOLLOUT != 0
	} else {
		ready = ready || ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0
	}
	if ready {
		delete(lp.waiting, fd)
		lp.resume(w)
	}
}

// takeIncoming starts the connections handed to the loop. It reports
// whether the loop should end (stopped with no connection left).
func (lp *loop) takeIncoming() bool {
	var buf [8]byte
	unix.Read(lp.wake, buf[:])
	lp.mu.Lock()
	in := lp.incoming
	lp.incoming = lp.taken[:0]
	stop, abort := lp.stop, lp.abort
	lp.mu.Unlock()
	for _, w := range in {
		if w.state == stRejoin {
			lp.srv.loopStats.rejoins.Add(1)
		}
		lp.live[w] = struct{}{}
		lp.resume(w)
	}
	clear(in)
	lp.taken = in[:0]
	if abort {
		lp.expire(func(*waiter) error { return errLoopClosed })
		for _, w := range lp.parked {
			lp.closeParked(w)
		}
	}
	if stop && len(lp.live) == 0 && len(lp.parked) == 0 {
		return true
	}
	if stop {
		lp.sweep(time.Now())
	}
	return false
}

// sweep ends the waits whose deadline passed, and on shutdown the waits
// of idle keep-alive connections.
func (lp *loop) sweep(now time.Time) {
	stopping := lp.srv.stopping.Load()
	if stopping && lp.stopSince.IsZero() {
		lp.stopSince = now
	}
	lp.expire(func(w *waiter) error {
		if !w.deadline.IsZero() && !now.Before(w.deadline) {
			return errLoopTimeout
		}
		if stopping && w.fd == w.cc.bc.fd && !w.write && w.cc.busy.Load() == 0 {
			// Idle between requests: close now; one that has not sent
			// its first request yet gets a second to do so.
			if w.cc.served.Load() > 0 || now.Sub(lp.stopSince) >= time.Second {
				return errLoopTimeout
			}
		}
		if w.parkable && !stopping {
			if w.parkSeen == w.waits {
				return errPark // idle since the last sweep
			}
			w.parkSeen = w.waits
		}
		return nil
	})
	for _, w := range lp.parked {
		if !w.deadline.IsZero() && !now.Before(w.deadline) ||
			stopping && (w.cc.served.Load() > 0 || now.Sub(lp.stopSince) >= time.Second) {
			lp.closeParked(w)
		}
	}
}

// expire resumes every waiter for which why returns an error, with that
// error.
func (lp *loop) expire(why func(*waiter) error) {
	var due []*waiter
	for _, w := range lp.waiting {
		if err := why(w); err != nil {
			w.err = err
			due = append(due, w)
		}
	}
	for _, w := range due {
		delete(lp.waiting, w.fd)
		lp.resume(w)
	}
}

// closeAll ends every wait with errLoopClosed (the shutdown deadline
// passed and the connections are being closed).
func (lp *loop) closeAll() {
	lp.mu.Lock()
	lp.abort = true
	lp.pokeLocked()
	lp.mu.Unlock()
}

// shutdown stops the loop once its connections are done and waits for it.
func (lp *loop) shutdown() {
	lp.mu.Lock()
	lp.stop = true
	lp.pokeLocked()
	lp.mu.Unlock()
	<-lp.done
}

// loopRead reads into p on the loop, waiting for readiness. A read that
// did not fill p drained the socket, so the next one waits for an event
// first instead of trying a read that would return EAGAIN.
func (b *bufConn) loopRead(p []byte) (int, error) {
	for {
		if !b.rready.Load() || b.regLoop != b.wt.lp {
			// Not known readable, or events go to another loop (the
			// connection moved): wait here. Registering reports data
			// already queued, so nothing is missed.
			if werr := b.wt.wait(b, false, b.rdl.cur); werr != nil {
				return 0, werr
			}
		}
		n, err := b.sys(false, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			b.rready.Store(false)
			continue
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: b.c.LocalAddr(), Addr: b.c.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			return 0, io.EOF
		}
		if n < len(p) {
			b.rready.Store(false)
		}
		return n, nil
	}
}

// waitReadable waits on the loop until the socket is readable.
func (b *bufConn) waitReadable() error {
	return b.wt.wait(b, false, b.rdl.cur)
}

// loopWrite writes p on the loop, waiting for room.
func (b *bufConn) loopWrite(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := b.sys(true, p[done:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if werr := b.wt.wait(b, true, b.wdl.cur); werr != nil {
				if werr == errLoopTimeout {
					werr = &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
				}
				return done, werr
			}
			continue
		case err != nil:
			return done, &net.OpError{Op: "write", Net: "tcp", Source: b.c.LocalAddr(), Addr: b.c.RemoteAddr(), Err: os.NewSyscallError("write", err)}
		}
		done += n
	}
	return done, nil
}
