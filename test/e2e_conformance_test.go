package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tckRunner is the http-wasm TCK's standalone runner bundled with the
// tests (see conformance/http-wasm-tck/NOTICE), a linux/amd64 binary;
// $RUSTYGATE_HTTP_WASM_TCK names another one.
const tckRunner = "conformance/http-wasm-tck/http-wasm-tck"

// tckCases is the number of cases of the bundled runner: a run that
// passes fewer (a runner that ran nothing) fails too.
const tckCases = 35

// tckBackendLine is what `http-wasm-tck backend` prints once it listens.
var tckBackendLine = regexp.MustCompile(`Started backend server on (127\.0\.0\.1:[0-9]+)`)

// TestHTTPWasmTCK runs the official http-wasm conformance suite through
// the gateway, on every engine: the TCK's guest (a TinyGo WASI command)
// is the wasm middleware of a route to the TCK's backend (a configuration
// `rustygate validate` accepts), and the runner's requests go through the
// gateway. Every case must pass; a failure shows the runner's output.
func TestHTTPWasmTCK(t *testing.T) {
	runner := tckRunnerPath(t)
	guest := filepath.Join(t.TempDir(), "tck.wasm")
	if out, err := runTCK(runner, 30*time.Second, "extract-guest", guest); err != nil {
		t.Fatalf("http-wasm-tck extract-guest: %v\n%s", err, out)
	}
	backend := startTCKBackend(t, runner)
	forEachEngine(t, func(t *testing.T, engine string) {
		routes := fmt.Sprintf("  - path: \"/\"\n    backend: %q\n    middlewares: [ { name: wasm, path: %q } ]\n",
			"http://"+backend, guest)
		yaml := gatewayConfig(engine, routes)
		cfg := filepath.Join(t.TempDir(), "tck.yaml")
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, stdout, stderr := runValidate(t, cfg); code != 0 {
			t.Fatalf("validate refuses the TCK's guest: exit %d\n%s%s", code, stdout, stderr)
		}
		g := startGateway(t, engine, yaml)
		out, err := runTCK(runner, 2*time.Minute, "run", "-url", g.URL())
		passed := strings.Count(out, "--- PASS: TestTCK/")
		if err != nil || strings.Contains(out, "--- FAIL") || passed != tckCases {
			t.Fatalf("http-wasm TCK on engine %s: %d of %d cases passed (runner: %v); its output:\n%s",
				engine, passed, tckCases, err, out)
		}
		t.Logf("http-wasm TCK on engine %s: %d/%d cases passed", engine, passed, tckCases)
	})
}

// tckRunnerPath returns the runner to use: $RUSTYGATE_HTTP_WASM_TCK, or
// the bundled one, which only runs on linux/amd64.
func tckRunnerPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RUSTYGATE_HTTP_WASM_TCK"); p != "" {
		return p
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the bundled %s is a linux/amd64 binary; set RUSTYGATE_HTTP_WASM_TCK to a runner for %s/%s",
			tckRunner, runtime.GOOS, runtime.GOARCH)
	}
	p, err := filepath.Abs(tckRunner)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runTCK runs the runner with args, for at most timeout, and returns its
// output.
func runTCK(runner string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, runner, args...).CombinedOutput()
	return string(out), err
}

// startTCKBackend starts `http-wasm-tck backend` on a free loopback port
// and returns its address; the process is stopped at cleanup.
func startTCKBackend(t *testing.T, runner string) string {
	t.Helper()
	logs := &logBuffer{}
	cmd := exec.Command(runner, "backend", "-addr", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := tckBackendLine.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case <-exited:
			t.Fatalf("the TCK backend exited before listening:\n%s", logs.String())
		case <-deadline:
			t.Fatalf("the TCK backend did not start within 10s:\n%s", logs.String())
		case <-tick.C:
		}
	}
}
