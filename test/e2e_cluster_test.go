package e2e_test

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testredis"
)

// clusterNode is one gateway of a cluster and its admin address.
type clusterNode struct {
	*gateway
	admin string
}

// startClusterNode runs a gateway that shares its limits and bans
// through the Redis of redisYAML (the cluster.redis section's keys).
func startClusterNode(t *testing.T, name, backend, redisYAML, limit string) clusterNode {
	t.Helper()
	yaml := fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0", token: "adm1n" }
log: { format: json, level: info, access: false }
datapath:
  mode: userspace
  bans: { rate_limit_factor: 3, duration: 30s }
cluster:
  node_name: %s
  key_prefix: "e2e:"
  redis: { %s, timeout: 1s }
middlewares:
  - { name: rate_limit, scope: cluster, %s }
routes:
  - path: "/"
    backend: %q
`, name, redisYAML, limit, backend)
	g := startGateway(t, "fast", yaml)
	return clusterNode{g, adminAddr(t, g)}
}

func startClusterNodes(t *testing.T, n int, redisYAML, limit string) []clusterNode {
	t.Helper()
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	nodes := make([]clusterNode, n)
	for i := range nodes {
		nodes[i] = startClusterNode(t, fmt.Sprintf("node-%c", 'a'+i), be.URL, redisYAML, limit)
	}
	return nodes
}

// adminDo sends an authenticated admin request.
func (n clusterNode) adminDo(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer adm1n")
	resp, b := do(t, newClient(t), req)
	return resp.StatusCode, string(b)
}

// clientFrom is a client whose connections come from the address src.
func clientFrom(src string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		DisableKeepAlives: true,
	}}
}

// roundRobin sends n requests from src spread over nodes and returns how
// many passed; the RateLimit-Remaining of the passed ones must count
// down by one across the nodes, but for the tokens the limit gives back
// meanwhile (rate per second: limit / window).
func roundRobin(t *testing.T, nodes []clusterNode, src string, n int, rate float64) int {
	t.Helper()
	c := clientFrom(src)
	passed, last, skips := 0, -1, 0
	start := time.Now()
	for i := range n {
		resp, err := c.Get(nodes[i%len(nodes)].URL() + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			continue
		}
		passed++
		rem, _ := strconv.Atoi(resp.Header.Get("RateLimit-Remaining"))
		if last >= 0 && rem != last-1 {
			skips++
			if rem < last-1 || float64(skips) > refilled(start, rate) {
				t.Errorf("request %d on node %d: RateLimit-Remaining %d after %d (%d times not one less, %.1f tokens given back)", i, i%len(nodes), rem, last, skips, refilled(start, rate))
			}
		}
		last = rem
	}
	return passed
}

// refilled is how many tokens a limit of rate per second gives back
// since start, rounded up.
func refilled(start time.Time, rate float64) float64 {
	return math.Ceil(time.Since(start).Seconds() * rate)
}

// checkClusterSuite runs the shared limit and the bans on three
// gateways sharing the Redis of redisYAML.
func checkClusterSuite(t *testing.T, redisYAML string) {
	nodes := startClusterNodes(t, 3, redisYAML, "limit: 100, window: 60s")
	start := time.Now()
	if passed := roundRobin(t, nodes, "127.0.0.1", 300, 100.0/60); passed < 95 || float64(passed) > 105+refilled(start, 100.0/60) {
		t.Errorf("%d of 300 requests passed over three nodes in %s, want 100 ±5%% (and what the limit gave back meanwhile)", passed, time.Since(start))
	}
	// GET /admin/cluster lists the three nodes.
	code, body := nodes[1].adminDo(t, "GET", "/admin/cluster", "")
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		if code != 200 || !strings.Contains(body, `"name": "`+name+`"`) {
			t.Errorf("GET /admin/cluster: %d %s, want %s listed", code, body, name)
		}
	}
	checkClusterBans(t, nodes, redisYAML)
}

// banListed reports whether GET /admin/bans of n lists ip.
func banListed(t *testing.T, n clusterNode, ip string) bool {
	_, body := n.adminDo(t, "GET", "/admin/bans", "")
	return strings.Contains(body, `"`+ip+`"`)
}

func waitAll(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

func checkClusterBans(t *testing.T, nodes []clusterNode, redisYAML string) {
	if code, body := nodes[0].adminDo(t, "POST", "/admin/bans", `{"ip": "127.0.0.3", "duration": "30s"}`); code != 201 {
		t.Fatalf("POST /admin/bans: %d %s", code, body)
	}
	waitAll(t, time.Second, "admin ban on every node", func() bool {
		return banListed(t, nodes[1], "127.0.0.3") && banListed(t, nodes[2], "127.0.0.3")
	})
	if _, err := clientFrom("127.0.0.3").Get(nodes[2].URL() + "/"); err == nil {
		t.Error("the banned client is served by another node")
	}
	// A node started after the ban applies it.
	late := startClusterNode(t, "node-late", nodes[0].URL(), redisYAML, "limit: 100, window: 60s")
	waitAll(t, time.Second, "ban on a node started later", func() bool { return banListed(t, late, "127.0.0.3") })
	// Lifted on one node, lifted everywhere.
	if code, body := nodes[2].adminDo(t, "DELETE", "/admin/bans/127.0.0.3", ""); code != 204 {
		t.Fatalf("DELETE /admin/bans: %d %s", code, body)
	}
	waitAll(t, time.Second, "lifted on every node", func() bool {
		return !banListed(t, nodes[0], "127.0.0.3") && !banListed(t, nodes[1], "127.0.0.3") && !banListed(t, late, "127.0.0.3")
	})
	// An offence (3x the limit of 100) on two nodes bans on the third.
	// The window gives back 100/60 a second, so 300 requests sent over
	// more than half a second (a loaded machine) stay under 3x: up to 400
	// are sent, until the ban, which may come from the 300th on, refuses
	// the connection.
	c := clientFrom("127.0.0.4")
	for i := range 400 {
		resp, err := c.Get(nodes[i%2].URL() + "/")
		if err != nil {
			if i < 300 {
				t.Fatalf("request %d: %v", i, err)
			}
			break
		}
		resp.Body.Close()
	}
	waitAll(t, time.Second, "offence ban on the third node", func() bool { return banListed(t, nodes[2], "127.0.0.4") })
}

func TestClusterStandalone(t *testing.T) {
	r := testredis.Start(t)
	checkClusterSuite(t, fmt.Sprintf("addrs: [%q]", r.Addr()))
}

func TestClusterRedisCluster(t *testing.T) {
	rs := testredis.StartCluster(t)
	checkClusterSuite(t, fmt.Sprintf("mode: cluster, addrs: [%q, %q]", rs[0].Addr(), rs[1].Addr()))
}

// metric returns the value of an unlabelled metric of n.
func (n clusterNode) metric(t *testing.T, name string) string {
	resp, body := get(t, newClient(t), "http://"+n.admin+"/metrics")
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// With Redis killed mid-run the nodes keep answering at once under
// on_error local (the limit split over the live nodes); with Redis back
// they count in Redis again.
func TestClusterRedisDown(t *testing.T) {
	r := testredis.Start(t)
	nodes := startClusterNodes(t, 3, fmt.Sprintf("addrs: [%q]", r.Addr()), "limit: 90, window: 60s")
	waitAll(t, 3*time.Second, "three live nodes", func() bool { return nodes[0].metric(t, "rustygate_cluster_nodes") == "3" })
	roundRobin(t, nodes, "127.0.0.1", 30, 90.0/60)
	r.Kill()
	start := time.Now()
	// Node a alone: its own limiter of 90/3 = 30.
	if passed := roundRobin(t, nodes[:1], "127.0.0.5", 60, 30.0/60); passed < 30 || float64(passed) > 30+refilled(start, 30.0/60) {
		t.Errorf("Redis down: %d of 60 passed on one node, want 30 (90 over 3 live nodes)", passed)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("60 requests with Redis down took %s", d)
	}
	if v := nodes[0].metric(t, "rustygate_cluster_up"); v != "0" {
		t.Errorf("rustygate_cluster_up %q with Redis down", v)
	}
	// Logged once per transition, not per request (60 requests failed
	// over; a loaded machine may see one more transition).
	if n := strings.Count(nodes[0].logs.String(), "redis unavailable"); n < 1 || n > 2 {
		t.Errorf("the failure is logged %d times, want once:\n%s", n, nodes[0].logs.String())
	}
	r.Restart()
	waitAll(t, 3*time.Second, "every node sees Redis again", func() bool {
		return nodes[0].metric(t, "rustygate_cluster_up") == "1" && nodes[1].metric(t, "rustygate_cluster_up") == "1" && nodes[2].metric(t, "rustygate_cluster_up") == "1"
	})
	resp, err := clientFrom("127.0.0.6").Get(nodes[1].URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("RateLimit-Limit") != "90" || resp.Header.Get("RateLimit-Remaining") != "89" {
		t.Errorf("after recovery: limit %q remaining %q, want the cluster's 90 and 89", resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"))
	}
}

// Against Sentinel: the nodes count in the master; when it dies the
// sentinel promotes the replica and the nodes count there, from the
// replicated state.
func TestClusterSentinelFailover(t *testing.T) {
	s := testredis.StartSentinel(t)
	nodes := startClusterNodes(t, 2, fmt.Sprintf("mode: sentinel, master_name: %s, addrs: [%q]", s.Name, s.Sentinel.Addr()), "limit: 100, window: 60s")
	if passed := roundRobin(t, nodes, "127.0.0.1", 40, 100.0/60); passed != 40 {
		t.Fatalf("%d of 40 passed", passed)
	}
	s.Master.Kill()
	waitAll(t, 15*time.Second, "the sentinel promotes the replica", func() bool { return s.MasterPort() == s.Replica.Port })
	waitAll(t, 5*time.Second, "both nodes count in the new master", func() bool {
		return nodes[0].metric(t, "rustygate_cluster_up") == "1" && nodes[1].metric(t, "rustygate_cluster_up") == "1"
	})
	waitAll(t, 5*time.Second, "the replicated count carries on", func() bool {
		resp, err := clientFrom("127.0.0.1").Get(nodes[1].URL() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		// 40 taken before the failover: at most 59 remain.
		rem, err := strconv.Atoi(resp.Header.Get("RateLimit-Remaining"))
		return resp.Header.Get("RateLimit-Limit") == "100" && err == nil && rem < 60
	})
}
