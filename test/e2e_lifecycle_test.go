package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown: SIGTERM lets requests in flight complete and the
// process exits 0.
func TestGracefulShutdown(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		const inFlight = 3
		var arrived atomic.Int32
		allIn := make(chan struct{})
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if arrived.Add(1) == inFlight {
				close(allIn)
			}
			select {
			case <-time.After(time.Second):
				io.WriteString(w, "slow done")
			case <-r.Context().Done():
			}
		})
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		type result struct {
			status int
			body   string
			err    error
		}
		results := make(chan result, inFlight)
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(g.URL() + "/api/test/slow")
				if err != nil {
					results <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				results <- result{status: resp.StatusCode, body: string(b), err: err}
			}()
		}
		t.Cleanup(wg.Wait)
		select {
		case <-allIn:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d requests reached the backend", arrived.Load(), inFlight)
		}
		sent := time.Now()
		g.Signal(syscall.SIGTERM)
		for range inFlight {
			select {
			case r := <-results:
				if r.err != nil || r.status != 200 || r.body != "slow done" {
					t.Errorf("in-flight request: status %d, body %q, err %v", r.status, r.body, r.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("in-flight requests did not complete within 5s of SIGTERM")
			}
		}
		code := g.Stop()
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		if d := time.Since(sent); d > 3*time.Second {
			t.Errorf("shutdown took %v", d)
		}
		logs := g.logs.String()
		for _, want := range []string{"shutting down gracefully", "shutdown complete"} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %q", want)
			}
		}
	})
}

func runValidate(t *testing.T, path string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBin, "validate", path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running validate: %v", err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestValidate: `rustygate validate` accepts a good file and names the
// file and line of an unknown key.
func TestValidate(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		good := filepath.Join(dir, "good.yaml")
		cfg := gatewayConfig(engine, simpleRoutes("http://127.0.0.1:9")+`  - path: "/strip"
    strip_prefix: true
    backends: [ { url: "http://127.0.0.1:9/base" } ]
    host: "example.com"
    methods: [GET, POST]
    timeouts: { connect: 1s, response_header: 500ms }
`)
		if err := os.WriteFile(good, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runValidate(t, good)
		if code != 0 {
			t.Errorf("validate good file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}

		// The engine's settings take one line, or more (event_loops).
		extra := strings.Count(engineYAML(engine), "\n")
		line := func(n int) string { return fmt.Sprintf(":%d:", n+extra) }
		for _, tc := range []struct {
			name, yaml string
			line       string
		}{
			{"server key", strings.Replace(cfg, "  "+engineYAML(engine)+"\n", "  "+engineYAML(engine)+"\n  bogus_key: 1\n", 1), line(4)},
			{"route key", cfg + "    frobnicate: true\n", line(19)},
			{"top-level key", cfg + "extra_section: {}\n", line(19)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bad := filepath.Join(dir, "bad-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml")
				if err := os.WriteFile(bad, []byte(tc.yaml), 0o644); err != nil {
					t.Fatal(err)
				}
				code, stdout, stderr := runValidate(t, bad)
				if code == 0 {
					t.Fatalf("validate with an unknown key: exit 0, stdout %q", stdout)
				}
				msg := stdout + stderr
				if !strings.Contains(msg, bad+tc.line) {
					t.Errorf("message %q does not name %s%s", msg, bad, tc.line)
				}
			})
		}
	})
}
