package config

import (
	"strings"
	"testing"
	"time"
)

const clusterBase = "routes:\n  - { path: /a, backend: \"http://127.0.0.1:9000\" }\n"

func TestClusterDefaults(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(clusterBase+"cluster:\n  redis:\n    addrs: [\"127.0.0.1:6379\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Cluster
	if !cl.Enabled() || cl.Redis.Mode != RedisStandalone || cl.Redis.Timeout.D() != 10*time.Millisecond ||
		cl.KeyPrefix != "rustygate:" || cl.NodeNameOrHost() == "" {
		t.Errorf("defaults = %+v", cl)
	}
	off, err := Parse("c.yaml", []byte(clusterBase))
	if err != nil {
		t.Fatal(err)
	}
	if off.Cluster.Enabled() {
		t.Error("cluster enabled without addrs")
	}
}

func TestClusterErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"cluster:\n  redis:\n    addrs: [\"127.0.0.1\"]\n", `c.yaml:5: cluster.redis.addrs[0]: invalid address "127.0.0.1" (want host:port)`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    mode: ring\n", `c.yaml:6: cluster.redis.mode: unknown mode "ring"`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    mode: sentinel\n", `cluster.redis.master_name: is required with mode sentinel`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    master_name: m\n", `c.yaml:6: cluster.redis.master_name: applies only to mode sentinel`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    mode: cluster\n    db: 2\n", `c.yaml:7: cluster.redis.db: must be 0 with mode cluster`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    timeout: 0s\n", `c.yaml:6: cluster.redis.timeout: must be between 1ms and 10s`},
		{"cluster:\n  redis: { addrs: [\"a:1\"] }\n  key_prefix: \"a{b}\"\n", `c.yaml:5: cluster.key_prefix: must be non-empty`},
		{"cluster:\n  redis: { addrs: [\"a:1\"] }\n  node_name: \"a b\"\n", `c.yaml:5: cluster.node_name: must be at most 253 characters`},
		{"cluster:\n  node_name: a\n", `cluster.redis.addrs: is required`},
		{"cluster:\n  redis:\n    adresses: [\"a:1\"]\n", `c.yaml:5: unknown key "adresses"`},
		{"cluster:\n  redis:\n    addrs: [\"a:1\"]\n    tls: { min_version: \"1.1\" }\n", `c.yaml:6: cluster.redis.tls.min_version: unsupported version "1.1"`},
	}
	for _, c := range cases {
		_, err := Parse("c.yaml", []byte(clusterBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}
