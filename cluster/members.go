package cluster

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeats: every node writes its description every heartbeatEvery
// with a TTL of heartbeatTTL; a node missing three beats is gone.
const (
	heartbeatEvery = time.Second
	heartbeatTTL   = 3 * time.Second
)

// heartbeatScript writes the node's description with its TTL, records
// its expiry (Redis time) in the members' sorted set, forgets expired
// members and returns the live ones. Both keys share the {nodes} tag.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
return redis.call('ZCARD', KEYS[1])
`)

// Member is a live node as GET /admin/cluster lists it.
type Member struct {
	NodeInfo
	Self bool `json:"self"`
	// ExpiresIn is how long the node's last heartbeat stays valid.
	ExpiresIn string `json:"expires_in"`
}

func (c *Client) membersKey() string           { return c.prefix + "{nodes}" }
func (c *Client) memberKey(name string) string { return c.prefix + "{nodes}:" + name }

// heartbeat announces this node once and updates the live node count.
func (c *Client) heartbeat() error {
	info, _ := json.Marshal(c.node)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := heartbeatScript.Run(ctx, c.rdb, []string{c.membersKey(), c.memberKey(c.node.Name)},
		heartbeatTTL.Milliseconds(), info, c.node.Name).Int64()
	if err != nil {
		return err
	}
	c.live.Store(max(n, 1))
	c.nodesG.Set(float64(max(n, 1)))
	return nil
}

// heartbeats announces the node until Close.
func (c *Client) heartbeats() {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if err := c.heartbeat(); err != nil {
			c.fail("heartbeat", err)
			continue
		}
		c.recovered()
	}
}

// leave removes this node from the members (at Close).
func (c *Client) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.rdb.ZRem(ctx, c.membersKey(), c.node.Name)
	c.rdb.Del(ctx, c.memberKey(c.node.Name))
}

// LiveNodes returns the number of nodes whose heartbeat was live at the
// last beat of this node (at least 1: this one).
func (c *Client) LiveNodes() int { return int(c.live.Load()) }

// Members lists the live nodes, read from Redis now.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	now := time.Now()
	zs, err := c.rdb.ZRangeByScoreWithScores(ctx, c.membersKey(), &redis.ZRangeBy{Min: "-inf", Max: "+inf"}).Result()
	if err != nil || len(zs) == 0 {
		return []Member{}, err
	}
	keys := make([]string, len(zs))
	for i, z := range zs {
		keys[i] = c.memberKey(z.Member.(string))
	}
	// An expired heartbeat has no description any more.
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(zs))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between the two reads
		}
		var m Member
		if json.Unmarshal([]byte(s), &m.NodeInfo) != nil {
			continue
		}
		m.Self = m.Name == c.node.Name
		left := time.Duration(int64(zs[i].Score)-now.UnixMilli()) * time.Millisecond
		m.ExpiresIn = max(left, 0).Round(time.Millisecond).String()
		out = append(out, m)
	}
	return out, nil
}
