package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/l7/middleware"
)

// shared is the state of a limiter of scope cluster: every request is
// one GCRA step in Redis (cluster.Client.TakeN; concurrent requests of
// one key share a step, see combiner), with the parameters of the local
// limiter, so that N instances together let through what one instance
// would. While Redis fails, onError decides.
type shared struct {
	cl      *cluster.Client
	id      string // the limiter's name in Redis, the same on every node
	gcra    cluster.GCRA
	onError string
	cfg     Settings
	batches *combiner
	// fallback is the node's own limiter of on_error local, for the
	// number of live nodes it was made for.
	fallback atomic.Pointer[fallbackStore]
}

type fallbackStore struct {
	nodes int
	store *Store
	limit string
}

// newShared prepares the cluster scope of a limiter with settings cfg
// (burst resolved).
func newShared(cl *cluster.Client, route string, cfg Settings, interval int64) *shared {
	sum := sha256.Sum256([]byte(identity(route, cfg)))
	return &shared{
		cl:      cl,
		id:      hex.EncodeToString(sum[:8]),
		gcra:    cluster.GCRA{Interval: time.Duration(interval), Tolerance: time.Duration(interval * int64(cfg.Burst)), Window: time.Duration(cfg.Window)},
		onError: cfg.OnError,
		cfg:     cfg,
		batches: newCombiner(),
	}
}

// take counts one request in Redis. When Redis fails it applies the
// on_error policy: reply is then the answer to send (nil: let the
// request through), and limit the limit the headers show ("" for none).
func (s *shared) take(l *Limiter, r middleware.Request, ip netip.Addr) (res result, limit string, reply *middleware.Reply, ok bool) {
	rkey := s.cl.LimitKey(s.id, l.clusterKey(r, ip))
	v, err := s.batches.take(rkey, func(k int) (cluster.Batch, error) { return s.cl.TakeN(rkey, s.gcra, k) })
	if err == nil {
		return result{ok: v.OK, remaining: v.Remaining, reset: v.Reset, count: uint32(v.Count)}, l.limitValue, nil, true
	}
	switch s.onError {
	case OnErrorAllow:
		return result{}, "", nil, false
	case OnErrorDeny:
		l.rep.Rejected("rate_limit", l.route, "unavailable", ip)
		return result{}, "", unavailableReply, false
	}
	fb := s.fallbackFor(l.opts.Now())
	return fb.store.take(l.keyOf(r, ip), l.opts.Now()), fb.limit, nil, true
}

// unavailableReply answers a request of a route whose limits cannot be
// counted, under on_error deny.
var unavailableReply = &middleware.Reply{
	Status:    503,
	Headers:   [][2]string{{"Retry-After", "1"}, {"Content-Type", "application/json"}},
	Body:      []byte(`{"error":"rate_limit_unavailable"}` + "\n"),
	LogReason: "rate limit store unavailable",
}

// fallbackFor returns the node's own limiter for the live nodes: the
// limit and burst divided by their number (rounded up), so that the
// nodes together stay near the configured limit while Redis is away.
func (s *shared) fallbackFor(now time.Time) *fallbackStore {
	n := max(s.cl.LiveNodes(), 1)
	if fb := s.fallback.Load(); fb != nil && fb.nodes == n {
		return fb
	}
	cfg := s.cfg
	cfg.Limit = (cfg.Limit + n - 1) / n
	cfg.Burst = (cfg.Burst + n - 1) / n
	interval := max(int64(cfg.Window)/int64(cfg.Limit), 1)
	fb := &fallbackStore{nodes: n, store: newStore(identity("fallback", cfg), now, interval, cfg), limit: strconv.Itoa(cfg.Limit)}
	s.fallback.Store(fb)
	return fb
}

// clusterKey is the request's key as every node names it: the client's
// address, or a digest of the header or claim value (the local store's
// hashes are seeded per process).
func (l *Limiter) clusterKey(r middleware.Request, ip netip.Addr) string {
	var v string
	switch l.kind {
	case keyHeader:
		if h := r.Header(l.name); len(h) > 0 {
			v = "h:" + string(h)
		}
	case keyClaim:
		claims, _ := r.Value(ClaimsKey).(map[string]any)
		switch c := claims[l.name].(type) {
		case nil:
		case string:
			if c != "" {
				v = "c:" + c
			}
		default:
			v = "c:" + fmt.Sprint(c)
		}
	}
	if v == "" {
		return ip.String()
	}
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:16])
}
