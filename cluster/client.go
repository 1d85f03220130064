package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
)

// Resource is the name under which the process hands its Client to the
// middlewares (middleware.Build.Resources).
const Resource = "cluster"

// ErrDown is returned on the request path while Redis is marked down:
// the caller applies its failure policy without waiting.
var ErrDown = errors.New("cluster: redis is unavailable")

// probeInterval is how often a down Redis is tried again.
const probeInterval = 100 * time.Millisecond

// NodeInfo describes this instance to the others.
type NodeInfo struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Datapath string `json:"datapath"`
	Started  string `json:"started"`
}

// Client is this instance's connection to the cluster's Redis.
type Client struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	node    NodeInfo
	log     *slog.Logger

	up      atomic.Bool
	probing atomic.Bool
	live    atomic.Int64 // nodes seen by the last heartbeat

	errs   *prometheus.CounterVec
	upG    prometheus.Gauge
	nodesG prometheus.Gauge

	bans *banFollower

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// spawn runs f in a goroutine that Close waits for, unless the client
// is closed.
func (c *Client) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// New connects to Redis as cfg says and starts the heartbeat. It does not
// fail when Redis is unreachable: the client starts down and recovers by
// itself. reg may be nil.
func New(cfg config.Cluster, node NodeInfo, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	rdb, err := newRedis(cfg.Redis)
	if err != nil {
		return nil, err
	}
	node.Name = cfg.NodeNameOrHost()
	if node.Started == "" {
		node.Started = time.Now().UTC().Format(time.RFC3339)
	}
	c := &Client{rdb: rdb, prefix: cfg.KeyPrefix, timeout: cfg.Redis.Timeout.D(), node: node, log: log, stop: make(chan struct{})}
	c.live.Store(1)
	c.up.Store(true)
	if err := c.registerMetrics(reg); err != nil {
		rdb.Close()
		return nil, err
	}
	if err := c.heartbeat(); err != nil {
		c.fail("heartbeat", err)
	} else {
		c.loadScripts()
	}
	c.spawn(c.heartbeats)
	return c, nil
}

// newRedis builds the go-redis client of the configured mode (RESP2, no
// CLIENT SETINFO: a new connection costs no extra round trip). Dials and
// commands off the request path are bounded by one second; the request
// path bounds its own with cluster.redis.timeout through its context.
func newRedis(r config.ClusterRedis) (redis.UniversalClient, error) {
	var tc *tls.Config
	if r.TLS != nil {
		var err error
		if tc, err = tlsConfig(r.TLS); err != nil {
			return nil, fmt.Errorf("cluster.redis.tls: %w", err)
		}
	}
	const io = time.Second
	switch r.Mode {
	case config.RedisSentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: r.MasterName, SentinelAddrs: r.Addrs, Username: r.Username, Password: r.Password, DB: r.DB,
			TLSConfig: tc, DialTimeout: io, ReadTimeout: io, WriteTimeout: io, ContextTimeoutEnabled: true, MaxRetries: 1,
			Protocol: 2, DisableIdentity: true,
		}), nil
	case config.RedisCluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: r.Addrs, Username: r.Username, Password: r.Password,
			TLSConfig: tc, DialTimeout: io, ReadTimeout: io, WriteTimeout: io, ContextTimeoutEnabled: true, MaxRetries: 1,
			Protocol: 2, DisableIdentity: true,
		}), nil
	}
	return redis.NewClient(&redis.Options{
		Addr: r.Addrs[0], Username: r.Username, Password: r.Password, DB: r.DB,
		TLSConfig: tc, DialTimeout: io, ReadTimeout: io, WriteTimeout: io, ContextTimeoutEnabled: true, MaxRetries: 1,
		Protocol: 2, DisableIdentity: true,
	}), nil
}

func tlsConfig(t *config.BackendTLS) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.SkipVerify()}
	if t.MinVersion != "" {
		v, err := certs.ParseVersion(t.MinVersion)
		if err != nil {
			return nil, err
		}
		cfg.MinVersion = v
	}
	if t.CAFile != "" {
		pool, err := certs.LoadClientCAs(t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.ClientCertFile != "" {
		cert, err := certs.LoadClientPair(t.ClientCertFile, t.ClientKeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg, nil
}

func (c *Client) registerMetrics(reg prometheus.Registerer) error {
	c.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rustygate_cluster_redis_errors_total",
		Help: "Redis commands of the cluster that failed or timed out, by operation (limit, heartbeat, bans)."}, []string{"op"})
	c.upG = prometheus.NewGauge(prometheus.GaugeOpts{Name: "rustygate_cluster_up",
		Help: "1 while the cluster's Redis answers, 0 while rate limits apply their on_error policy."})
	c.nodesG = prometheus.NewGauge(prometheus.GaugeOpts{Name: "rustygate_cluster_nodes", Help: "Live nodes of the cluster, from their heartbeats."})
	c.upG.Set(1)
	c.nodesG.Set(1)
	for _, op := range []string{"limit", "heartbeat", "bans"} {
		c.errs.WithLabelValues(op) // exported at 0 from the start
	}
	if reg == nil {
		return nil
	}
	for _, m := range []prometheus.Collector{c.errs, c.upG, c.nodesG} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("cluster metrics: %w", err)
		}
	}
	return nil
}

// loadScripts loads the request path's script ahead of the first
// request (on every master of a Redis Cluster), so that the first
// request does not pay a NOSCRIPT round trip within its timeout.
func (c *Client) loadScripts() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return takeScript.Load(ctx, m).Err() })
		return
	}
	takeScript.Load(ctx, c.rdb)
}

// Up reports whether Redis answered the last command.
func (c *Client) Up() bool { return c.up.Load() }

// Node returns this instance's description.
func (c *Client) Node() NodeInfo { return c.node }

// fail records a failed command of op and marks Redis down: the first
// failure after a success is logged, and a probe waits for Redis to
// come back.
func (c *Client) fail(op string, err error) {
	c.errs.WithLabelValues(op).Inc()
	if c.up.CompareAndSwap(true, false) {
		c.upG.Set(0)
		c.log.Warn("cluster: redis unavailable; rate limits apply their on_error policy", "op", op, "error", err.Error())
	}
	if c.probing.CompareAndSwap(false, true) && !c.spawn(c.probe) {
		c.probing.Store(false)
	}
}

// recovered marks Redis up again, logged once.
func (c *Client) recovered() {
	if c.up.CompareAndSwap(false, true) {
		c.upG.Set(1)
		c.log.Info("cluster: redis available again; rate limits of scope cluster count in redis")
		if b := c.bans; b != nil {
			select { // publish the bans made meanwhile
			case b.kick <- struct{}{}:
			default:
			}
		}
	}
}

// probe pings Redis until it answers within the timeout.
func (c *Client) probe() {
	defer c.probing.Store(false)
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(c.timeout, 50*time.Millisecond))
		err := c.rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			c.recovered()
			return
		}
	}
}

// Close stops the background work, removes this node from the members
// and closes the connections.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		c.wg.Wait()
		c.leave()
		err = c.rdb.Close()
	})
	return err
}
