package l7

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Buffer sizes. A client read buffer holds typical request heads; a backend
// read buffer is larger since responses carry the bulk of the bytes.
const (
	clientReadBuf  = 8 << 10
	backendReadBuf = 16 << 10
	writeBufSize   = 8 << 10
	// directWrite is the size from which body data bypasses the write
	// buffer.
	directWrite = 4 << 10
)

var (
	clientBufPool  = sync.Pool{New: func() any { b := make([]byte, clientReadBuf); return &b }}
	backendBufPool = sync.Pool{New: func() any { b := make([]byte, backendReadBuf); return &b }}
	writeBufPool   = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}
)

// lazyDeadline lets a deadline be re-armed lazily: a connection's deadline
// is moved only when it falls outside [target, target+slack], so a busy
// keep-alive connection touches its timer about once per slack instead of
// once per request.
type lazyDeadline struct {
	cur time.Time
}

// maxDeadlineSlack caps the slack of a lazily-armed deadline. With the
// event loops' sweep (loopTick) it keeps every timeout within 200 ms of
// its value.
const maxDeadlineSlack = 100 * time.Millisecond

// deadlineSlack is the slack allowed for a timeout of d: 5% of it, at
// most maxDeadlineSlack, so a timeout fires within 10% or 200 ms of its
// value while a busy connection still re-arms its timer only every few
// requests.
func deadlineSlack(d time.Duration) time.Duration {
	return min(d/20, maxDeadlineSlack)
}

func (d *lazyDeadline) ensureRead(c net.Conn, target time.Time, slack time.Duration) error {
	if d.cur.Before(target) || d.cur.After(target.Add(slack)) {
		d.cur = target.Add(slack / 2)
		return c.SetReadDeadline(d.cur)
	}
	return nil
}

func (d *lazyDeadline) ensureWrite(c net.Conn, target time.Time, slack time.Duration) error {
	if d.cur.Before(target) || d.cur.After(target.Add(slack)) {
		d.cur = target.Add(slack / 2)
		return c.SetWriteDeadline(d.cur)
	}
	return nil
}

// bufConn is a connection with a growable read buffer and an append-only
// write buffer. It is used by one goroutine at a time.
type bufConn struct {
	c    net.Conn
	rbuf []byte
	r, w int
	// maxBuf bounds the read buffer when a head does not fit.
	maxBuf int
	pooled *[]byte
	pool   *sync.Pool

	wbuf    []byte
	wpooled *[]byte

	rdl, wdl lazyDeadline
	// readErr is the first read error; once set, no more reads happen.
	readErr error
	// parkable says a read that must wait may end in errPark instead: the
	// connection is idle between requests (see loop.park).
	parkable bool

	// fd is the connection's descriptor when it may be used on an event
	// loop, else -1; wt is set while the connection belongs to a
	// coroutine on a loop (see loop_linux.go).
	fd int
	wt *waiter
	// regLoop is the loop whose epoll set holds fd (regWrite: for
	// writing too); rready is cleared when a read drained the socket and
	// set again by the loop's next event for it.
	regLoop  *loop
	regWrite bool
	rready   atomic.Bool
	// raw and the io fields carry a loop's system calls (see sys).
	raw     syscall.RawConn
	ioFn    func(uintptr)
	ioBuf   []byte
	ioWrite bool
	ioN     int
	ioErr   error
}

// onLoop reports whether I/O goes through the event loop.
func (b *bufConn) onLoop() bool { return b.wt != nil && b.wt.attached }

// read reads from the connection, on the loop when attached to one.
func (b *bufConn) read(p []byte) (int, error) {
	if b.onLoop() {
		return b.loopRead(p)
	}
	return b.c.Read(p)
}

// writeConn writes p to the connection, on the loop when attached to one.
func (b *bufConn) writeConn(p []byte) (int, error) {
	if b.onLoop() {
		return b.loopWrite(p)
	}
	return b.c.Write(p)
}

func newBufConn(c net.Conn, pool *sync.Pool, maxBuf int) *bufConn {
	b := &bufConn{c: c, pool: pool, maxBuf: maxBuf, fd: -1}
	b.rready.Store(true)
	b.pooled = pool.Get().(*[]byte)
	b.rbuf = *b.pooled
	b.wpooled = writeBufPool.Get().(*[]byte)
	b.wbuf = (*b.wpooled)[:0]
	if b.maxBuf < len(b.rbuf) {
		b.maxBuf = len(b.rbuf)
	}
	return b
}

// acquire takes buffers again after release.
func (b *bufConn) acquire() {
	b.pooled = b.pool.Get().(*[]byte)
	b.rbuf = *b.pooled
	b.wpooled = writeBufPool.Get().(*[]byte)
	b.wbuf = (*b.wpooled)[:0]
	b.r, b.w = 0, 0
}

// release returns the buffers to their pools. The bufConn must not be
// used afterwards, unless acquire takes buffers again.
func (b *bufConn) release() {
	if b.pooled != nil {
		b.pool.Put(b.pooled)
		b.pooled = nil
	}
	if b.wpooled != nil && cap(b.wbuf) <= 4*writeBufSize {
		*b.wpooled = b.wbuf[:0]
		writeBufPool.Put(b.wpooled)
	}
	b.wpooled = nil
	b.rbuf, b.wbuf = nil, nil
	b.r, b.w = 0, 0
}

func (b *bufConn) buffered() []byte { return b.rbuf[b.r:b.w] }

func (b *bufConn) consume(n int) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// fill reads once from the connection, making room first. It grows the
// buffer up to maxBuf when it is full; beyond that it returns
// errHeadTooLarge.
func (b *bufConn) fill() error {
	if b.readErr != nil {
		return b.readErr
	}
	if b.r > 0 && b.w == len(b.rbuf) {
		copy(b.rbuf, b.rbuf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if b.w == len(b.rbuf) {
		if len(b.rbuf) >= b.maxBuf {
			return errHeadTooLarge
		}
		n := min(2*len(b.rbuf), b.maxBuf)
		nb := make([]byte, n)
		copy(nb, b.rbuf[b.r:b.w])
		b.w -= b.r
		b.r = 0
		if b.pooled != nil {
			b.pool.Put(b.pooled)
			b.pooled = nil
		}
		b.rbuf = nb
	}
	n, err := b.read(b.rbuf[b.w:])
	b.w += n
	if err != nil {
		if n > 0 && !isTimeout(err) {
			b.readErr = err
			return nil
		}
		if !isTimeout(err) && err != errPark {
			b.readErr = err
		}
		return err
	}
	return nil
}

// fillIdle is fill for a connection waiting for a request's first byte.
// On an event loop, when the socket is not known readable, the buffers go
// back to their pools until it is, and the wait may end in errPark (see
// loop.park); after an error they stay released.
func (b *bufConn) fillIdle() error {
	if b.onLoop() && !b.rready.Load() && b.r == b.w && len(b.wbuf) == 0 && b.readErr == nil {
		b.release()
		b.parkable = true
		err := b.waitReadable()
		b.parkable = false
		if err != nil {
			return err
		}
		b.acquire()
	}
	b.parkable = true
	err := b.fill()
	b.parkable = false
	return err
}

// flush writes the write buffer out.
func (b *bufConn) flush() error {
	if len(b.wbuf) == 0 {
		return nil
	}
	_, err := b.writeConn(b.wbuf)
	b.wbuf = b.wbuf[:0]
	return err
}

// chunkOverhead bounds what a chunk adds to its data (size line and
// CRLFs).
const chunkOverhead = 32

// buffers reports whether write would only append n bytes to the write
// buffer, without a system call.
func (b *bufConn) buffers(n int) bool {
	return n < directWrite && len(b.wbuf)+n <= cap(b.wbuf)
}

// write appends p, or writes it directly when it is large.
func (b *bufConn) write(p []byte) error {
	if b.buffers(len(p)) {
		b.wbuf = append(b.wbuf, p...)
		return nil
	}
	if len(b.wbuf) > 0 {
		if len(b.wbuf)+len(p) <= 2*writeBufSize {
			// One syscall for head and a mid-sized body.
			b.wbuf = append(b.wbuf, p...)
			return b.flush()
		}
		if err := b.flush(); err != nil {
			return err
		}
	}
	_, err := b.writeConn(p)
	return err
}

// Read implements io.Reader over the buffered bytes, then the connection.
func (b *bufConn) Read(p []byte) (int, error) {
	if b.r < b.w {
		n := copy(p, b.rbuf[b.r:b.w])
		b.consume(n)
		return n, nil
	}
	if b.readErr != nil {
		return 0, b.readErr
	}
	return b.read(p)
}

// errPark ends an idle connection's wait on an event loop: it goes on
// waiting without a coroutine (see loop.park).
var errPark = errors.New("parked")

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// isConnGone reports errors that mean the peer closed or reset.
func isConnGone(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
