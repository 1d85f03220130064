package l7

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/upstream"
)

// backendConn is one keep-alive connection to a backend.
type backendConn struct {
	*bufConn
	pool     *connPool
	reused   bool
	idleFrom time.Time
}

// connPool keeps idle keep-alive connections to one backend address, most
// recently used first (LIFO keeps few connections warm and lets the rest
// time out). Idle connections are kept apart by the event loop they are
// registered with, as nginx keeps a cache per worker: a loop takes its
// own first, so a connection moves between loops' epoll sets (two
// epoll_ctl calls) only when its loop has none idle.
type connPool struct {
	backend *upstream.Backend
	dialer  net.Dialer
	// tls is set for an https:// backend: every connection handshakes
	// with it, within the connect timeout.
	tls *backendTLS
	// h2 is set when the backend is spoken to over HTTP/2 (backendh2.go).
	h2          *h2Pool
	idleTimeout time.Duration
	maxIdle     int

	mu sync.Mutex
	// idle holds the idle connections by the event loop whose epoll set
	// has them (nil: none), each list most recently used last; nidle
	// counts them all.
	idle   map[*loop]*idleList
	nidle  int
	closed bool
	// open counts the pool's connections, in use or idle.
	open atomic.Int64
}

// counts returns the open and idle connections.
func (p *connPool) counts() (open, idle int) {
	p.mu.Lock()
	idle = p.nidle
	p.mu.Unlock()
	return int(p.open.Load()), idle
}

func newConnPool(b *upstream.Backend, connect, idle time.Duration, maxIdle int, bt *backendTLS, protocol string) *connPool {
	p := &connPool{backend: b, idleTimeout: idle, maxIdle: maxIdle, tls: bt, idle: map[*loop]*idleList{}}
	p.dialer.Timeout = connect
	p.dialer.KeepAlive = 30 * time.Second
	p.h2 = newH2Pool(p, protocol)
	return p
}

// get returns an idle connection or dials a new one.
func (p *connPool) get(ctx context.Context) (*backendConn, error) {
	if bc := p.getIdle(nil, time.Now()); bc != nil {
		return bc, nil
	}
	return p.dial(ctx)
}

// idleList is a stack of idle connections, the most recently used last.
type idleList struct{ conns []*backendConn }

// getIdle returns an idle connection, or nil. It prefers the most
// recently used one registered with the caller's event loop (lp; nil
// without one), which then needs no epoll change, then one registered
// with no loop, then one of another loop. now is the current time.
func (p *connPool) getIdle(lp *loop, now time.Time) *backendConn {
	p.mu.Lock()
	for {
		bc := p.popLocked(lp)
		if bc == nil {
			p.mu.Unlock()
			return nil
		}
		if now.Sub(bc.idleFrom) < p.idleTimeout {
			p.mu.Unlock()
			bc.reused = true
			return bc
		}
		p.mu.Unlock()
		bc.close()
		p.mu.Lock()
	}
}

// popLocked takes an idle connection in getIdle's order of preference,
// or returns nil; p.mu is held.
func (p *connPool) popLocked(lp *loop) *backendConn {
	if p.nidle == 0 {
		return nil
	}
	if bc := p.popList(lp); bc != nil {
		return bc
	}
	if bc := p.popList(nil); bc != nil {
		return bc
	}
	for _, l := range p.idle {
		if n := len(l.conns); n > 0 {
			return p.pop(l, n)
		}
	}
	return nil
}

func (p *connPool) popList(lp *loop) *backendConn {
	if l := p.idle[lp]; l != nil {
		if n := len(l.conns); n > 0 {
			return p.pop(l, n)
		}
	}
	return nil
}

func (p *connPool) pop(l *idleList, n int) *backendConn {
	bc := l.conns[n-1]
	l.conns[n-1] = nil
	l.conns = l.conns[:n-1]
	p.nidle--
	return bc
}

// dial connects to the backend, and handshakes for an https:// one: the
// connect timeout bounds the TCP connect and the handshake together, as
// nginx's proxy_connect_timeout does. A TLS connection has no descriptor
// for the event loops: its exchanges run off them.
func (p *connPool) dial(ctx context.Context) (*backendConn, error) {
	if p.tls != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.dialer.Timeout)
		defer cancel()
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.backend.Addr)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		if c, err = handshake(ctx, c, p.tls.config); err != nil {
			return nil, err
		}
	}
	p.open.Add(1)
	bc := &backendConn{bufConn: newBufConn(c, &backendBufPool, backendReadBuf), pool: p}
	bc.useLoop()
	return bc, nil
}

// put returns a connection whose exchange completed cleanly.
func (p *connPool) put(bc *backendConn) {
	bc.wt = nil
	if len(bc.buffered()) > 0 {
		// Bytes after the response: the backend is not speaking HTTP/1.1
		// correctly; never reuse.
		bc.close()
		return
	}
	bc.idleFrom = time.Now()
	p.mu.Lock()
	if p.closed || p.nidle >= p.maxIdle {
		p.mu.Unlock()
		bc.close()
		return
	}
	l := p.idle[bc.regLoop]
	if l == nil {
		l = &idleList{}
		p.idle[bc.regLoop] = l
	}
	l.conns = append(l.conns, bc)
	p.nidle++
	p.mu.Unlock()
}

// closeIdle closes every idle connection; with final set the pool accepts
// no more.
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	var idle []*backendConn
	for _, l := range p.idle {
		idle = append(idle, l.conns...)
		clear(l.conns)
		l.conns = l.conns[:0]
	}
	p.nidle = 0
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
	p.h2.close()
}

// reapIdle closes idle connections older than the idle timeout.
func (p *connPool) reapIdle(now time.Time) {
	p.mu.Lock()
	var stale []*backendConn
	for _, l := range p.idle {
		kept := l.conns[:0]
		for _, bc := range l.conns {
			if now.Sub(bc.idleFrom) >= p.idleTimeout {
				stale = append(stale, bc)
			} else {
				kept = append(kept, bc)
			}
		}
		clear(l.conns[len(kept):])
		l.conns = kept
	}
	p.nidle -= len(stale)
	p.mu.Unlock()
	for _, bc := range stale {
		bc.close()
	}
	// The HTTP/2 transport closes its own idle connections.
}

func (bc *backendConn) close() {
	bc.wt = nil
	bc.pool.open.Add(-1)
	bc.c.Close()
	bc.release()
}
