package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// GCRA are the parameters of one rate limit, in the units of the local
// limiter: a request costs Interval, a key may be Tolerance ahead of
// now (burst * interval), and Window is the fixed window in which
// requests are counted for the offence ratio.
type GCRA struct {
	Interval, Tolerance, Window time.Duration
}

// Verdict is the outcome of one request taken in Redis, as the local
// limiter reports it: whether it passes, how many more requests the key
// could send now, the time until the burst is full again (allowed) or
// until one request passes (rejected), and the key's requests in the
// current window.
type Verdict struct {
	OK        bool
	Remaining int
	Reset     time.Duration
	Count     int
}

// takeScript is the GCRA step of the local limiter for ARGV[4] requests
// of one key at once, run atomically in Redis in microseconds of Redis
// time (so the nodes' clocks do not matter): the key's theoretical
// arrival time t, and the count n of its requests in the fixed window w.
// The first g requests pass, as many as the burst allows; the reply is g,
// how far the TAT was ahead of now before them, and n before them, from
// which each request's verdict is what k sequential steps would give.
// The key expires when its state equals that of a key never seen.
var takeScript = redis.NewScript(`
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 't', 'w', 'n')
local tat = tonumber(v[1]) or 0
local win = math.floor(now / window)
local n = 0
if tonumber(v[2]) == win then n = tonumber(v[3]) or 0 end
local base = math.max(tat, now)
local g = math.floor((tol - (base - now)) / interval)
g = math.max(0, math.min(want, g))
tat = base + g * interval
redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat), 'w', string.format('%.0f', win), 'n', n + want)
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tat - now, window - now % window) / 1000) + 1)
return {g, base - now, n}
`)

// LimitKey is the Redis key of one client key of one limiter. The hash
// tag keeps the whole key in one Cluster slot while spreading the
// clients over the slots.
func (c *Client) LimitKey(limiter, key string) string {
	return c.prefix + "rl:{" + limiter + ":" + key + "}"
}

// Batch is the outcome of k requests of one key taken at once.
type Batch struct {
	g         GCRA
	granted   int
	baseAhead time.Duration // the TAT ahead of now before the batch
	before    int           // requests of the key in the window before
}

// Verdict is the outcome of the batch's request j (0-based), the same as
// if the requests had been taken one after the other.
func (b Batch) Verdict(j int) Verdict {
	iv := b.g.Interval.Microseconds()
	iv = max(iv, 1)
	tol := b.g.Tolerance.Microseconds()
	base := b.baseAhead.Microseconds()
	if j < b.granted {
		ahead := base + int64(j+1)*iv
		return Verdict{OK: true, Remaining: int((tol - ahead) / iv), Reset: time.Duration(ahead) * time.Microsecond, Count: b.before + j + 1}
	}
	ahead := base + int64(b.granted+1)*iv
	return Verdict{Reset: time.Duration(ahead-tol) * time.Microsecond, Count: b.before + j + 1}
}

// Take counts one request of the Redis key rkey (see LimitKey) in one
// round trip, bounded by cluster.redis.timeout. While Redis is down it
// returns ErrDown at once.
func (c *Client) Take(rkey string, g GCRA) (Verdict, error) {
	b, err := c.TakeN(rkey, g, 1)
	if err != nil {
		return Verdict{}, err
	}
	return b.Verdict(0), nil
}

// TakeN counts k requests of rkey in one round trip, as k sequential
// steps would; Batch.Verdict gives each one's outcome.
func (c *Client) TakeN(rkey string, g GCRA, k int) (Batch, error) {
	if !c.up.Load() {
		return Batch{}, ErrDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	res, err := takeScript.Run(ctx, c.rdb, []string{rkey}, max(g.Interval.Microseconds(), 1), g.Tolerance.Microseconds(), max(g.Window.Microseconds(), 1), k).Int64Slice()
	if err == nil && len(res) != 3 {
		err = errors.New("cluster: unexpected reply of the rate limit script")
	}
	if err != nil {
		c.fail("limit", err)
		return Batch{}, err
	}
	return Batch{g: g, granted: int(res[0]), baseAhead: time.Duration(res[1]) * time.Microsecond, before: int(res[2])}, nil
}
