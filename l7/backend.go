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
// time out).
type connPool struct {
	backend     *upstream.Backend
	dialer      net.Dialer
	idleTimeout time.Duration
	maxIdle     int

	mu     sync.Mutex
	idle   []*backendConn
	closed bool
	// open counts the pool's connections, in use or idle.
	open atomic.Int64
}

// counts returns the open and idle connections.
func (p *connPool) counts() (open, idle int) {
	p.mu.Lock()
	idle = len(p.idle)
	p.mu.Unlock()
	return int(p.open.Load()), idle
}

func newConnPool(b *upstream.Backend, connect, idle time.Duration, maxIdle int) *connPool {
	p := &connPool{backend: b, idleTimeout: idle, maxIdle: maxIdle}
	p.dialer.Timeout = connect
	p.dialer.KeepAlive = 30 * time.Second
	return p
}

// get returns an idle connection or dials a new one.
func (p *connPool) get(ctx context.Context) (*backendConn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		n := len(p.idle) - 1
		bc := p.idle[n]
		p.idle[n] = nil
		p.idle = p.idle[:n]
		if now.Sub(bc.idleFrom) < p.idleTimeout {
			p.mu.Unlock()
			bc.reused = true
			return bc, nil
		}
		p.mu.Unlock()
		bc.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return p.dial(ctx)
}

func (p *connPool) dial(ctx context.Context) (*backendConn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.backend.Addr)
	if err != nil {
		return nil, err
	}
	p.open.Add(1)
	return &backendConn{bufConn: newBufConn(c, &backendBufPool, backendReadBuf), pool: p}, nil
}

// put returns a connection whose exchange completed cleanly.
func (p *connPool) put(bc *backendConn) {
	if len(bc.buffered()) > 0 {
		// Bytes after the response: the backend is not speaking HTTP/1.1
		// correctly; never reuse.
		bc.close()
		return
	}
	bc.idleFrom = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		bc.close()
		return
	}
	p.idle = append(p.idle, bc)
	p.mu.Unlock()
}

// closeIdle closes every idle connection; with final set the pool accepts
// no more.
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}

// reapIdle closes idle connections older than the idle timeout.
func (p *connPool) reapIdle(now time.Time) {
	p.mu.Lock()
	var stale []*backendConn
	kept := p.idle[:0]
	for _, bc := range p.idle {
		if now.Sub(bc.idleFrom) >= p.idleTimeout {
			stale = append(stale, bc)
		} else {
			kept = append(kept, bc)
		}
	}
	for i := len(kept); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = kept
	p.mu.Unlock()
	for _, bc := range stale {
		bc.close()
	}
}

func (bc *backendConn) close() {
	bc.pool.open.Add(-1)
	bc.c.Close()
	bc.release()
}
