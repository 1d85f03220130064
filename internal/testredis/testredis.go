// Package testredis starts real redis-server processes on loopback ports
// for tests: a standalone server, a Redis Cluster of three masters, or a
// master, a replica and a sentinel. Every process is stopped by
// t.Cleanup. Tests that use it need redis-server and redis-cli (Debian
// package redis-server); without them they fail, as CI installs them.
package testredis

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testnet"
)

// Server is one redis-server process (a data node or a sentinel).
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	wrap []string // command the processes run through, such as nsenter
	cmd  *exec.Cmd
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Start starts a standalone redis-server on a free loopback port.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, testnet.FreePortRange(t, "127.0.0.1", 1))
}

// StartVia starts a standalone redis-server on port through a wrapper
// command that execs it (such as "nsenter --net=PATH": the server then
// listens on that namespace's loopback).
func StartVia(t testing.TB, port int, wrapper ...string) *Server {
	t.Helper()
	return startVia(t, port, wrapper)
}

func start(t testing.TB, port int, extra ...string) *Server {
	t.Helper()
	return startVia(t, port, nil, extra...)
}

func startVia(t testing.TB, port int, wrapper []string, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is required (Debian package redis-server): %v", err)
	}
	dir := t.TempDir()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	s := &Server{t: t, Port: port, dir: dir, args: append([]string{bin}, args...), wrap: wrapper}
	s.run()
	t.Cleanup(s.Kill)
	return s
}

// run starts the process and waits until it answers PING.
func (s *Server) run() {
	s.t.Helper()
	argv := append(append([]string{}, s.wrap...), s.args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := s.CLI("PING"); err == nil && strings.TrimSpace(out) == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on port %d did not answer: %s", s.Port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the process at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the process again on the same port, with no data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.run()
}

// CLI runs redis-cli against the server.
func (s *Server) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	argv := append(append(append([]string{}, s.wrap...), "redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)), args...)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// Commands returns how many commands the server has run so far.
func (s *Server) Commands() int64 {
	out, _ := s.CLI("INFO", "stats")
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// StartCluster starts three masters joined in a Redis Cluster and
// returns them once every slot is served.
func StartCluster(t testing.TB) []*Server {
	t.Helper()
	// Data and bus ports side by side (the bus port is set, not port+10000).
	first := testnet.FreePortRange(t, "127.0.0.1", 6)
	nodes := make([]*Server, 3)
	addrs := make([]string, 3)
	for i := range nodes {
		nodes[i] = start(t, first+i, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(first+3+i),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs[i] = nodes[i].Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"--cluster", "create"}, append(addrs, "--cluster-yes")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "the cluster to be ok on every node", func() bool {
		for _, n := range nodes {
			if out, _ := n.CLI("CLUSTER", "INFO"); !strings.Contains(out, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
	return nodes
}

// Sentinel is a master, its replica and one sentinel watching them.
type Sentinel struct {
	Master, Replica, Sentinel *Server
	Name                      string
}

// StartSentinel starts a master, a replica of it and a sentinel that
// fails over after one second of silence (quorum 1).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	first := testnet.FreePortRange(t, "127.0.0.1", 3)
	m := start(t, first)
	r := start(t, first+1, "--replicaof", "127.0.0.1", strconv.Itoa(first))
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\nsentinel monitor rg 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds rg 1000\nsentinel failover-timeout rg 5000\nsentinel parallel-syncs rg 1\n", first+2, first)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, _ := exec.LookPath("redis-server")
	dir := filepath.Dir(conf)
	s := &Server{t: t, Port: first + 2, dir: dir, args: []string{bin, conf, "--sentinel", "--logfile", filepath.Join(dir, "redis.log")}}
	s.run()
	t.Cleanup(s.Kill)
	waitFor(t, 10*time.Second, "the replica to be in sync", func() bool {
		out, _ := r.CLI("INFO", "replication")
		return strings.Contains(out, "master_link_status:up")
	})
	waitFor(t, 10*time.Second, "the sentinel to know the replica", func() bool {
		out, _ := s.CLI("SENTINEL", "replicas", "rg")
		return bytes.Contains([]byte(out), []byte(strconv.Itoa(first+1)))
	})
	return &Sentinel{Master: m, Replica: r, Sentinel: s, Name: "rg"}
}

// MasterPort asks the sentinel which port the master is on now.
func (s *Sentinel) MasterPort() int {
	out, _ := s.Sentinel.CLI("SENTINEL", "get-master-addr-by-name", s.Name)
	f := strings.Fields(out)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
