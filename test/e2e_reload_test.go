package e2e_test

// End-to-end tests of configuration hot reload (file watcher, SIGHUP and
// POST /admin/reload), graceful shutdown and the zero-downtime binary
// upgrade.
//
// These tests run the gateway through a harness of their own (hrProc)
// rather than startGateway: the configuration file must sit at a path
// the test chooses (a Kubernetes-style symlink, a directory holding
// nothing else), and the process log goes to a file outside that
// directory, so that log writes are not file-watcher events and so that
// a process started by a binary upgrade, which inherits the log, does
// not keep a pipe of the test open.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hrEngine is the engine of the tests that do not run on both.
const hrEngine = "fast"

// hrToken is the admin token of the configurations that enable
// POST /admin/reload.
const hrToken = "e2e-reload-token-0123456789"

// hrCfg describes one configuration file.
type hrCfg struct {
	engine  string
	listen  string // "" means 127.0.0.1:0
	admin   string // "" means off
	token   string
	version string // written as a comment, so that every version differs
	routes  string // YAML list items, see hrRoute
	extra   string // raw YAML appended at the end
}

func (c hrCfg) yaml() string {
	listen, admin := c.listen, c.admin
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if admin == "" {
		admin = "off"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# e2e reload test, version %s\n", c.version)
	fmt.Fprintf(&b, "server:\n  listen: %q\n  %s\n  shutdown_timeout: 5s\n", listen, engineYAML(c.engine))
	fmt.Fprintf(&b, "admin:\n  listen: %q\n", admin)
	if c.token != "" {
		fmt.Fprintf(&b, "  token: %q\n", c.token)
	}
	b.WriteString("log:\n  format: json\n  level: info\n  access: false\n")
	b.WriteString("routes:\n")
	b.WriteString(c.routes)
	b.WriteString(c.extra)
	return b.String()
}

// hrRoute is a route list item; each extra line is a field of the route.
func hrRoute(name, path, backend string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    path: %q\n    backend: %q\n", name, path, backend)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// hrWrite writes a file the way editors save: a temporary file in the
// same directory, renamed over the target.
func hrWrite(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// hrConfigFile writes c to config.yaml in a directory of its own and
// returns the file's path.
func hrConfigFile(t *testing.T, c hrCfg) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(c.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// hrProc is one gateway process started by the test.
type hrProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	pid     int
	cfg     string
	logPath string
	addr    string // proxy listener from the startup line
	admin   string // admin listener from the startup line, or "off"

	exited   chan struct{}
	termSent atomic.Bool
	stopOnce sync.Once
	code     int
}

// hrStart runs the gateway on the configuration at cfg and waits for its
// startup line. At cleanup the process is stopped (SIGTERM, then SIGKILL
// after 5 s) and, when the test failed, its log is printed.
func hrStart(t *testing.T, cfg string) *hrProc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "gateway.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &hrProc{t: t, cfg: cfg, logPath: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command(gatewayBin, "run", "-c", cfg)
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	err = p.cmd.Start()
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("gateway log (pid %d and the processes it started):\n%s", p.pid, p.logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if l := p.startLine(p.pid); l != nil {
			p.addr, _ = l["listen"].(string)
			p.admin, _ = l["admin"].(string)
			if p.addr == "" {
				t.Fatalf("startup line without a listen address: %v", l)
			}
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("gateway exited before starting (code %d):\n%s", p.cmd.ProcessState.ExitCode(), p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no startup line within 10s:\n%s", p.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *hrProc) url() string { return "http://" + p.addr }

// startLine returns the startup line logged by process pid, if any.
func (p *hrProc) startLine(pid int) map[string]any {
	for _, l := range p.lines(0) {
		if l["msg"] == "RustyGate started" && hrInt(l["pid"]) == pid {
			return l
		}
	}
	return nil
}

func hrInt(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func (p *hrProc) logs() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	return string(b)
}

// lines parses the JSON log lines, skipping the first from.
func (p *hrProc) lines(from int) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(p.logs(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	if from > len(out) {
		return nil
	}
	return out[from:]
}

func (p *hrProc) lineCount() int { return len(p.lines(0)) }

// waitLine waits up to timeout for a line after the first from that
// matches.
func (p *hrProc) waitLine(t *testing.T, from int, timeout time.Duration, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range p.lines(from) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	hrMsgReloaded = "Config reloaded"
	hrMsgFailed   = "config reload failed; keeping the running configuration"
)

// hrIsReload matches the outcome line of a reload from source.
func hrIsReload(source string) func(map[string]any) bool {
	return func(l map[string]any) bool {
		return (l["msg"] == hrMsgReloaded || l["msg"] == hrMsgFailed) && l["source"] == source
	}
}

// sighup sends SIGHUP and returns the outcome line of that reload.
func (p *hrProc) sighup(t *testing.T) map[string]any {
	t.Helper()
	from := p.lineCount()
	p.signal(syscall.SIGHUP)
	return p.waitLine(t, from, 5*time.Second, "for the SIGHUP reload", hrIsReload("SIGHUP"))
}

func (p *hrProc) signal(sig syscall.Signal) {
	if sig == syscall.SIGTERM {
		p.termSent.Store(true)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Errorf("signal %v: %v", sig, err)
	}
}

// wait waits up to timeout for the process to exit (killing it after
// that) and returns its exit code, -1 when killed.
func (p *hrProc) wait(timeout time.Duration) int {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Errorf("gateway pid %d did not exit within %v; killing it", p.pid, timeout)
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *hrProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM (unless sent already) and waits up to 5 s.
func (p *hrProc) stop() int {
	p.stopOnce.Do(func() {
		if p.running() && !p.termSent.Swap(true) {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		p.code = p.wait(5 * time.Second)
	})
	return p.code
}

// hrAlive reports whether pid is a live (not zombie) rustygate process.
func hrAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return bytes.Contains(cmdline, []byte(gatewayBin))
}

// hrWaitGone waits up to timeout for pid to be gone.
func hrWaitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for hrAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// killUpgradedLater stops, at cleanup, every process the log says a
// binary upgrade of p started.
func (p *hrProc) killUpgradedLater(t *testing.T) {
	t.Cleanup(func() {
		for _, l := range p.lines(0) {
			if l["msg"] == "binary upgrade: new process started" {
				pid := hrInt(l["pid"])
				if pid <= 0 || !hrAlive(pid) {
					continue
				}
				syscall.Kill(pid, syscall.SIGTERM)
				if !hrWaitGone(pid, 5*time.Second) {
					t.Errorf("upgraded gateway pid %d did not exit within 5s of SIGTERM; killing it", pid)
					syscall.Kill(pid, syscall.SIGKILL)
					hrWaitGone(pid, 2*time.Second)
				}
			}
		}
	})
}

// hrReloadResp is the JSON body of POST /admin/reload.
type hrReloadResp struct {
	Status  string   `json:"status"`
	Routes  int      `json:"routes"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"`
	Errors  []string `json:"errors"`
	Error   string   `json:"error"`
}

// hrPostReload sends POST /admin/reload with the given Authorization value
// ("" for none).
func hrPostReload(t *testing.T, c *http.Client, admin, auth string) (*http.Response, hrReloadResp, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+admin+"/admin/reload", nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, body := do(t, c, req)
	var r hrReloadResp
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("POST /admin/reload: status %d, body %q is not JSON: %v", resp.StatusCode, body, err)
	}
	return resp, r, body
}

// hrAdminReload forces a reload that must succeed or fail as wantOK says.
func hrAdminReload(t *testing.T, c *http.Client, p *hrProc, wantOK bool) hrReloadResp {
	t.Helper()
	resp, r, body := hrPostReload(t, c, p.admin, "Bearer "+hrToken)
	want, wantStatus := http.StatusOK, "reloaded"
	if !wantOK {
		want, wantStatus = http.StatusUnprocessableEntity, "invalid"
	}
	if resp.StatusCode != want || r.Status != wantStatus {
		t.Fatalf("POST /admin/reload: status %d, body %s; want %d %q", resp.StatusCode, body, want, wantStatus)
	}
	return r
}

// hrMetric returns the value of one series of the admin /metrics.
func hrMetric(t *testing.T, c *http.Client, admin, series string) float64 {
	t.Helper()
	resp, body := get(t, c, "http://"+admin+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}

// hrReloadCounts returns the success and failure reload counters.
func hrReloadCounts(t *testing.T, c *http.Client, admin string) (ok, fail float64) {
	t.Helper()
	return hrMetric(t, c, admin, `rustygate_config_reloads_total{result="success"}`),
		hrMetric(t, c, admin, `rustygate_config_reloads_total{result="failure"}`)
}

// hrExpect GETs url and checks the status (and the body when want
// is 200 and wantBody is not empty).
func hrExpect(t *testing.T, c *http.Client, url string, want int, wantBody string) {
	t.Helper()
	resp, body := get(t, c, url)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d, want %d; body %q", url, resp.StatusCode, want, body)
	}
	if want == http.StatusOK && wantBody != "" && string(body) != wantBody {
		t.Fatalf("GET %s: body %q, want %q", url, body, wantBody)
	}
}

// hrPoll GETs url until it answers want, for up to timeout, and
// returns how long that took.
func hrPoll(t *testing.T, c *http.Client, url string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	last := "no answer"
	for time.Since(start) < timeout {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Since(start)
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("GET %s did not answer %d within %v (last: %s)", url, want, timeout, last)
	return 0
}

// hrPathBackend answers 200 with "<name> <path>".
func hrPathBackend(t *testing.T, name string) string {
	t.Helper()
	return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name+" "+r.URL.Path)
	}).URL
}

// hrLoad is a set of clients sending GETs in a loop, each on a keep-alive
// connection of its own, counting every answer that is not a 200 with
// the expected body.
type hrLoad struct {
	stopc    chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	start    time.Time
	ok, bad  atomic.Int64
	mu       sync.Mutex
	failures []string
	trs      []*http.Transport
}

func hrStartLoad(t *testing.T, clients int, url, wantBody string) *hrLoad {
	t.Helper()
	l := &hrLoad{stopc: make(chan struct{}), start: time.Now()}
	for i := range clients {
		tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1, ResponseHeaderTimeout: 10 * time.Second}
		l.trs = append(l.trs, tr)
		c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				resp, err := c.Get(url)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				switch {
				case err != nil:
					l.fail(fmt.Sprintf("client %d at %v: %v", i, time.Since(l.start).Round(time.Millisecond), err))
				case resp.StatusCode != http.StatusOK || string(body) != wantBody:
					l.fail(fmt.Sprintf("client %d at %v: status %d, body %q", i, time.Since(l.start).Round(time.Millisecond), resp.StatusCode, body))
				default:
					l.ok.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *hrLoad) fail(s string) {
	l.bad.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, s)
	}
}

// finish stops the clients and waits for them.
func (l *hrLoad) finish() {
	l.once.Do(func() {
		close(l.stopc)
		l.wg.Wait()
		for _, tr := range l.trs {
			tr.CloseIdleConnections()
		}
	})
}

// check stops the load and reports failed requests.
func (l *hrLoad) check(t *testing.T, minOK int64) {
	t.Helper()
	l.finish()
	t.Logf("load: %d requests answered 200, %d failed, over %v", l.ok.Load(), l.bad.Load(), time.Since(l.start).Round(time.Millisecond))
	if n := l.bad.Load(); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d requests failed (of %d); first ones:\n  %s", n, n+l.ok.Load(), strings.Join(l.failures, "\n  "))
	}
	if l.ok.Load() < minOK {
		t.Errorf("only %d requests answered 200; want at least %d for the load to mean anything", l.ok.Load(), minOK)
	}
}

// TestReloadOnFileChange: an editor-style save (temporary file renamed
// over the config) and a Kubernetes ConfigMap update (..data symlink
// swapped) are both picked up within 1 s.
func TestReloadOnFileChange(t *testing.T) {
	be := hrPathBackend(t, "be")
	base := hrRoute("old", "/old", be)
	withNew := base + hrRoute("new", "/new", be)

	t.Run("rename", func(t *testing.T) {
		cfg := hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: base})
		p := hrStart(t, cfg)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
		hrExpect(t, c, p.url()+"/new/x", 404, "")

		from := p.lineCount()
		hrWrite(t, cfg, hrCfg{engine: hrEngine, version: "2", routes: withNew}.yaml())
		if d := hrPoll(t, c, p.url()+"/new/x", 200, 3*time.Second); d > time.Second {
			t.Errorf("the added route answered %v after the rename; want within 1s", d)
		}
		hrExpect(t, c, p.url()+"/new/x", 200, "be /new/x")
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
		l := p.waitLine(t, from, 2*time.Second, "Config reloaded", hrIsReload("file"))
		if l["msg"] != hrMsgReloaded || fmt.Sprint(l["added"]) != "[new]" || fmt.Sprint(l["removed"]) != "[]" {
			t.Errorf("reload line %v; want Config reloaded with added [new], removed []", l)
		}
	})

	t.Run("configmap symlink swap", func(t *testing.T) {
		dir := t.TempDir()
		// kubelet's layout: config.yaml -> ..data/config.yaml,
		// ..data -> ..<timestamp>/, swapped by renaming a new symlink
		// over ..data.
		publish := func(stamp, content string) {
			ts := filepath.Join(dir, "..2026_01_01_00_00_0"+stamp+".000000001")
			if err := os.Mkdir(ts, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ts, "config.yaml"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		removeOld := func(stamp string) {
			if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_0"+stamp+".000000001")); err != nil {
				t.Fatal(err)
			}
		}
		publish("1", hrCfg{engine: hrEngine, version: "1", routes: base}.yaml())
		cfg := filepath.Join(dir, "config.yaml")
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), cfg); err != nil {
			t.Fatal(err)
		}
		p := hrStart(t, cfg)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
		hrExpect(t, c, p.url()+"/new/x", 404, "")

		publish("2", hrCfg{engine: hrEngine, version: "2", routes: withNew}.yaml())
		if d := hrPoll(t, c, p.url()+"/new/x", 200, 3*time.Second); d > time.Second {
			t.Errorf("the added route answered %v after the ..data swap; want within 1s", d)
		}
		removeOld("1")
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")

		// A second swap proves the watch survived the first one.
		publish("3", hrCfg{engine: hrEngine, version: "3", routes: base}.yaml())
		if d := hrPoll(t, c, p.url()+"/new/x", 404, 3*time.Second); d > time.Second {
			t.Errorf("the removed route went away %v after the second ..data swap; want within 1s", d)
		}
		removeOld("2")
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
	})
}

// TestReloadInvalidConfig: a broken save keeps the running configuration
// and says why (log with file:line, failure counter, 422 from the admin
// endpoint); the fixed save is applied. The admin endpoint wants the
// token.
func TestReloadInvalidConfig(t *testing.T) {
	be := hrPathBackend(t, "be")
	good := hrCfg{engine: hrEngine, admin: "127.0.0.1:0", token: hrToken, version: "1", routes: hrRoute("old", "/old", be)}
	cfg := hrConfigFile(t, good)
	p := hrStart(t, cfg)
	c := newClient(t)
	hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
	const (
		failures  = `rustygate_config_reloads_total{result="failure"}`
		successes = `rustygate_config_reloads_total{result="success"}`
		lastOK    = `rustygate_config_last_reload_success_timestamp_seconds`
	)
	okBefore := hrMetric(t, c, p.admin, successes)
	tsBefore := hrMetric(t, c, p.admin, lastOK)
	if f := hrMetric(t, c, p.admin, failures); f != 0 {
		t.Errorf("%s = %g before any failure", failures, f)
	}

	broken := good
	broken.version = "2 (broken)"
	broken.routes += hrRoute("new", "/new", be, "bogus_key: 1")
	content := broken.yaml()
	line := slices.IndexFunc(strings.Split(content, "\n"), func(s string) bool { return strings.Contains(s, "bogus_key") }) + 1
	where := fmt.Sprintf("%s:%d:", cfg, line)

	from := p.lineCount()
	hrWrite(t, cfg, content)
	l := p.waitLine(t, from, 3*time.Second, "about the failed reload", hrIsReload("file"))
	if l["msg"] != hrMsgFailed {
		t.Fatalf("reload of a file with an unknown key logged %v; want %q", l, hrMsgFailed)
	}
	if msg, _ := l["error"].(string); !strings.Contains(msg, where) || !strings.Contains(msg, "bogus_key") {
		t.Errorf("failure line error %q does not name %s and the unknown key", msg, where)
	}
	if l["level"] != "ERROR" || l["file"] != cfg {
		t.Errorf("failure line %v: want level ERROR and file %s", l, cfg)
	}
	hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
	hrExpect(t, c, p.url()+"/new/x", 404, "")
	if f := hrMetric(t, c, p.admin, failures); f < 1 {
		t.Errorf("%s = %g after a failed reload, want >= 1", failures, f)
	}

	t.Run("admin 422", func(t *testing.T) {
		resp, r, body := hrPostReload(t, c, p.admin, "Bearer "+hrToken)
		if resp.StatusCode != http.StatusUnprocessableEntity || r.Status != "invalid" {
			t.Fatalf("status %d, body %s; want 422 with status \"invalid\"", resp.StatusCode, body)
		}
		if !slices.ContainsFunc(r.Errors, func(e string) bool { return strings.Contains(e, where) && strings.Contains(e, "bogus_key") }) {
			t.Errorf("errors %q do not name %s and the unknown key", r.Errors, where)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		if f := hrMetric(t, c, p.admin, failures); f < 2 {
			t.Errorf("%s = %g after two failed reloads, want >= 2", failures, f)
		}
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
	})

	// Reverting to the running file, then saving the same broken content
	// again, must report the error again.
	t.Run("same broken edit after a revert", func(t *testing.T) {
		hrWrite(t, cfg, good.yaml())
		// The revert changes nothing (the running content), so nothing
		// shows when the watcher has handled it: wait well past the
		// 200 ms debounce.
		time.Sleep(700 * time.Millisecond)
		fails := hrMetric(t, c, p.admin, failures)
		from := p.lineCount()
		hrWrite(t, cfg, content)
		l := p.waitLine(t, from, 3*time.Second, "about the broken file saved again", hrIsReload("file"))
		if l["msg"] != hrMsgFailed || !strings.Contains(fmt.Sprint(l["error"]), where) {
			t.Errorf("broken file saved again: logged %v; want %q naming %s", l, hrMsgFailed, where)
		}
		if f := hrMetric(t, c, p.admin, failures); f != fails+1 {
			t.Errorf("%s went from %g to %g for the broken file saved again, want +1", failures, fails, f)
		}
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
	})

	t.Run("fixed", func(t *testing.T) {
		fixed := good
		fixed.version = "3 (fixed)"
		fixed.routes += hrRoute("new", "/new", be)
		from := p.lineCount()
		hrWrite(t, cfg, fixed.yaml())
		l := p.waitLine(t, from, 3*time.Second, "about the reload of the fixed file", hrIsReload("file"))
		if l["msg"] != hrMsgReloaded || fmt.Sprint(l["added"]) != "[new]" {
			t.Fatalf("reload of the fixed file logged %v; want Config reloaded with added [new]", l)
		}
		hrExpect(t, c, p.url()+"/new/x", 200, "be /new/x")
		hrExpect(t, c, p.url()+"/old/x", 200, "be /old/x")
		// A forced reload of the same file succeeds and changes nothing.
		r := hrAdminReload(t, c, p, true)
		if r.Routes != 2 || len(r.Added)+len(r.Removed)+len(r.Changed) != 0 {
			t.Errorf("forced reload of an unchanged file: %+v; want 2 routes, nothing added, removed or changed", r)
		}
		if ok := hrMetric(t, c, p.admin, successes); ok < okBefore+2 {
			t.Errorf("%s = %g, want >= %g", successes, ok, okBefore+2)
		}
		if ts := hrMetric(t, c, p.admin, lastOK); ts <= tsBefore {
			t.Errorf("%s = %f, not after the start's %f", lastOK, ts, tsBefore)
		}
	})

	t.Run("token", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer wrong-token", "Basic " + hrToken, hrToken, "Bearer " + hrToken + "x"} {
			resp, r, body := hrPostReload(t, c, p.admin, auth)
			if resp.StatusCode != http.StatusUnauthorized || r.Error == "" {
				t.Errorf("Authorization %q: status %d, body %s; want 401 with an error", auth, resp.StatusCode, body)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("Authorization %q: 401 without WWW-Authenticate", auth)
			}
		}

		// Without admin.token the endpoint is disabled.
		q := hrStart(t, hrConfigFile(t, hrCfg{engine: hrEngine, admin: "127.0.0.1:0", version: "no token", routes: hrRoute("old", "/old", be)}))
		for _, auth := range []string{"", "Bearer " + hrToken} {
			resp, r, body := hrPostReload(t, c, q.admin, auth)
			if resp.StatusCode != http.StatusForbidden || r.Error == "" {
				t.Errorf("no admin.token, Authorization %q: status %d, body %s; want 403 with an error", auth, resp.StatusCode, body)
			}
		}
		if n := len(slices.DeleteFunc(q.lines(0), func(l map[string]any) bool { return !hrIsReload("admin")(l) })); n != 0 {
			t.Errorf("a refused POST /admin/reload reloaded (%d reload lines)", n)
		}
	})
}

// TestReloadUnderLoad: 100 reloads, valid and invalid, by SIGHUP, admin
// POST and file writes, while 16 clients send GETs to a route every valid
// version has: no request fails.
func TestReloadUnderLoad(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be1 := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }).URL
		be2 := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }).URL
		other := hrPathBackend(t, "other")
		// version returns configuration i: valid ones alternate between
		// two route sets (the stable route changes pools and timeouts
		// too); invalid ones have an unknown key, a bad backend URL or a
		// YAML syntax error.
		version := func(i int, valid bool) hrCfg {
			c := hrCfg{engine: engine, admin: "127.0.0.1:0", token: hrToken, version: strconv.Itoa(i)}
			if i%2 == 0 {
				c.routes = hrRoute("stable", "/stable", be1) + hrRoute("a", "/a", other)
			} else {
				c.routes = fmt.Sprintf("  - name: stable\n    path: \"/stable\"\n    backends: [ { url: %q }, { url: %q } ]\n    timeouts: { response_header: 4s }\n", be1, be2) +
					hrRoute("b", "/b", other)
			}
			if !valid {
				switch i % 3 {
				case 0:
					c.routes += "    bogus_key: true\n"
				case 1:
					c.routes += hrRoute("bad", "/bad", "ftp://127.0.0.1:1")
				default:
					c.extra = "middlewares: [\n"
				}
			}
			return c
		}
		cfg := hrConfigFile(t, version(0, true))
		p := hrStart(t, cfg)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/stable", 200, "stable")

		load := hrStartLoad(t, 16, p.url()+"/stable", "stable")
		const reloads = 100
		var nFile, nHUP, nPost, nInvalid int
		lastValid := 0
		dur := map[string]time.Duration{}
		for i := 1; i <= reloads; i++ {
			// How each reload is made, and whether the file is valid.
			kind, valid := "admin", true
			switch i % 10 {
			case 0:
				kind = "file"
				valid = i%20 == 0
			case 1, 4, 7, 9:
				kind = "SIGHUP"
				valid = i%10 != 7
			case 3, 6:
				valid = i%10 != 3
			}
			if valid {
				lastValid = i
			} else {
				nInvalid++
			}
			// The log is flushed every 100 ms; the reload counters tell
			// sooner that a SIGHUP or file reload happened.
			ok0, fail0 := hrReloadCounts(t, c, p.admin)
			t0 := time.Now()
			hrWrite(t, cfg, version(i, valid).yaml())
			switch kind {
			case "file":
				nFile++
			case "SIGHUP":
				nHUP++
				p.signal(syscall.SIGHUP)
			default:
				nPost++
				hrAdminReload(t, c, p, valid)
			}
			for {
				ok, fail := hrReloadCounts(t, c, p.admin)
				if ok+fail > ok0+fail0 {
					// (A reload always reads the file as it is, so even a
					// duplicate one, say the watcher's as well as the
					// SIGHUP's, has the validity of this version.)
					if (valid && (ok == ok0 || fail != fail0)) || (!valid && (fail == fail0 || ok != ok0)) {
						t.Fatalf("reload %d (%s, valid %v): success counter %g -> %g, failure counter %g -> %g", i, kind, valid, ok0, ok, fail0, fail)
					}
					break
				}
				if time.Since(t0) > 5*time.Second {
					t.Fatalf("reload %d (%s) did not happen within 5s", i, kind)
				}
				time.Sleep(2 * time.Millisecond)
			}
			dur[kind] += time.Since(t0)
			if load.bad.Load() > 0 {
				t.Errorf("requests failing after reload %d (%s, valid %v)", i, kind, valid)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		load.check(t, 500)
		t.Logf("%d reloads: %d by file, %d by SIGHUP, %d by admin POST; %d invalid; time %v", reloads, nFile, nHUP, nPost, nInvalid, dur)

		// The last valid version is the one serving.
		want, gone := "/a", "/b"
		if lastValid%2 == 1 {
			want, gone = gone, want
		}
		hrExpect(t, c, p.url()+want+"/x", 200, "other "+want+"/x")
		hrExpect(t, c, p.url()+gone+"/x", 404, "")
		oks, fails := hrReloadCounts(t, c, p.admin)
		if int(fails) < nInvalid || int(oks) < reloads-nInvalid+1 {
			t.Errorf("reload counters: %g failures, %g successes; want at least %d and %d (the start counts as one success)", fails, oks, nInvalid, reloads-nInvalid+1)
		}
		// Every reload logged its outcome (the log is flushed within 100 ms).
		var logged int
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			logged = len(slices.DeleteFunc(p.lines(0), func(l map[string]any) bool {
				return l["msg"] != hrMsgReloaded && l["msg"] != hrMsgFailed
			}))
			if logged >= reloads || time.Now().After(deadline) {
				break
			}
		}
		if logged < reloads {
			t.Errorf("%d reload outcome lines in the log, want %d", logged, reloads)
		}
	})
}

// TestReloadGracefulShutdown: SIGTERM lets 10 slow requests finish,
// refuses new connections, exits 0; a second signal forces the exit.
func TestReloadGracefulShutdown(t *testing.T) {
	t.Run("drain", func(t *testing.T) {
		const inFlight = 10
		var arrived atomic.Int32
		allIn := make(chan struct{})
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/slow") {
				io.WriteString(w, "fast")
				return
			}
			if arrived.Add(1) == inFlight {
				close(allIn)
			}
			select {
			case <-time.After(2 * time.Second):
				io.WriteString(w, "slow done")
			case <-r.Context().Done():
			}
		}).URL
		p := hrStart(t, hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: hrRoute("api", "/api", be)}))
		tr := &http.Transport{DisableCompression: true, ResponseHeaderTimeout: 10 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr, Timeout: 15 * time.Second}

		type result struct {
			status int
			body   string
			err    error
		}
		results := make(chan result, inFlight)
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(p.url() + "/api/slow")
				if err != nil {
					results <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				results <- result{status: resp.StatusCode, body: string(b), err: err}
			}()
		}
		select {
		case <-allIn:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d requests reached the backend", arrived.Load(), inFlight)
		}
		sent := time.Now()
		p.signal(syscall.SIGTERM)

		time.Sleep(200 * time.Millisecond)
		conn, err := net.DialTimeout("tcp", p.addr, time.Second)
		switch {
		case err != nil:
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("new connection 200ms after SIGTERM: %v; want connection refused", err)
			}
		default:
			// Accepted: then it must be answered.
			conn.SetDeadline(time.Now().Add(4 * time.Second))
			io.WriteString(conn, "GET /api/fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Errorf("connection accepted 200ms after SIGTERM but not answered: %v", err)
			} else {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "fast" {
					t.Errorf("connection accepted 200ms after SIGTERM: status %d, body %q", resp.StatusCode, body)
				}
				t.Logf("a connection 200ms after SIGTERM was accepted and answered")
			}
			conn.Close()
		}

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
		code := p.wait(time.Until(sent.Add(5 * time.Second)))
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
		logs := p.logs()
		for _, want := range []string{"shutting down gracefully", "shutdown complete"} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %q", want)
			}
		}
	})

	t.Run("second signal", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
		}).URL
		p := hrStart(t, hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: hrRoute("api", "/api", be)}))
		c := newClient(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := c.Get(p.url() + "/api/slow")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		t.Cleanup(func() { <-done })
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the request did not reach the backend")
		}
		from := p.lineCount()
		p.signal(syscall.SIGTERM)
		p.waitLine(t, from, 3*time.Second, "shutting down gracefully", func(l map[string]any) bool { return l["msg"] == "shutting down gracefully" })
		sent := time.Now()
		p.signal(syscall.SIGTERM)
		if code := p.wait(3 * time.Second); code != 1 {
			t.Errorf("exit code %d after a second SIGTERM, want 1", code)
		}
		if d := time.Since(sent); d > time.Second {
			t.Errorf("forced exit took %v", d)
		}
		if !strings.Contains(p.logs(), "forced exit") {
			t.Errorf("log lacks \"forced exit\"")
		}
	})
}

// TestReloadKeepsUpgradedConnection: a WebSocket-style tunnel keeps
// working across 10 reloads, some changing the route set.
func TestReloadKeepsUpgradedConnection(t *testing.T) {
	ws := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade expected", 400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(asciiUpper(buf[:n])); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}).URL
	api := hrPathBackend(t, "api")
	version := func(i int) hrCfg {
		c := hrCfg{engine: hrEngine, admin: "127.0.0.1:0", token: hrToken, version: strconv.Itoa(i)}
		c.routes = hrRoute("ws", "/ws", ws) + hrRoute("api", "/api", api)
		if i%2 == 1 {
			c.routes += hrRoute("extra", "/extra", api)
		}
		if i%4 == 3 {
			c.routes = strings.Replace(c.routes, hrRoute("ws", "/ws", ws), hrRoute("ws", "/ws", ws, "timeouts: { response_header: 3s }"), 1)
		}
		return c
	}
	cfg := hrConfigFile(t, version(0))
	p := hrStart(t, cfg)
	c := newClient(t)

	conn := dialRaw(t, p.addr, 20*time.Second)
	io.WriteString(conn, "GET /ws/chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _, err := readHead(br)
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("upgrade: status %q, err %v", status, err)
	}
	echo := func(round int) {
		t.Helper()
		msg := fmt.Sprintf("message %d \x00\xff", round)
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("round %d: the tunnel broke: %v (got %q)", round, err, got)
		}
		if want := asciiUpper([]byte(msg)); !bytes.Equal(got, want) {
			t.Fatalf("round %d: got %q, want %q", round, got, want)
		}
	}
	echo(0)
	for i := 1; i <= 10; i++ {
		hrWrite(t, cfg, version(i).yaml())
		if i%3 == 0 {
			if l := p.sighup(t); l["msg"] != hrMsgReloaded {
				t.Fatalf("SIGHUP reload %d: %v", i, l)
			}
		} else {
			r := hrAdminReload(t, c, p, true)
			if i%2 == 1 && !slices.Contains(r.Added, "extra") {
				t.Errorf("reload %d: added %q, want extra", i, r.Added)
			}
		}
		echo(i)
		wantExtra := 404
		if i%2 == 1 {
			wantExtra = 200
		}
		hrExpect(t, c, p.url()+"/extra/x", wantExtra, "")
		hrExpect(t, c, p.url()+"/api/x", 200, "api /api/x")
	}
	conn.(*net.TCPConn).CloseWrite()
	if rest, closed, err := readAllRaw(conn); !closed {
		t.Errorf("tunnel not closed after the client's half-close: %q, %v", rest, err)
	}
}

// TestReloadBinaryUpgrade: `rustygate upgrade -p PID` under load hands the
// listeners to a new process with no failed request; an upgrade whose new
// process cannot start leaves the old one serving.
func TestReloadBinaryUpgrade(t *testing.T) {
	t.Run("under load", func(t *testing.T) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }).URL
		p := hrStart(t, hrConfigFile(t, hrCfg{engine: hrEngine, admin: "127.0.0.1:0", token: hrToken, version: "1", routes: hrRoute("stable", "/stable", be)}))
		p.killUpgradedLater(t)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/stable", 200, "stable")
		_, proxyPort, _ := net.SplitHostPort(p.addr)
		_, adminPort, _ := net.SplitHostPort(p.admin)

		load := hrStartLoad(t, 8, p.url()+"/stable", "stable")
		time.Sleep(time.Second)
		from := p.lineCount()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, gatewayBin, "upgrade", "-p", strconv.Itoa(p.pid)).CombinedOutput()
		if err != nil {
			t.Fatalf("rustygate upgrade -p %d: %v: %s", p.pid, err, out)
		}
		l := p.waitLine(t, from, 5*time.Second, "binary upgrade: new process started", func(l map[string]any) bool {
			return l["msg"] == "binary upgrade: new process started"
		})
		newPid := hrInt(l["pid"])
		if newPid <= 0 || newPid == p.pid {
			t.Fatalf("new process pid %v in %v", l["pid"], l)
		}
		p.waitLine(t, from, 15*time.Second, "with the new process's startup", func(l map[string]any) bool {
			return l["msg"] == "RustyGate started" && hrInt(l["pid"]) == newPid
		})
		p.waitLine(t, from, 15*time.Second, "binary upgrade: new process serving", func(l map[string]any) bool {
			return strings.HasPrefix(fmt.Sprint(l["msg"]), "binary upgrade: new process serving") && hrInt(l["new_pid"]) == newPid
		})
		if code := p.wait(10 * time.Second); code != 0 {
			t.Errorf("old process exit code %d, want 0", code)
		}
		if s := p.startLine(newPid); s != nil && (s["listen"] != p.addr || s["admin"] != p.admin) {
			t.Errorf("new process listens on %v (admin %v); want the inherited %s (admin %s)", s["listen"], s["admin"], p.addr, p.admin)
		}
		// Keep the load on for ~3s in all, and a while after the old
		// process is gone.
		time.Sleep(max(500*time.Millisecond, time.Until(load.start.Add(3*time.Second))))
		load.check(t, 200)

		if !hrAlive(newPid) {
			t.Fatalf("new process %d is not running", newPid)
		}
		ports, err := listeningPorts(newPid)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ports, hrAtoi(t, proxyPort)) || !slices.Contains(ports, hrAtoi(t, adminPort)) {
			t.Errorf("new process listens on ports %v; want the proxy's %s and the admin's %s", ports, proxyPort, adminPort)
		}
		// The old process is gone, so these are the new one's answers.
		hrExpect(t, c, p.url()+"/stable", 200, "stable")
		hrExpect(t, c, "http://"+p.admin+"/healthz", 200, "ok\n")
		from = p.lineCount()
		hrAdminReload(t, c, p, true)
		p.waitLine(t, from, 2*time.Second, "for the admin reload in the new process", hrIsReload("admin"))
	})

	t.Run("new process fails", func(t *testing.T) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }).URL
		good := hrCfg{engine: hrEngine, version: "1", routes: hrRoute("stable", "/stable", be)}
		cfg := hrConfigFile(t, good)
		p := hrStart(t, cfg)
		p.killUpgradedLater(t)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/stable", 200, "stable")

		bad := good
		bad.version = "2 (broken)"
		bad.extra = "unknown_section: {}\n"
		from := p.lineCount()
		hrWrite(t, cfg, bad.yaml())
		p.waitLine(t, from, 3*time.Second, "for the failed file reload", hrIsReload("file"))

		from = p.lineCount()
		p.signal(syscall.SIGUSR2)
		l := p.waitLine(t, from, 10*time.Second, "binary upgrade failed", func(l map[string]any) bool {
			return strings.HasPrefix(fmt.Sprint(l["msg"]), "binary upgrade failed")
		})
		t.Logf("logged: %v", l)
		for _, l := range p.lines(from) {
			if l["msg"] == "binary upgrade: new process started" {
				if pid := hrInt(l["pid"]); !hrWaitGone(pid, 3*time.Second) {
					t.Errorf("the failed new process %d is still running", pid)
				}
			}
			if l["msg"] == "shutting down gracefully" {
				t.Errorf("the old process shuts down after a failed upgrade: %v", l)
			}
		}
		if !p.running() {
			t.Fatalf("the old process exited after a failed upgrade (code %d)", p.cmd.ProcessState.ExitCode())
		}
		for range 5 {
			hrExpect(t, c, p.url()+"/stable", 200, "stable")
		}
		// And it still reloads: the fixed file is applied.
		good.version = "3 (fixed)"
		good.routes += hrRoute("new", "/new", be)
		hrWrite(t, cfg, good.yaml())
		if l := p.sighup(t); l["msg"] != hrMsgReloaded {
			t.Errorf("SIGHUP after the failed upgrade: %v", l)
		}
		hrExpect(t, c, p.url()+"/new", 200, "stable")
		if code := p.stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
}

// TestReloadRepeatedUpgrade: an upgrade requested twice in a row (the
// second request arriving while the first is in progress) must not cut
// the old process's requests in flight: it still drains and exits 0.
func TestReloadRepeatedUpgrade(t *testing.T) {
	arrived := make(chan struct{}, 1)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/slow") {
			io.WriteString(w, "fast")
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-time.After(1500 * time.Millisecond):
			io.WriteString(w, "slow done")
		case <-r.Context().Done():
		}
	}).URL
	p := hrStart(t, hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: hrRoute("api", "/api", be)}))
	p.killUpgradedLater(t)
	c := newClient(t)

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get(p.url() + "/api/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach the backend")
	}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, gatewayBin, "upgrade", "-p", strconv.Itoa(p.pid)).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("rustygate upgrade -p %d: %v: %s", p.pid, err, out)
		}
	}
	select {
	case r := <-res:
		if r.err != nil || r.status != 200 || r.body != "slow done" {
			t.Errorf("request in flight in the old process: status %d, body %q, err %v; want 200 \"slow done\"", r.status, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not complete within 10s")
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("old process exit code %d, want 0 (it drains after the upgrade)", code)
	}
	for _, l := range p.lines(0) {
		if l["msg"] == "forced exit" {
			t.Errorf("the old process logged %v: the second upgrade request was taken as a second shutdown signal", l)
		}
	}
	// Whatever the second request did, a new process serves.
	hrExpect(t, c, p.url()+"/api/fast", 200, "fast")
}

func hrAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReloadKeepsState: a reload that does not touch a route keeps its
// backends' health verdicts, its rate-limit counters and its pooled
// backend connections.
func TestReloadKeepsState(t *testing.T) {
	sick := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "sick answered")
	})
	var accepted atomic.Int32
	pooled := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pooled") }))
	pooled.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	pooled.Start()
	t.Cleanup(pooled.Close)
	other := hrPathBackend(t, "other")

	routes := hrRoute("sick", "/sick", sick.URL,
		"health_check: { path: /health, interval: 100ms, timeout: 50ms, healthy_threshold: 2, unhealthy_threshold: 2 }") +
		hrRoute("limited", "/limited", other, "middlewares: [ { name: rate_limit, limit: 5, window: 60s } ]") +
		hrRoute("pooled", "/pooled", pooled.URL)
	version := func(i int) hrCfg {
		c := hrCfg{engine: hrEngine, admin: "127.0.0.1:0", token: hrToken, version: strconv.Itoa(i), routes: routes}
		if i > 0 {
			c.routes += hrRoute(fmt.Sprintf("extra%d", i), fmt.Sprintf("/extra%d", i), other)
		}
		return c
	}
	cfg := hrConfigFile(t, version(0))
	p := hrStart(t, cfg)
	c := newClient(t)

	isSick := func(msg string) func(map[string]any) bool {
		return func(l map[string]any) bool { return l["msg"] == msg && l["route"] == "sick" }
	}
	p.waitLine(t, 0, 5*time.Second, "backend down for the sick route", isSick("backend down"))
	hrExpect(t, c, p.url()+"/sick", 503, "")

	limited := func(n, want int) {
		t.Helper()
		resp, body := get(t, c, p.url()+"/limited/x")
		if resp.StatusCode != want {
			t.Fatalf("rate-limited route, request %d: status %d, want %d; body %q", n, resp.StatusCode, want, body)
		}
	}
	poolRound := func(round string) {
		t.Helper()
		for range 5 {
			hrExpect(t, c, p.url()+"/pooled", 200, "pooled")
		}
		t.Logf("%s: the pooled backend has accepted %d connections", round, accepted.Load())
	}
	for i := 1; i <= 4; i++ {
		limited(i, 200)
	}
	poolRound("before the reloads")
	conns := accepted.Load()

	hrWrite(t, cfg, version(1).yaml())
	r := hrAdminReload(t, c, p, true)
	if !slices.Equal(r.Added, []string{"extra1"}) || len(r.Changed)+len(r.Removed) != 0 {
		t.Errorf("reload 1: %+v; want only extra1 added", r)
	}
	limited(5, 200)
	poolRound("after reload 1")

	hrWrite(t, cfg, version(2).yaml())
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("reload 2: %v", l)
	}
	limited(6, 429)
	poolRound("after reload 2")
	if n := accepted.Load(); n != conns {
		t.Errorf("the pooled backend accepted %d connections after the reloads, %d before: the reloads did not reuse the pooled connections", n, conns)
	}

	// Several probe intervals after the reloads, the sick backend never
	// came up in between and was not marked down again.
	time.Sleep(600 * time.Millisecond)
	hrExpect(t, c, p.url()+"/sick", 503, "")
	if n := len(slices.DeleteFunc(p.lines(0), func(l map[string]any) bool { return !isSick("backend up")(l) })); n != 0 {
		t.Errorf("%d \"backend up\" lines for the sick route: the health verdict flapped across the reloads", n)
	}
	if n := len(slices.DeleteFunc(p.lines(0), func(l map[string]any) bool { return !isSick("backend down")(l) })); n != 1 {
		t.Errorf("%d \"backend down\" lines for the sick route, want 1: the health state was reset by a reload", n)
	}
}

// TestReloadListenAddress: a reload that changes server.listen moves the
// listener; connections opened on the old address go on.
func TestReloadListenAddress(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := hrPathBackend(t, "be")
		c0 := hrCfg{engine: engine, admin: "127.0.0.1:0", token: hrToken, version: "1", routes: hrRoute("api", "/api", be)}
		cfg := hrConfigFile(t, c0)
		p := hrStart(t, cfg)
		c := newClient(t)
		oldAddr := p.addr

		// A keep-alive connection on the old address, used before and
		// after the move.
		conn := dialRaw(t, oldAddr, 10*time.Second)
		br := bufio.NewReader(conn)
		keepAlive := func(n int) {
			t.Helper()
			path := fmt.Sprintf("/api/keepalive/%d", n)
			if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("request %d on the old connection: write: %v", n, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d on the old connection: %v", n, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != "be "+path {
				t.Fatalf("request %d on the old connection: status %d, body %q, err %v", n, resp.StatusCode, body, err)
			}
		}
		keepAlive(1)

		newAddr := closedAddr(t)
		c1 := c0
		c1.version, c1.listen = "2", newAddr
		hrWrite(t, cfg, c1.yaml())
		hrAdminReload(t, c, p, true)
		time.Sleep(100 * time.Millisecond)
		if !p.running() {
			t.Fatalf("the gateway exited after a reload moved server.listen from %s to %s (exit code %d)", oldAddr, newAddr, p.cmd.ProcessState.ExitCode())
		}

		hrExpect(t, c, "http://"+newAddr+"/api/x", 200, "be /api/x")
		// The old address stops accepting.
		deadline := time.Now().Add(2 * time.Second)
		for {
			nc, err := net.DialTimeout("tcp", oldAddr, time.Second)
			if err != nil {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("dial the old address: %v; want connection refused", err)
				}
				break
			}
			nc.Close()
			if time.Now().After(deadline) {
				t.Errorf("the old address %s still accepts connections 2s after the reload", oldAddr)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		keepAlive(2)
		keepAlive(3)
		hrExpect(t, c, "http://"+newAddr+"/api/y", 200, "be /api/y")
		if !p.running() {
			t.Fatalf("the gateway exited after the listen address moved (code %d)", p.cmd.ProcessState.ExitCode())
		}
		if n := strings.Count(p.logs(), `"listener failed"`); n != 0 {
			t.Errorf("the log reports a failed listener after the move")
		}
	})
}
