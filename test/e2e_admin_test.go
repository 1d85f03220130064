package e2e_test

// End-to-end tests of the admin listener: what is open and what needs the
// token, the token file, the loopback default, and /livez and /readyz
// through a drain.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminConfig writes a configuration with the given admin section (YAML
// lines under admin:, indented by two spaces) and server lines, one route
// /api to backend, into a directory of its own.
func adminConfig(t *testing.T, server, admin, backend string) string {
	t.Helper()
	yaml := fmt.Sprintf("server:\n  listen: \"127.0.0.1:0\"\n  engine: fast\n  shutdown_timeout: 5s\n%s"+
		"admin:\n%s"+
		"log:\n  format: json\n  access: false\n"+
		"routes:\n  - name: api\n    path: /api\n    backend: %q\n", server, admin, backend)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// adminGet sends GET url with token as a bearer token ("" for none) and
// returns the status and body.
func adminGet(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, body := do(t, c, req)
	return resp.StatusCode, string(body)
}

type adminCase struct {
	path, token string
	want        int
}

func checkAdmin(t *testing.T, c *http.Client, admin string, cases []adminCase) {
	t.Helper()
	for _, tc := range cases {
		if got, body := adminGet(t, c, "http://"+admin+tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s (token %q): %d, want %d; body %.200q", tc.path, tc.token, got, tc.want, body)
		}
	}
}

// TestAdminEndpointsNeedToken: the profiler is off by default and, when
// on, needs the token; /metrics needs it only with metrics_auth; the
// probes are always open.
func TestAdminEndpointsNeedToken(t *testing.T) {
	be := hrPathBackend(t, "be")
	const tok = "admin-e2e-token-42"
	t.Run("defaults", func(t *testing.T) {
		p := hrStart(t, adminConfig(t, "", "  listen: \"127.0.0.1:0\"\n  token: "+tok+"\n", be))
		checkAdmin(t, newClient(t), p.admin, []adminCase{
			{"/debug/pprof/", "", 404}, {"/debug/pprof/", tok, 404}, {"/debug/pprof/cmdline", tok, 404},
			{"/metrics", "", 200}, {"/livez", "", 200}, {"/healthz", "", 200}, {"/readyz", "", 200},
			{"/admin/bans", "", 401},
		})
	})
	t.Run("pprof and metrics_auth", func(t *testing.T) {
		p := hrStart(t, adminConfig(t, "", "  listen: \"127.0.0.1:0\"\n  token: "+tok+"\n  pprof: true\n  metrics_auth: true\n", be))
		c := newClient(t)
		checkAdmin(t, c, p.admin, []adminCase{
			{"/debug/pprof/", "", 401}, {"/debug/pprof/", "wrong", 401}, {"/debug/pprof/", tok, 200},
			{"/debug/pprof/cmdline", "", 401}, {"/debug/pprof/cmdline", tok, 200},
			{"/debug/pprof/heap?debug=1", "", 401}, {"/debug/pprof/heap?debug=1", tok, 200},
			{"/metrics", "", 401}, {"/metrics", tok, 200},
			{"/livez", "", 200}, {"/readyz", "", 200},
		})
		if _, body := adminGet(t, c, "http://"+p.admin+"/metrics", tok); !strings.Contains(body, "rustygate_build_info") {
			t.Errorf("/metrics with the token lacks rustygate_build_info")
		}
	})
}

// TestAdminTokenFile: the token comes from a file, trailing newline
// trimmed, read again at reload; an unreadable file stops the start with
// file:line.
func TestAdminTokenFile(t *testing.T) {
	be := hrPathBackend(t, "be")
	tokFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokFile, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := adminConfig(t, "", "  listen: \"127.0.0.1:0\"\n  token_file: "+tokFile+"\n", be)
	p := hrStart(t, cfg)
	c := newClient(t)
	checkAdmin(t, c, p.admin, []adminCase{{"/admin/bans", "", 401}, {"/admin/bans", "first-token", 200}})

	if err := os.WriteFile(tokFile, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("SIGHUP after rotating the token file: %v", l)
	}
	checkAdmin(t, c, p.admin, []adminCase{{"/admin/bans", "first-token", 401}, {"/admin/bans", "second-token", 200}})

	bad := adminConfig(t, "", "  listen: \"127.0.0.1:0\"\n  token_file: "+tokFile+".missing\n", be)
	code, _, stderr := runGateway(t, bad)
	want := bad + ":7: admin.token_file: cannot read the admin token: open " + tokFile + ".missing: no such file or directory"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("start with a missing token file: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// runGateway runs the gateway on cfg to completion (it must exit by
// itself within 10 s) and returns its exit code and output.
func runGateway(t *testing.T, cfg string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBin, "run", "-c", cfg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running the gateway: %v", err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestAdminDefaultListenLoopback: without admin.listen the admin
// listener is bound to 127.0.0.1:8081 and is not reachable on another
// address of the host (127.0.0.2, also loopback, stands for one).
func TestAdminDefaultListenLoopback(t *testing.T) {
	be := hrPathBackend(t, "be")
	cfg := adminConfig(t, "", "  token: x\n", be)
	var p *hrProc
	// Another program may hold 8081 for a moment: wait for the port.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:8081")
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port 8081 stayed busy for 20s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p = hrStart(t, cfg)
	if p.admin != "127.0.0.1:8081" {
		t.Fatalf("admin bound to %q, want 127.0.0.1:8081", p.admin)
	}
	checkAdmin(t, newClient(t), p.admin, []adminCase{{"/livez", "", 200}})
	c, err := net.DialTimeout("tcp", "127.0.0.2:8081", time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("the default admin listener accepts on 127.0.0.2:8081: it is not bound to loopback only")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial 127.0.0.2:8081: %v, want connection refused", err)
	}
}

// TestReadyzDrain: on SIGTERM /readyz turns 503 at once while the proxy
// listener still accepts for server.drain_delay; then the listener closes
// while a request in flight finishes, /livez and /readyz (503) still
// answering; the process exits 0.
func TestReadyzDrain(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}).URL
	p := hrStart(t, adminConfig(t, "  drain_delay: 3s\n", "  listen: \"127.0.0.1:0\"\n", be))
	c := newClient(t)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	checkAdmin(t, c, p.admin, []adminCase{{"/readyz", "", 200}, {"/livez", "", 200}})

	slow := make(chan string, 1)
	go func() {
		resp, err := fresh.Get(p.url() + "/api/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-arrived
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	p.signal(syscall.SIGTERM)
	sent := time.Now()
	hrPoll(t, fresh, "http://"+p.admin+"/readyz", 503, 2*time.Second)
	notReady := time.Since(sent)
	// The listener must still accept: load balancers see the 503 first.
	resp, err := fresh.Get(p.url() + "/api/new")
	if err != nil {
		t.Fatalf("a new connection after /readyz turned 503 (%v after SIGTERM) failed: %v", notReady, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "done /api/new" {
		t.Fatalf("a new request during the drain delay: %d %q", resp.StatusCode, body)
	}
	closed := waitRefused(t, p.addr, 8*time.Second)
	if d := closed.Sub(sent); d < 2500*time.Millisecond {
		t.Errorf("the listener closed %v after SIGTERM; want after the 3s drain_delay", d)
	}
	// Draining: the request in flight holds the process; the probes answer.
	checkAdmin(t, c, p.admin, []adminCase{{"/readyz", "", 503}, {"/livez", "", 200}})
	close(release)
	if got := <-slow; got != "200 done /api/slow" {
		t.Errorf("the request in flight: %s", got)
	}
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	t.Logf("readyz 503 %v after SIGTERM; listener closed %v after", notReady.Round(time.Millisecond), closed.Sub(sent).Round(time.Millisecond))
}

// waitRefused dials addr until the connection is refused and returns
// when that was first seen.
func waitRefused(t *testing.T, addr string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return time.Now()
			}
			t.Fatalf("dial %s: %v", addr, err)
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still accepted connections %v later", addr, timeout)
	return time.Time{}
}
