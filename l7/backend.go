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
	backend *upstream.Backend
	dialer  net.Dialer
	// tls is set for an https:// backend: every connection handshakes
	// with it, within the connect timeout.
	tls *backendTLS
	// h2 is set when the backend is spoken to over HTTP/2 (backendh2.go).
	h2          *h2Pool
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

func newConnPool(b *upstream.Backend, connect, idle time.Duration, maxIdle int, bt *backendTLS, protocol string) *connPool {
	p := &connPool{backend: b, idleTimeout: idle, maxIdle: maxIdle, tls: bt}
	p.dialer.Timeout = connect
	p.dialer.KeepAlive = 30 * time.Second
	p.h2 = newH2Pool(p, protocol)
	return p
}

// get returns an idle connection or dials a new one.
func (p *connPool) get(ctx context.Context) (*backendConn, error) {
	if bc := p.getIdle(nil); bc != nil {
		return bc, nil
	}
	return p.dial(ctx)
}

// getIdle returns an idle connection, or nil. Among the most recently
// used few it prefers one registered with the caller's event loop (lp;
// nil without one), which then needs no epoll change.
func (p *connPool) getIdle(lp *loop) *backendConn {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		n := len(p.idle) - 1
		if lp != nil {
			for i := n; i >= 0 && i > n-loopAffinityScan; i-- {
				if p.idle[i].regLoop == lp {
					p.idle[i], p.idle[n] = p.idle[n], p.idle[i]
					break
				}
			}
		}
		bc := p.idle[n]
		p.idle[n] = nil
		p.idle = p.idle[:n]
		if now.Sub(bc.idleFrom) < p.idleTimeout {
			p.mu.Unlock()
			bc.reused = true
			return bc
		}
		p.mu.Unlock()
		bc.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// loopAffinityScan bounds getIdle's search for a connection of the
// caller's loop.
const loopAffinityScan = 8

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
	p.h2.close()
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
	// The HTTP/2 transport closes its own idle connections.
}

func (bc *backendConn) close() {
	bc.wt = nil
	bc.pool.open.Add(-1)
	bc.c.Close()
	bc.release()
}
