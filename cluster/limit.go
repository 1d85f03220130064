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

// takeScript is the GCRA step of the local limiter, run atomically in
// Redis on one key, in microseconds of Redis time (so the nodes' clocks
// do not matter): the key's theoretical arrival time t, and the count n
// of its requests in the fixed window w. The key expires when its state
// equals that of a key never seen.
var takeScript = redis.NewScript(`
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'w', 'n')
local tat = tonumber(v[1]) or 0
local win = math.floor(now / window)
local n = 0
if tonumber(v[2]) == win then n = tonumber(v[3]) or 0 end
n = n + 1
local nxt = math.max(tat, now) + interval
local ahead = nxt - now
local ok, remaining, reset = 0, 0, 0
if ahead <= tol then
  ok = 1
  tat = nxt
  remaining = math.floor((tol - ahead) / interval)
  reset = ahead
else
  reset = ahead - tol
end
redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat), 'w', string.format('%.0f', win), 'n', n)
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tat - now, window - now % window) / 1000) + 1)
return {ok, remaining, reset, n}
`)

// LimitKey is the Redis key of one client key of one limiter. The hash
// tag keeps the whole key in one Cluster slot while spreading the
// clients over the slots.
func (c *Client) LimitKey(limiter, key string) string {
	return c.prefix + "rl:{" + limiter + ":" + key + "}"
}

// Take counts one request of the Redis key rkey (see LimitKey) in one
// round trip, bounded by cluster.redis.timeout. While Redis is down it
// returns ErrDown at once.
func (c *Client) Take(rkey string, g GCRA) (Verdict, error) {
	if !c.up.Load() {
		return Verdict{}, ErrDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	res, err := takeScript.Run(ctx, c.rdb, []string{rkey}, max(g.Interval.Microseconds(), 1), g.Tolerance.Microseconds(), max(g.Window.Microseconds(), 1)).Int64Slice()
	if err == nil && len(res) != 4 {
		err = errors.New("cluster: unexpected reply of the rate limit script")
	}
	if err != nil {
		c.fail("limit", err)
		return Verdict{}, err
	}
	return Verdict{OK: res[0] == 1, Remaining: int(res[1]), Reset: time.Duration(res[2]) * time.Microsecond, Count: int(res[3])}, nil
}
