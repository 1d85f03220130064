package config

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"
)

// Values of cluster.redis.mode.
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// Cluster defaults and bounds.
const (
	defaultClusterTimeout   = Duration(10 * time.Millisecond)
	maxClusterTimeout       = Duration(10 * time.Second)
	defaultClusterKeyPrefix = "rustygate:"
)

// Cluster makes the instances that name the same Redis one gateway:
// rate limits of scope cluster are counted in Redis, bans reach every
// instance, and each instance announces itself with a heartbeat. The
// section is off while cluster.redis.addrs is empty.
type Cluster struct {
	Redis ClusterRedis `yaml:"redis"`
	// NodeName names this instance among the others. Default (empty):
	// the host name, read at start (NodeNameOrHost).
	NodeName string `yaml:"node_name"`
	// KeyPrefix starts every Redis key the gateway writes. Default
	// "rustygate:".
	KeyPrefix string `yaml:"key_prefix"`
}

// ClusterRedis is how the gateway reaches Redis.
type ClusterRedis struct {
	// Addrs are host:port addresses: the server (standalone), the
	// sentinels (sentinel) or seed nodes (cluster).
	Addrs []string `yaml:"addrs"`
	// Username and Password authenticate (ACL user, or password only).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the database number (standalone and sentinel only).
	DB int `yaml:"db"`
	// TLS, when set, speaks TLS to Redis (and to the sentinels).
	TLS *BackendTLS `yaml:"tls"`
	// Mode is "standalone" (default), "sentinel" or "cluster".
	Mode string `yaml:"mode"`
	// MasterName is the name the sentinels monitor (sentinel only).
	MasterName string `yaml:"master_name"`
	// Timeout bounds every command on the request path: past it the
	// rate limits apply their on_error policy. Default 10ms.
	Timeout Duration `yaml:"timeout"`
}

// NodeNameOrHost returns node_name, or the host name when it is empty.
func (c *Cluster) NodeNameOrHost() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "rustygate"
}

// Enabled reports whether the gateway runs as a cluster member.
func (c *Cluster) Enabled() bool { return len(c.Redis.Addrs) > 0 }

// clusterDefaults fills the cluster section's defaults when the section
// is on.
func clusterDefaults(c *Config, unset func(string) bool) {
	cl := &c.Cluster
	if !cl.Enabled() {
		return
	}
	setString(&cl.Redis.Mode, RedisStandalone)
	setDuration(&cl.Redis.Timeout, defaultClusterTimeout, unset("cluster.redis.timeout"))
	setString(&cl.KeyPrefix, defaultClusterKeyPrefix)
	if cl.Redis.TLS != nil {
		setString(&cl.Redis.TLS.MinVersion, defaultTLSMinVersion)
	}
}

// validateCluster checks the cluster section. A section that sets keys
// but no address would silently do nothing: it is refused.
func validateCluster(c *Config, st *vstate) {
	cl := &c.Cluster
	r := &cl.Redis
	if !cl.Enabled() {
		if !reflect.DeepEqual(*cl, Cluster{}) {
			st.add("cluster.redis.addrs", "is required: cluster mode is on only with the address of Redis")
		}
		return
	}
	for i, a := range r.Addrs {
		if msg := checkRedisAddr(a); msg != "" {
			st.add(fmt.Sprintf("cluster.redis.addrs[%d]", i), "%s", msg)
		}
	}
	if !oneOf(r.Mode, RedisStandalone, RedisSentinel, RedisCluster) {
		st.add("cluster.redis.mode", "unknown mode %q (supported: %s, %s, %s)", r.Mode, RedisStandalone, RedisSentinel, RedisCluster)
	}
	switch {
	case r.Mode == RedisSentinel && r.MasterName == "" && cl.Enabled():
		st.add("cluster.redis.master_name", "is required with mode sentinel")
	case r.Mode != RedisSentinel && r.MasterName != "":
		st.add("cluster.redis.master_name", "applies only to mode sentinel (mode is %s)", r.Mode)
	}
	switch {
	case r.DB < 0:
		st.add("cluster.redis.db", "must be 0 or more (got %d)", r.DB)
	case r.DB != 0 && r.Mode == RedisCluster:
		st.add("cluster.redis.db", "must be 0 with mode cluster (Redis Cluster has only database 0)")
	}
	if r.Timeout <= 0 || r.Timeout > maxClusterTimeout {
		st.add("cluster.redis.timeout", "must be between 1ms and %s (got %s)", maxClusterTimeout, r.Timeout)
	}
	if strings.ContainsFunc(r.Username, isControl) || strings.ContainsFunc(r.Password, isControl) {
		st.add("cluster.redis", "username and password must not contain control characters")
	}
	if r.TLS != nil {
		checkBackendTLS(r.TLS, "cluster.redis.tls", st)
		checkBackendTLSPair(r.TLS, r.TLS, nil, "cluster.redis.tls", "", st)
	}
	if strings.ContainsFunc(cl.NodeName, isSpaceOrControl) || len(cl.NodeName) > 253 {
		st.add("cluster.node_name", "must be at most 253 characters without spaces or control characters (got %q)", cl.NodeName)
	}
	if cl.KeyPrefix == "" || strings.ContainsFunc(cl.KeyPrefix, isSpaceOrControl) || strings.ContainsAny(cl.KeyPrefix, "{}") {
		st.add("cluster.key_prefix", "must be non-empty, without spaces, control characters or braces (got %q)", cl.KeyPrefix)
	}
}

// checkRedisAddr checks one host:port address of Redis.
func checkRedisAddr(a string) string {
	host, port, err := net.SplitHostPort(a)
	switch {
	case err != nil:
		return fmt.Sprintf("invalid address %q (want host:port)", a)
	case host == "":
		return fmt.Sprintf("missing host in %q", a)
	case !validIP(host) && !validHostname(asciiLower(host), false):
		return fmt.Sprintf("invalid host %q in %q", host, a)
	}
	if _, ok := parsePort(port); !ok {
		return fmt.Sprintf("invalid port %q in %q (want 1-65535)", port, a)
	}
	return ""
}
