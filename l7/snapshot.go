package l7

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/upstream"
)

// Snapshot is everything a request needs, built from one validated
// config.Config and never modified after it is published. Requests load
// the current snapshot once, at their start.
type Snapshot struct {
	Config *config.Config
	Router *Router
	Routes []*Route
}

// Transport owns the keep-alive pools to backends. It outlives snapshots:
// a reload that keeps a backend keeps its pooled connections.
type Transport struct {
	mu    sync.Mutex
	pools map[string]*connPool
	stop  chan struct{}
	done  chan struct{}
}

// NewTransport starts a transport and its idle-connection reaper.
func NewTransport() *Transport {
	t := &Transport{pools: map[string]*connPool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go t.reap()
	return t
}

func (t *Transport) reap() {
	defer close(t.done)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.mu.Lock()
			pools := make([]*connPool, 0, len(t.pools))
			for _, p := range t.pools {
				pools = append(pools, p)
			}
			t.mu.Unlock()
			for _, p := range pools {
				p.reapIdle(now)
			}
		}
	}
}

// Close stops the reaper and closes all idle connections.
func (t *Transport) Close() {
	select {
	case <-t.stop:
		return
	default:
	}
	close(t.stop)
	<-t.done
	t.mu.Lock()
	pools := t.pools
	t.pools = map[string]*connPool{}
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle(true)
	}
}

func (t *Transport) pool(b *upstream.Backend, to config.Timeouts) *connPool {
	key := fmt.Sprintf("%s|%d|%d|%d", b.Addr, to.Connect, to.Idle, to.MaxIdleConns)
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.pools[key]; ok {
		return p
	}
	p := newConnPool(b, to.Connect.D(), to.Idle.D(), to.MaxIdleConns)
	t.pools[key] = p
	return p
}

// NewSnapshot compiles cfg. It fails only on what validation cannot see
// (it never fails for a config that config.Load accepted).
func NewSnapshot(cfg *config.Config, tr *Transport, metrics *observe.Metrics) (*Snapshot, error) {
	s := &Snapshot{Config: cfg}
	for i, rc := range cfg.Routes {
		var backends []*upstream.Backend
		for j, bc := range rc.Backends {
			b, err := upstream.NewBackend(bc.URL, bc.Weight)
			if err != nil {
				return nil, fmt.Errorf("routes[%d].backends[%d]: %w", i, j, err)
			}
			backends = append(backends, b)
		}
		pool, err := upstream.NewPool(backends, upstream.PoolOptions{Strategy: rc.Strategy})
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		rt := &Route{
			Name:           rc.Name,
			Path:           rc.Path,
			Host:           strings.ToLower(rc.Host),
			Methods:        rc.Methods,
			StripPrefix:    rc.StripPrefix,
			Pool:           pool,
			conns:          map[*upstream.Backend]*connPool{},
			responseHeader: rc.Timeouts.ResponseHeader.D(),
			readTimeout:    rc.Timeouts.Read.D(),
			metrics:        metrics.Route(rc.Name),
		}
		if len(rt.Methods) > 0 {
			rt.allowHeader = strings.Join(rt.Methods, ", ")
		}
		for _, b := range backends {
			rt.conns[b] = tr.pool(b, rc.Timeouts)
		}
		s.Routes = append(s.Routes, rt)
	}
	s.Router = NewRouter(s.Routes)
	return s, nil
}
