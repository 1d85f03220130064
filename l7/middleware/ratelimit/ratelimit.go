// Package ratelimit is the rate_limit request policy: each client key
// (its IP address, a header's value or a JWT claim) may send `limit`
// requests per `window`, with bursts of up to `burst` requests.
//
// # Algorithm
//
// The limiter is GCRA, the generic cell rate algorithm, which behaves as
// a token bucket of `burst` tokens refilled at `limit` per `window` but
// keeps one number per key: the theoretical arrival time (TAT) at which
// the bucket would be full again. A request is allowed when advancing TAT
// by one emission interval (window/limit) leaves it at most burst
// intervals ahead of now. A key whose TAT has passed is in the same state
// as a key never seen, so it can be forgotten at any time: that is how
// idle keys expire.
//
// # State
//
// Keys live in a Store: up to 127 shards, each a mutex and an
// open-addressing hash table of 32-byte slots (a 16-byte key, 16 bytes of
// state) with no pointers for the garbage collector to scan, about 43
// bytes per key once full. IP addresses are stored as themselves; header
// and claim values as a 128-bit seeded hash. A store never holds more
// than max_keys keys: inserting a new key into a full shard evicts an
// expired key found in a sample of the shard or, if none was expired, the
// sampled key closest to expiring. Every insert also looks at two keys
// and deletes one that has expired, so idle keys go away without a sweeper
// goroutine; the limiter owns no background work and needs no Close.
//
// A Store can outlive the limiter that made it: a configuration reload
// that builds a limiter for an unchanged route (same route name and
// settings) passes the old limiter's Store to NewWithStore, and clients
// keep their state.
//
// # Cluster scope
//
// With `scope: cluster` the same GCRA step runs in Redis instead, one Lua
// script per request (package cluster), with the parameters the local
// store would use: the instances of a cluster together let a key through
// exactly as one instance would, and their RateLimit-* headers agree. The
// handler then waits on the network (at most cluster.redis.timeout) and
// declares MayBlock. While Redis fails, `on_error` decides: local (the
// node's own store with the limit and burst divided by the live nodes),
// allow, or deny (503). Each request is counted in Redis: no lease of
// tokens is taken ahead, so the cluster-wide count carries no error; the
// concurrent requests of one key on one node share a step (a script call
// for k requests gives each the verdict of k sequential steps), which
// saves round trips on hot keys without changing any count.
package ratelimit

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// ClaimsKey is the request value under which the jwt policy stores the
// verified claims (a map[string]any), read by jwt:CLAIM keys.
const ClaimsKey = "jwt.claims"

// Options are the settings of a limiter that do not come from the
// configuration file.
type Options struct {
	// Now returns the current time; nil means time.Now. Tests inject a
	// clock here.
	Now func() time.Time
	// OnExceeded, when set, is called for every rejected request with the
	// client's IP address and the ratio of the key's requests (allowed
	// and rejected) in the current fixed window to limit: 3 means the key
	// sent three times its limit so far in this window. It runs on the
	// request path and must be fast.
	OnExceeded func(ip netip.Addr, over float64)
	// Cluster is the cluster's Redis, required by scope cluster.
	Cluster *cluster.Client
}

// key kinds.
const (
	keyIP = iota
	keyHeader
	keyClaim
)

// Limiter is a built rate_limit policy.
type Limiter struct {
	route   string
	rep     middleware.Reporter
	opts    Options
	store   *Store
	kind    int
	name    string // header name or claim name
	trusted clientip.Proxies
	// shared is the cluster scope's state (nil: scope local).
	shared *shared

	limitValue string
}

var _ middleware.Handler = (*Limiter)(nil)

// New builds the policy from the settings of an effective rate_limit
// entry (see config.Config.RouteMiddlewares). It fails on settings it
// cannot run.
func New(cfg Settings, route string, rep middleware.Reporter) (middleware.Handler, error) {
	return NewWithStore(cfg, route, rep, Options{}, nil)
}

// NewWithStore builds the policy like New, with options, keeping the
// state of prev when prev was made for the same route and settings
// (prev may be nil; a Store of other settings is ignored).
func NewWithStore(cfg Settings, route string, rep middleware.Reporter, opts Options, prev *Store) (*Limiter, error) {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Limiter{route: route, rep: rep, opts: opts}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.Limit
	}
	switch {
	case cfg.Limit < 1:
		return nil, fmt.Errorf("rate_limit: limit must be at least 1 (got %d)", cfg.Limit)
	case cfg.Window <= 0:
		return nil, fmt.Errorf("rate_limit: window must be greater than 0 (got %s)", cfg.Window)
	case cfg.Burst < 1:
		return nil, fmt.Errorf("rate_limit: burst must be at least 1 (got %d)", cfg.Burst)
	case cfg.MaxKeys < 1:
		return nil, fmt.Errorf("rate_limit: max_keys must be at least 1 (got %d)", cfg.MaxKeys)
	}
	interval := max(int64(cfg.Window)/int64(cfg.Limit), 1)
	if interval > math.MaxInt64/4/int64(cfg.Burst) {
		return nil, fmt.Errorf("rate_limit: window %s is too long for a burst of %d", cfg.Window, cfg.Burst)
	}
	switch k := cfg.Key; {
	case k == "" || k == "ip":
		l.kind = keyIP
	case strings.HasPrefix(k, "header:") && len(k) > len("header:"):
		l.kind, l.name = keyHeader, k[len("header:"):]
	case strings.HasPrefix(k, "jwt:") && len(k) > len("jwt:"):
		l.kind, l.name = keyClaim, k[len("jwt:"):]
	default:
		return nil, fmt.Errorf("rate_limit: invalid key %q (want ip, header:NAME or jwt:CLAIM)", k)
	}
	trusted, err := clientip.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	l.trusted = trusted
	l.limitValue = strconv.Itoa(cfg.Limit)

	id := identity(route, cfg)
	if prev != nil && prev.id == id {
		l.store = prev
	} else {
		l.store = newStore(id, opts.Now(), interval, cfg)
	}
	if cfg.Scope == ScopeCluster {
		if opts.Cluster == nil {
			return nil, fmt.Errorf("rate_limit: scope cluster needs the cluster section (cluster.redis.addrs)")
		}
		l.shared = newShared(opts.Cluster, route, cfg, interval)
	}
	return l, nil
}

// identity names a store's route and settings.
func identity(route string, cfg Settings) string {
	return fmt.Sprintf("%q %d %d %d %q %q %d", route, cfg.Limit, int64(cfg.Window), cfg.Burst, cfg.Key, cfg.TrustedProxies, cfg.MaxKeys)
}

// Store returns the limiter's state, to pass to NewWithStore when the
// configuration is reloaded.
func (l *Limiter) Store() *Store { return l.store }

// Allow takes one request for key at time now and reports whether it is
// allowed, how many more requests the key could send right now, and a
// duration: when allowed, the time until the key's burst is fully
// available again; when rejected, the time until one request is allowed.
// key is an IP address in text form for the ip key (and the ip
// fallback of the other kinds), otherwise the header or claim value.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, remaining int, reset time.Duration) {
	var k storeKey
	if a, err := netip.ParseAddr(key); err == nil {
		k = ipKey(a.Unmap())
	} else {
		k = l.store.hashKey(key)
	}
	r := l.store.take(k, now)
	return r.ok, r.remaining, r.reset
}

// Handle implements middleware.Handler.
func (l *Limiter) Handle(r middleware.Request) *middleware.Reply {
	ip := l.clientIP(r)
	var res result
	limit := l.limitValue
	if l.shared != nil {
		var reply *middleware.Reply
		var counted bool
		if res, limit, reply, counted = l.shared.take(l, r, ip); !counted {
			return reply
		}
	} else {
		res = l.store.take(l.keyOf(r, ip), l.opts.Now())
	}
	r.AddResponseHeader("RateLimit-Limit", limit)
	addInt(r, "RateLimit-Remaining", res.remaining)
	addInt(r, "RateLimit-Reset", ceilSeconds(res.reset))
	if res.ok {
		return nil
	}
	reset := itoa(ceilSeconds(res.reset))
	l.rep.Rejected("rate_limit", l.route, "limit", ip)
	if l.opts.OnExceeded != nil {
		l.opts.OnExceeded(ip, float64(res.count)/float64(l.store.limit))
	}
	return &middleware.Reply{
		Status:  429,
		Headers: [][2]string{{"Retry-After", reset}, {"Content-Type", "application/json"}},
		Body:    tooManyBody,
	}
}

// tooManyBody is the body of every 429 reply; the proxy only reads it.
var tooManyBody = []byte(`{"error":"too_many_requests"}` + "\n")

// keyOf returns the store key of a request.
func (l *Limiter) keyOf(r middleware.Request, ip netip.Addr) storeKey {
	switch l.kind {
	case keyHeader:
		if v := r.Header(l.name); len(v) > 0 {
			return l.store.hashBytes(v)
		}
	case keyClaim:
		claims, _ := r.Value(ClaimsKey).(map[string]any)
		switch v := claims[l.name].(type) {
		case string:
			if v != "" {
				return l.store.hashKey(v)
			}
		case float64:
			return l.store.hashKey(strconv.FormatFloat(v, 'g', -1, 64))
		case bool:
			return l.store.hashKey(strconv.FormatBool(v))
		case nil:
		default:
			return l.store.hashKey(fmt.Sprint(v))
		}
	}
	return ipKey(ip)
}

// clientIP returns the client address (see clientip.Proxies.Client).
func (l *Limiter) clientIP(r middleware.Request) netip.Addr {
	return l.trusted.Client(r)
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// Numbers below numbersMax are formatted from one shared string, so the
// response headers cost no allocation.
const numbersMax = 10000

var numbers = sync.OnceValues(func() (string, []uint32) {
	var b []byte
	offs := make([]uint32, 0, numbersMax+1)
	for i := range numbersMax {
		offs = append(offs, uint32(len(b)))
		b = strconv.AppendInt(b, int64(i), 10)
	}
	offs = append(offs, uint32(len(b)))
	return string(b), offs
})

// addInt adds a response header of value n without allocating.
func addInt(r middleware.Request, name string, n int) {
	if n >= 0 && n < numbersMax {
		r.AddResponseHeader(name, itoa(n))
		return
	}
	middleware.AddResponseHeaderInt(r, name, int64(n))
}

func itoa(n int) string {
	if n < 0 || n >= numbersMax {
		return strconv.Itoa(n)
	}
	s, offs := numbers()
	return s[offs[n]:offs[n+1]]
}
