package cluster

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testredis"
	"github.com/rustygate/rustygate/loader"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClient connects a node named name to the Redis at addrs.
func newClient(t *testing.T, name, mode string, addrs ...string) *Client {
	t.Helper()
	cfg := config.Cluster{NodeName: name, KeyPrefix: "t:", Redis: config.ClusterRedis{Addrs: addrs, Mode: mode, Timeout: config.Duration(200 * time.Millisecond)}}
	if mode == config.RedisSentinel {
		cfg.Redis.MasterName = "rg"
	}
	c, err := New(cfg, NodeInfo{Version: "test", Datapath: "userspace"}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newDatapath is a userspace datapath, the twin of the kernel ban map.
func newDatapath(t *testing.T) Datapath {
	t.Helper()
	dp, err := loader.New(config.Datapath{Mode: config.DatapathUserspace, Bans: config.Bans{Duration: config.Duration(time.Minute)}}, []int{8080}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	return Datapath{DP: dp}
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMembers(t *testing.T) {
	r := testredis.Start(t)
	a := newClient(t, "a", config.RedisStandalone, r.Addr())
	b := newClient(t, "b", config.RedisStandalone, r.Addr())
	ms, err := a.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
		if m.Version != "test" || m.Datapath != "userspace" || m.Self != (m.Name == "a") {
			t.Errorf("member %+v", m)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("members %v, want a and b", names)
	}
	waitUntil(t, 3*time.Second, "a counts two live nodes", func() bool { return a.LiveNodes() == 2 })
	b.Close()
	ms, _ = a.Members(t.Context())
	if len(ms) != 1 || ms[0].Name != "a" {
		t.Errorf("after b left: %+v", ms)
	}
}

// checkTake runs the GCRA of a 10 per minute limit with a burst of 10.
func checkTake(t *testing.T, c *Client) {
	t.Helper()
	g := GCRA{Interval: 6 * time.Second, Tolerance: 60 * time.Second, Window: time.Minute}
	key := c.LimitKey("route", "192.0.2.1")
	for i := range 10 {
		v, err := c.Take(key, g)
		if err != nil || !v.OK || v.Remaining != 9-i || v.Count != i+1 {
			t.Fatalf("request %d: %+v %v", i+1, v, err)
		}
		if v.Reset < time.Duration(i+1)*6*time.Second-time.Second || v.Reset > time.Duration(i+1)*6*time.Second {
			t.Fatalf("request %d: reset %s", i+1, v.Reset)
		}
	}
	v, err := c.Take(key, g)
	if err != nil || v.OK || v.Remaining != 0 || v.Reset <= 5*time.Second || v.Reset > 6*time.Second || v.Count != 11 {
		t.Fatalf("request 11: %+v %v", v, err)
	}
	if v, _ := c.Take(c.LimitKey("route", "192.0.2.2"), g); !v.OK {
		t.Fatal("another key shares the state")
	}
}

func TestTake(t *testing.T) {
	r := testredis.Start(t)
	c := newClient(t, "a", config.RedisStandalone, r.Addr())
	checkTake(t, c)
	ttl, _ := r.CLI("PTTL", c.LimitKey("route", "192.0.2.1"))
	if n := atoiTrim(ttl); n < 59000 || n > 61001 {
		t.Errorf("key TTL %s ms, want about the state's 60s", ttl)
	}
}

func TestDownAndBack(t *testing.T) {
	r := testredis.Start(t)
	c := newClient(t, "a", config.RedisStandalone, r.Addr())
	g := GCRA{Interval: time.Millisecond, Tolerance: time.Second, Window: time.Second}
	if _, err := c.Take("k", g); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	start := time.Now()
	if _, err := c.Take("k", g); err == nil {
		t.Fatal("Take succeeded with Redis down")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a failed Take took %s, want at most the timeout", d)
	}
	if c.Up() {
		t.Error("still up after a failure")
	}
	start = time.Now()
	if _, err := c.Take("k", g); err != ErrDown || time.Since(start) > 5*time.Millisecond {
		t.Errorf("while down: %v after %s, want ErrDown at once", err, time.Since(start))
	}
	r.Restart()
	waitUntil(t, 3*time.Second, "Redis seen up again", c.Up)
	if _, err := c.Take("k", g); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

var ip = netip.MustParseAddr("198.51.100.7")

func banned(d Datapath) bool { return slices.Contains(d.Banned(), ip) }

// checkBans bans on a, sees it on b within a second, lifts it from b,
// and sees a node started afterwards apply a ban made before it.
func checkBans(t *testing.T, mode string, addrs ...string) {
	t.Helper()
	a, b := newClient(t, "a", mode, addrs...), newClient(t, "b", mode, addrs...)
	da, db := newDatapath(t), newDatapath(t)
	a.FollowBans(da)
	b.FollowBans(db)
	time.Sleep(100 * time.Millisecond) // the followers' first synchronisation
	if err := a.Ban(ip, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !banned(da) {
		t.Fatal("the ban is not in force on the node that made it")
	}
	d := waitUntil(t, time.Second, "ban on b", func() bool { return banned(db) })
	t.Logf("ban reached b in %s", d)
	exp := func(dp Datapath) time.Time { return dp.DP.Bans()[0].Until }
	if dt := exp(da).Sub(exp(db)).Abs(); dt > 100*time.Millisecond {
		t.Errorf("expiries differ by %s", dt)
	}
	c := newClient(t, "c", mode, addrs...)
	dc := newDatapath(t)
	c.FollowBans(dc)
	waitUntil(t, time.Second, "ban on a node started later", func() bool { return banned(dc) })
	if was, err := b.Unban(ip); err != nil || !was {
		t.Fatalf("Unban = %v, %v", was, err)
	}
	waitUntil(t, time.Second, "lifted on a and c", func() bool { return !banned(da) && !banned(dc) })
}

func TestBans(t *testing.T) {
	r := testredis.Start(t)
	checkBans(t, config.RedisStandalone, r.Addr())
}

func TestRedisCluster(t *testing.T) {
	nodes := testredis.StartCluster(t)
	c := newClient(t, "a", config.RedisCluster, nodes[0].Addr())
	checkTake(t, c)
	checkBans(t, config.RedisCluster, nodes[0].Addr(), nodes[1].Addr())
}

func TestSentinelFailover(t *testing.T) {
	s := testredis.StartSentinel(t)
	c := newClient(t, "a", config.RedisSentinel, s.Sentinel.Addr())
	checkTake(t, c)
	// Replication is asynchronous: a master killed at once may take its
	// last writes with it. The failover is tested once the replica has
	// everything the master wrote.
	waitUntil(t, 5*time.Second, "the replica to catch up with the master", func() bool {
		m, r := replOffset(s.Master, "master_repl_offset"), replOffset(s.Replica, "slave_repl_offset")
		return m > 0 && r >= m
	})
	s.Master.Kill()
	waitUntil(t, 15*time.Second, "the sentinel promotes the replica", func() bool { return s.MasterPort() == s.Replica.Port })
	g := GCRA{Interval: time.Millisecond, Tolerance: time.Second, Window: time.Second}
	waitUntil(t, 5*time.Second, "Take works on the new master", func() bool {
		_, err := c.Take(c.LimitKey("r", "x"), g)
		return err == nil
	})
	// The state written before the failover was replicated.
	if v, err := c.Take(c.LimitKey("route", "192.0.2.1"), GCRA{Interval: 6 * time.Second, Tolerance: 60 * time.Second, Window: time.Minute}); err != nil || v.OK {
		t.Errorf("after failover: %+v %v, want the key still limited", v, err)
	}
}

// replOffset is a replication offset field of INFO replication, -1 when
// the server does not answer.
func replOffset(s *testredis.Server, field string) int64 {
	out, err := s.CLI("INFO", "replication")
	if err != nil {
		return -1
	}
	for l := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

func atoiTrim(s string) int {
	n := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n = n*10 + int(r-'0')
		}
	}
	return n
}

// TakeN of k requests gives each what k sequential Takes would.
func TestTakeN(t *testing.T) {
	r := testredis.Start(t)
	c := newClient(t, "a", config.RedisStandalone, r.Addr())
	g := GCRA{Interval: 6 * time.Second, Tolerance: 60 * time.Second, Window: time.Minute}
	seq := make([]Verdict, 12)
	for i := range seq {
		v, err := c.Take(c.LimitKey("seq", "k"), g)
		if err != nil {
			t.Fatal(err)
		}
		seq[i] = v
	}
	b, err := c.TakeN(c.LimitKey("batch", "k"), g, 12)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range seq {
		got := b.Verdict(i)
		if got.OK != want.OK || got.Remaining != want.Remaining || got.Count != want.Count || (got.Reset-want.Reset).Abs() > 50*time.Millisecond {
			t.Errorf("request %d: batch %+v, sequential %+v", i, got, want)
		}
	}
}

// A ban made while Redis is down applies here at once, without waiting,
// and reaches the other nodes once Redis is back.
func TestBanWhileDown(t *testing.T) {
	r := testredis.Start(t)
	a, b := newClient(t, "a", config.RedisStandalone, r.Addr()), newClient(t, "b", config.RedisStandalone, r.Addr())
	da, db := newDatapath(t), newDatapath(t)
	a.FollowBans(da)
	b.FollowBans(db)
	r.Kill()
	start := time.Now()
	if err := a.Ban(ip, time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Millisecond || !banned(da) {
		t.Fatalf("Ban with Redis down: %s, banned here %v", d, banned(da))
	}
	r.Restart()
	waitUntil(t, 3*time.Second, "the ban reaches b after Redis came back", func() bool { return banned(db) })
}
