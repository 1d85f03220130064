package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// BanApplier is where the bans of the cluster are applied on this node:
// the datapath, in the kernel or its userspace twin.
type BanApplier interface {
	Ban(ip netip.Addr, ttl time.Duration) error
	Unban(ip netip.Addr) error
	// Banned lists the addresses banned on this node now.
	Banned() []netip.Addr
}

// Ban follower timing: a blocking read of the stream returns at least
// every followBlock, so a stop is seen in time; after an error the
// follower waits followRetry and synchronises again.
const (
	followBlock = 500 * time.Millisecond
	followRetry = 200 * time.Millisecond
	logMaxLen   = 10000
)

// banScript records a ban until Redis time + ttl in the sorted set and
// the stream, and returns its expiry (Unix ms).
var banScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], untilMs, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'op', 'ban', 'ip', ARGV[1], 'until', string.format('%.0f', untilMs), 'node', ARGV[3])
return untilMs
`)

// unbanScript lifts a ban in the sorted set and tells the stream.
var unbanScript = redis.NewScript(`
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'op', 'unban', 'ip', ARGV[1], 'node', ARGV[2])
return n
`)

func (c *Client) bansKey() string    { return c.prefix + "{bans}" }
func (c *Client) bansLogKey() string { return c.prefix + "{bans}:log" }

// banFollower applies the cluster's bans to this node.
type banFollower struct {
	c     *Client
	apply BanApplier
	mu    sync.Mutex
	// pending are bans made here but not yet in Redis (address ->
	// expiry): published by the publisher, or at the next
	// synchronisation when Redis was away.
	pending map[netip.Addr]time.Time
	// kick wakes the publisher.
	kick chan struct{}
}

// FollowBans applies every ban of the cluster to a, now (the bans in
// force in Redis) and as they come, until Close.
func (c *Client) FollowBans(a BanApplier) {
	c.bans = &banFollower{c: c, apply: a, pending: map[netip.Addr]time.Time{}, kick: make(chan struct{}, 1)}
	c.spawn(c.bans.run)
	c.spawn(c.bans.publisher)
}

// Ban bans ip for ttl on this node at once and on every node through
// Redis. It never waits on Redis (offences arrive on the request path,
// even on the event loops): a publisher writes the ban to Redis in the
// background, and while Redis is unreachable the ban applies here and
// is published when Redis is back.
func (c *Client) Ban(ip netip.Addr, ttl time.Duration) error {
	ip = ip.Unmap()
	if c.bans == nil {
		return errors.New("cluster: bans are not followed")
	}
	if err := c.bans.apply.Ban(ip, ttl); err != nil {
		return err
	}
	c.bans.mu.Lock()
	if len(c.bans.pending) < maxPending {
		c.bans.pending[ip] = time.Now().Add(ttl)
	}
	c.bans.mu.Unlock()
	select {
	case c.bans.kick <- struct{}{}:
	default:
	}
	return nil
}

// maxPending bounds the bans waiting to be published.
const maxPending = 65536

// publisher writes the pending bans to Redis as they come.
func (f *banFollower) publisher() {
	for {
		select {
		case <-f.c.stop:
			return
		case <-f.kick:
		}
		if !f.c.Up() {
			continue // published by the synchronisation once Redis is back
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f.publishPending(ctx)
		cancel()
		if err != nil {
			f.c.fail("bans", err)
		}
	}
}

// Unban lifts the ban of ip here and on every node. It reports whether
// a ban was in force in the cluster.
func (c *Client) Unban(ip netip.Addr) (bool, error) {
	ip = ip.Unmap()
	if c.bans == nil {
		return false, errors.New("cluster: bans are not followed")
	}
	c.bans.mu.Lock()
	delete(c.bans.pending, ip)
	c.bans.mu.Unlock()
	if err := c.bans.apply.Unban(ip); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := unbanScript.Run(ctx, c.rdb, []string{c.bansKey(), c.bansLogKey()}, ip.String(), c.node.Name, logMaxLen).Int64()
	if err != nil {
		c.fail("bans", err)
		return false, err
	}
	return n > 0, nil
}

// run follows the stream of ban events, synchronising with the sorted
// set at the start and after every error.
func (f *banFollower) run() {
	for {
		last, err := f.sync()
		for err == nil {
			last, err = f.follow(last)
		}
		if errors.Is(err, errStopped) {
			return
		}
		f.c.fail("bans", err)
		select {
		case <-f.c.stop:
			return
		case <-time.After(followRetry):
		}
	}
}

var errStopped = errors.New("stopped")

// sync publishes the pending bans, then makes this node's bans those of
// Redis: each ban in force is applied with its expiry, a local ban that
// Redis does not hold is lifted. It returns the stream position from
// which to follow.
func (f *banFollower) sync() (string, error) {
	c := f.c
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.publishPending(ctx); err != nil {
		return "", err
	}
	last := "0-0"
	msgs, err := c.rdb.XRevRangeN(ctx, c.bansLogKey(), "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 1 {
		last = msgs[0].ID
	}
	now := time.Now()
	zs, err := c.rdb.ZRangeByScoreWithScores(ctx, c.bansKey(), &redis.ZRangeBy{Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return "", err
	}
	inForce := map[netip.Addr]bool{}
	for _, z := range zs {
		ip, err := netip.ParseAddr(z.Member.(string))
		if err != nil {
			continue
		}
		inForce[ip] = true
		f.applyBan(ip, int64(z.Score))
	}
	for _, ip := range f.apply.Banned() {
		if !inForce[ip] {
			f.apply.Unban(ip)
		}
	}
	return last, nil
}

// publishPending writes the bans made while Redis was down.
func (f *banFollower) publishPending(ctx context.Context) error {
	f.mu.Lock()
	pending := f.pending
	f.pending = map[netip.Addr]time.Time{}
	f.mu.Unlock()
	for ip, until := range pending {
		ttl := time.Until(until)
		if ttl <= 0 {
			continue
		}
		err := banScript.Run(ctx, f.c.rdb, []string{f.c.bansKey(), f.c.bansLogKey()}, ip.String(), ttl.Milliseconds(), f.c.node.Name, logMaxLen).Err()
		if err != nil {
			f.mu.Lock()
			f.pending[ip] = until
			f.mu.Unlock()
			return err
		}
	}
	return nil
}

// follow applies the events after last, waiting up to followBlock.
func (f *banFollower) follow(last string) (string, error) {
	select {
	case <-f.c.stop:
		return last, errStopped
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), followBlock+time.Second)
	defer cancel()
	res, err := f.c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{f.c.bansLogKey(), last}, Block: followBlock, Count: 1000}).Result()
	if errors.Is(err, redis.Nil) {
		return last, nil
	}
	if err != nil {
		return last, err
	}
	for _, s := range res {
		for _, m := range s.Messages {
			f.event(m.Values)
			last = m.ID
		}
	}
	return last, nil
}

// event applies one ban or unban of the stream.
func (f *banFollower) event(v map[string]any) {
	s, _ := v["ip"].(string)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return
	}
	switch v["op"] {
	case "ban":
		u, _ := v["until"].(string)
		until, err := strconv.ParseInt(u, 10, 64)
		if err == nil {
			f.applyBan(ip, until)
		}
	case "unban":
		if err := f.apply.Unban(ip); err != nil {
			f.c.log.Warn("cluster: lifting a ban", "ip", ip.String(), "error", err.Error())
		}
	}
}

// applyBan bans ip here until the Unix time untilMs, the same expiry as
// on every node (up to the skew of their clocks).
func (f *banFollower) applyBan(ip netip.Addr, untilMs int64) {
	ttl := time.Until(time.UnixMilli(untilMs))
	if ttl <= 0 {
		return
	}
	if err := f.apply.Ban(ip, ttl); err != nil {
		f.c.log.Warn("cluster: applying a ban", "ip", ip.String(), "error", err.Error())
	}
}
