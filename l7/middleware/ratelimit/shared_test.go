package ratelimit

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testredis"
	"github.com/rustygate/rustygate/l7/middleware"
)

var nodeSeq atomic.Int64

// sharedLimiters builds n limiters of scope cluster, one per node, each
// with its own connection to the Redis at addr.
func sharedLimiters(t testing.TB, n int, addr string, s Settings) []*Limiter {
	t.Helper()
	out := make([]*Limiter, n)
	for i := range out {
		cfg := config.Cluster{NodeName: fmt.Sprintf("n%d", nodeSeq.Add(1)), KeyPrefix: "t:", Redis: config.ClusterRedis{Addrs: []string{addr}, Mode: config.RedisStandalone, Timeout: config.Duration(100 * time.Millisecond)}}
		cl, err := cluster.New(cfg, cluster.NodeInfo{}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		l, err := NewWithStore(s, "api", nil, Options{Cluster: cl}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l
	}
	return out
}

func sharedSettings(onError string) Settings {
	return Settings{Limit: 100, Burst: 100, Window: config.Duration(time.Minute), Key: "ip", MaxKeys: 1000, Scope: ScopeCluster, OnError: onError}
}

// Three nodes share 100 requests a minute: round robin lets 100 through,
// not 300, and the nodes' headers count down together.
func TestClusterScopeShared(t *testing.T) {
	r := testredis.Start(t)
	ls := sharedLimiters(t, 3, r.Addr(), sharedSettings(OnErrorLocal))
	peer := netip.MustParseAddr("203.0.113.9")
	passed := 0
	for i := range 300 {
		req := &request{peer: peer}
		reply := ls[i%3].Handle(req)
		if reply == nil {
			passed++
			if got, want := req.respHeader("RateLimit-Remaining"), fmt.Sprint(100-passed); got != want {
				t.Fatalf("request %d on node %d: RateLimit-Remaining %s, want %s", i, i%3, got, want)
			}
		} else if reply.Status != 429 || req.respHeader("RateLimit-Limit") != "100" {
			t.Fatalf("request %d: status %d, limit %q", i, reply.Status, req.respHeader("RateLimit-Limit"))
		}
	}
	if passed != 100 {
		t.Errorf("%d of 300 passed, want 100", passed)
	}
	st := sharedSettings(OnErrorLocal)
	in, err := buildModule(middleware.Build{Settings: &st, Route: "api", Resources: map[string]any{cluster.Resource: ls[0].shared.cl}})
	if err != nil || !in.Caps.MayBlock {
		t.Errorf("a cluster limiter must run off the event loops: %+v %v", in.Caps, err)
	}
	if _, err := buildModule(middleware.Build{Settings: &st, Route: "api"}); err == nil {
		t.Error("scope cluster built without the cluster section")
	}
}

// With Redis gone every policy answers at once; Redis back, the cluster
// counts again.
func TestClusterScopeOnError(t *testing.T) {
	r := testredis.Start(t)
	peer := netip.MustParseAddr("203.0.113.10")
	local := sharedLimiters(t, 2, r.Addr(), sharedSettings(OnErrorLocal))
	allow := sharedLimiters(t, 1, r.Addr(), sharedSettings(OnErrorAllow))[0]
	deny := sharedLimiters(t, 1, r.Addr(), sharedSettings(OnErrorDeny))[0]
	time.Sleep(1100 * time.Millisecond) // a heartbeat of every node: 4 live
	r.Kill()
	start := time.Now()
	passed := 0
	for range 100 {
		req := &request{peer: peer}
		if local[0].Handle(req) == nil {
			passed++
		}
	}
	if passed != 25 {
		t.Errorf("on_error local: %d of 100 passed, want 25 (100 over 4 live nodes)", passed)
	}
	if rep := allow.Handle(&request{peer: peer}); rep != nil {
		t.Errorf("on_error allow: status %d", rep.Status)
	}
	if rep := deny.Handle(&request{peer: peer}); rep == nil || rep.Status != 503 {
		t.Errorf("on_error deny: %v", rep)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("102 requests with Redis down took %s", d)
	}
	r.Restart()
	waitUp := time.Now()
	for !local[0].shared.cl.Up() || !local[1].shared.cl.Up() {
		if time.Since(waitUp) > 3*time.Second {
			t.Fatal("the cluster scope did not resume")
		}
		time.Sleep(10 * time.Millisecond)
	}
	req := &request{peer: peer}
	local[0].Handle(req)
	if req.respHeader("RateLimit-Limit") != "100" {
		t.Errorf("after recovery: RateLimit-Limit %q, want the cluster's 100", req.respHeader("RateLimit-Limit"))
	}
}

// Concurrent requests of one key, batched into shared Redis steps, are
// counted exactly: 100 of 1200 pass, and each remaining value is given once.
func TestClusterScopeBatched(t *testing.T) {
	r := testredis.Start(t)
	ls := sharedLimiters(t, 3, r.Addr(), sharedSettings(OnErrorLocal))
	peer := netip.MustParseAddr("203.0.113.11")
	var mu sync.Mutex
	seen := map[string]bool{}
	passed := 0
	var wg sync.WaitGroup
	for w := range 60 {
		wg.Go(func() {
			for i := range 20 {
				req := &request{peer: peer}
				if ls[(w+i)%3].Handle(req) != nil {
					continue
				}
				mu.Lock()
				passed++
				if rem := req.respHeader("RateLimit-Remaining"); seen[rem] {
					t.Errorf("RateLimit-Remaining %s given twice", rem)
				} else {
					seen[rem] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if passed != 100 {
		t.Errorf("%d of 1200 concurrent requests passed, want 100", passed)
	}
	cmds := r.Commands()
	t.Logf("%d Redis commands for 1200 requests", cmds)
}
