package l7

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
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
	pools  []*upstream.Pool
	// rules are the server's request normalization settings.
	rules requestRules
}

// Transport owns what outlives snapshots: keep-alive connections to
// backends (a reload that keeps a backend keeps its pooled connections)
// and the backends' health and load state.
type Transport struct {
	log      *slog.Logger
	metrics  *observe.Metrics
	registry *upstream.Registry
	offences Offences
	// resources are handed to the middlewares snapshots build.
	resources map[string]any

	mu    sync.Mutex
	pools map[string]*connPool
	// sessions are the TLS session caches of https:// backends, by
	// backendTLS key: a reload that keeps a backend's TLS settings and
	// files keeps resuming its sessions.
	sessions map[string]tls.ClientSessionCache
	stop     chan struct{}
	done     chan struct{}
}

// NewTransport starts a transport and its idle-connection reaper. log and
// metrics may be nil.
func NewTransport(log *slog.Logger, metrics *observe.Metrics) *Transport {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		log:      log,
		metrics:  metrics,
		pools:    map[string]*connPool{},
		sessions: map[string]tls.ClientSessionCache{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.registry = upstream.NewRegistry(t.healthChanged)
	go t.reap()
	return t
}

// healthChanged logs a backend's health transition once and exports it.
func (t *Transport) healthChanged(b *upstream.Backend, up bool, reason string) {
	t.metrics.BackendUp(b.Scope(), b.URL, up)
	if up {
		t.log.Info("backend up", "route", b.Scope(), "backend", b.URL, "reason", reason)
	} else {
		t.log.Warn("backend down", "route", b.Scope(), "backend", b.URL, "reason", reason)
	}
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
			// Pools of one backend with different timeouts add up: the
			// gauges are per backend, labelled with its URL like every
			// backend metric.
			type conns struct{ active, idle int }
			byURL := map[string]conns{}
			for _, p := range pools {
				p.reapIdle(now)
				open, idle := p.counts()
				c := byURL[p.backend.URL]
				byURL[p.backend.URL] = conns{c.active + open - idle, c.idle + idle}
			}
			for url, c := range byURL {
				t.metrics.PoolConns(url, c.active, c.idle)
			}
		}
	}
}

// Close stops the reaper and the health checks and closes all idle
// connections.
func (t *Transport) Close() {
	select {
	case <-t.stop:
		return
	default:
	}
	close(t.stop)
	<-t.done
	t.registry.Close()
	t.mu.Lock()
	pools := t.pools
	t.pools = map[string]*connPool{}
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle(true)
	}
}

func (t *Transport) pool(b *upstream.Backend, to config.Timeouts, bt *backendTLS, protocol string) *connPool {
	// By URL, not address, so that a pool's connections are reported
	// under the backend label the other backend metrics use. Changed TLS
	// settings or files make a new pool: no connection verified under
	// the old ones is reused.
	key := fmt.Sprintf("%s|%d|%d|%d|%s", b.URL, to.Connect, to.Idle, to.MaxIdleConns, protocol)
	if bt != nil {
		key += "|" + bt.key
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.pools[key]; ok {
		return p
	}
	p := newConnPool(b, to.Connect.D(), to.Idle.D(), to.MaxIdleConns, bt, protocol)
	t.pools[key] = p
	return p
}

// sessionCache returns the TLS session cache of a backendTLS key.
func (t *Transport) sessionCache(key string) tls.ClientSessionCache {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.sessions[key]
	if !ok {
		c = tls.NewLRUClientSessionCache(sessionCacheSize)
		t.sessions[key] = c
	}
	return c
}

// backendTLSOf builds the TLS client side of each https:// backend of a
// route, reading the files its settings name.
func (t *Transport) backendTLSOf(rc *config.Route, backends []*upstream.Backend) (map[*upstream.Backend]*backendTLS, error) {
	out := map[*upstream.Backend]*backendTLS{}
	for j, b := range backends {
		tc := rc.TLSFor(&rc.Backends[j])
		if tc == nil {
			continue
		}
		bt, err := newBackendTLS(tc, b, t.sessionCache)
		if err != nil {
			return nil, fmt.Errorf("backends[%d]: tls: %w", j, err)
		}
		if tc.SkipVerify() {
			t.log.Warn("backend certificate not verified (insecure_skip_verify): the connection can be intercepted", "route", rc.Name, "backend", b.URL)
		}
		out[b] = bt
	}
	return out, nil
}

// probeTLS gives health checks the TLS client config of each https://
// backend. It looks the backend up by URL: a checker kept across a reload
// may see the backend of the new snapshot before its new prober.
func probeTLS(tlsOf map[*upstream.Backend]*backendTLS) func(*upstream.Backend) *tls.Config {
	byURL := make(map[string]*tls.Config, len(tlsOf))
	for b, bt := range tlsOf {
		byURL[b.URL] = bt.config
	}
	return func(b *upstream.Backend) *tls.Config { return byURL[b.URL] }
}

// prober is the health check of a route's backends: a grpc.health.v1
// call, or GET over the protocol the pool speaks (HTTP/2 for h2c and h2).
func prober(rc *config.Route, tlsOf map[*upstream.Backend]*backendTLS) upstream.Prober {
	hc := &rc.HealthCheck
	if hc.Type == config.HealthCheckGRPC {
		return upstream.GRPCProber{Service: hc.Service, TLS: probeTLS(tlsOf)}
	}
	h2 := rc.Protocol == config.ProtocolH2C || rc.Protocol == config.ProtocolH2
	return upstream.HTTPProber{Path: hc.Path, ExpectStatus: hc.ExpectStatus, TLS: probeTLS(tlsOf), H2: h2}
}

// Activate makes s the configuration whose backends are health-checked,
// keeping the state of backends it shares with the previous one. Call it
// once s is published.
func (t *Transport) Activate(s *Snapshot) {
	t.registry.Sync(s.pools...)
	// Health-checked backends have a series from the start, not only
	// after their first transition.
	for _, p := range s.pools {
		if !p.HealthChecked() {
			continue
		}
		for _, b := range p.Backends() {
			t.metrics.BackendUp(b.Scope(), b.URL, b.Up())
		}
	}
}

// NewSnapshot compiles cfg. It fails only on what validation cannot see
// (it never fails for a config that config.Load accepted).
//
// prev, the snapshot being replaced (nil at start), lends the state that
// survives reloads, such as rate-limit counters of unchanged routes.
func NewSnapshot(cfg *config.Config, tr *Transport, metrics *observe.Metrics, prev *Snapshot) (*Snapshot, error) {
	if err := declareMetrics(metrics); err != nil {
		return nil, err
	}
	s := &Snapshot{Config: cfg, rules: requestRulesOf(&cfg.Server)}
	prevRoutes := map[string]*Route{}
	if prev != nil {
		for _, rt := range prev.Routes {
			prevRoutes[rt.Name] = rt
		}
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		rt, pool, err := buildRoute(rc, tr, metrics)
		if err == nil {
			rt.chain, err = buildChain(cfg.RouteMiddlewares(i), rt, prevRoutes[rt.Name], tr, metrics)
			rt.mayBlock = chainMayBlock(rt.chain)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		s.Routes = append(s.Routes, rt)
		s.pools = append(s.pools, pool)
	}
	s.Router = NewRouter(s.Routes)
	return s, nil
}

func buildRoute(rc *config.Route, tr *Transport, metrics *observe.Metrics) (*Route, *upstream.Pool, error) {
	var backends []*upstream.Backend
	for j, bc := range rc.Backends {
		b, err := tr.registry.Backend(rc.Name, bc.URL, bc.Weight)
		if err != nil {
			return nil, nil, fmt.Errorf("backends[%d]: %w", j, err)
		}
		backends = append(backends, b)
	}
	tlsOf, err := tr.backendTLSOf(rc, backends)
	if err != nil {
		return nil, nil, err
	}
	opt := upstream.PoolOptions{
		Strategy:     rc.Strategy,
		FailOpen:     rc.FailOpen,
		MaxConns:     rc.MaxConns,
		MaxConnsWait: rc.MaxConnsWait.D(),
		Outlier: upstream.OutlierOptions{
			Consecutive:  rc.Outlier.Consecutive,
			BaseEjection: rc.Outlier.BaseEjection.D(),
			MaxEjection:  rc.Outlier.MaxEjection.D(),
		},
	}
	if hc := rc.HealthCheck; hc.Enabled() {
		opt.Health = &upstream.HealthOptions{
			Prober:             prober(rc, tlsOf),
			Interval:           hc.Interval.D(),
			Timeout:            hc.Timeout.D(),
			HealthyThreshold:   hc.HealthyThreshold,
			UnhealthyThreshold: hc.UnhealthyThreshold,
		}
	}
	pool, err := upstream.NewPool(backends, opt)
	if err != nil {
		return nil, nil, err
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
		retry:          compileRetries(rc),
		h2:             rc.Protocol != "" && rc.Protocol != config.ProtocolHTTP1,
	}
	switch {
	case strings.HasPrefix(rc.HashKey, "header:"):
		rt.hashBy = hashSource{kind: 1, name: rc.HashKey[len("header:"):]}
	case strings.HasPrefix(rc.HashKey, "cookie:"):
		rt.hashBy = hashSource{kind: 2, name: rc.HashKey[len("cookie:"):]}
	}
	if len(rt.Methods) > 0 {
		rt.allowHeader = strings.Join(rt.Methods, ", ")
	}
	rt.requireClientCert = rc.ClientAuth != nil
	rt.cond = routeCond{exact: rc.Match.Exact, query: rc.Match.Query}
	for _, h := range rc.Match.Headers {
		rt.cond.headers = append(rt.cond.headers, config.NameValue{Name: strings.ToLower(h.Name), Value: h.Value})
	}
	for _, b := range backends {
		rt.conns[b] = tr.pool(b, rc.Timeouts, tlsOf[b], rc.Protocol)
	}
	return rt, pool, nil
}

// minRetriesPerSecond lets a quiet route retry even when the budget's
// ratio of its few requests rounds down to nothing.
const minRetriesPerSecond = 3

func compileRetries(rc *config.Route) retryPolicy {
	p := retryPolicy{
		attempts:      2,
		maxBody:       int64(rc.Retries.MaxBodyBytes),
		nonIdempotent: rc.Retries.NonIdempotent,
		total:         rc.Timeouts.Total.D(),
	}
	if rc.Retries.Attempts != nil {
		p.attempts = *rc.Retries.Attempts
	}
	for _, on := range rc.Retries.On {
		switch on {
		case reasonConnect:
			p.onConnect = true
		case reasonTimeout:
			p.onTimeout = true
		case reasonReset:
			p.onReset = true
		default:
			if code, err := strconv.Atoi(on); err == nil && code >= 100 && code < 600 {
				p.statuses[code/100].set(code % 100)
			}
		}
	}
	for _, code := range rc.Outlier.Statuses {
		if code >= 100 && code < 600 {
			p.outlierStatus[code/100].set(code % 100)
		}
	}
	p.grpcOn = grpcRetryCodes(rc.Retries.GRPCOn)
	if rc.Retries.Budget != nil {
		p.budget = upstream.NewRetryBudget(*rc.Retries.Budget, minRetriesPerSecond)
	}
	return p
}
