// Package e2e_test runs the rustygate binary as a separate process and
// checks its behaviour over real sockets, against both HTTP/1.1 engines.
package e2e_test

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
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// gatewayBin is the rustygate binary built once by TestMain.
var gatewayBin string

// engines are the configurations every behaviour test runs on: the fast
// engine on event loops (the default), the fast engine with a goroutine
// per connection, and net/http.
var engines = []string{"fast", "fast-goroutines", "standard"}

// engineYAML is the server settings (block style, under server:) of an
// entry of engines.
func engineYAML(engine string) string {
	if engine == "fast-goroutines" {
		return "engine: fast\n  event_loops: \"off\""
	}
	return "engine: " + engine
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rustygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	gatewayBin = filepath.Join(dir, "rustygate")
	if err := buildGateway(gatewayBin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building rustygate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func buildGateway(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, "github.com/rustygate/rustygate/cmd/rustygate")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v\n%s", err, stderr.String())
	}
	return nil
}

// forEachEngine runs f as one subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}

// logBuffer collects the gateway's stderr; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gateway is one running rustygate process.
type gateway struct {
	t      testing.TB
	addr   string // proxy listener, host:port
	cfg    string // config file path
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
	err    error // cmd.Wait's result, valid once exited is closed

	termSent atomic.Bool
	stopOnce sync.Once
	code     int
}

// gatewayConfig returns a configuration for engine with the given routes
// section (YAML list items, indented by two spaces).
func gatewayConfig(engine, routes string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
admin:
  listen: "off"
log:
  format: json
  level: info
  access: true
routes:
%s`, anyPort, engineYAML(engine), routes)
}

// simpleRoutes routes /api/test to backend.
func simpleRoutes(backend string) string {
	return fmt.Sprintf("  - path: \"/api/test\"\n    backend: %q\n", backend)
}

// anyPort is the listen address the configurations use: port 0, the
// real port being read from the startup line.
const anyPort = `"127.0.0.1:0"`

// startGateway writes yaml to a file, runs the gateway on it and waits
// for the startup line, which gives the real address of a "127.0.0.1:0"
// listener. The process is stopped with SIGTERM at cleanup.
func startGateway(t testing.TB, engine, yaml string) *gateway {
	t.Helper()
	return startGatewayVia(t, engine, yaml)
}

// startGatewayVia is startGateway with the gateway run through a wrapper
// command (such as "ip netns exec NAME"), which must exec it.
func startGatewayVia(t testing.TB, engine, yaml string, wrapper ...string) *gateway {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "rustygate.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, cfg: cfg, logs: &logBuffer{}, exited: make(chan struct{})}
	argv := append(wrapper, gatewayBin, "run", "-c", cfg)
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("gateway log (%s):\n%s", engine, g.logs.String())
		}
	})

	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, line := range g.lines() {
			if line["msg"] == "RustyGate started" {
				addr, _ := line["listen"].(string)
				if addr == "" {
					t.Fatalf("startup line without listen address: %v", line)
				}
				g.addr = addr
				return g
			}
		}
		select {
		case <-g.exited:
			t.Fatalf("gateway exited before starting: %v\n%s", g.err, g.logs.String())
		case <-deadline:
			t.Fatalf("gateway did not log its startup line within 10s:\n%s", g.logs.String())
		case <-tick.C:
		}
	}
}

// URL returns the gateway's base URL.
func (g *gateway) URL() string { return "http://" + g.addr }

// Signal sends sig to the process. After a SIGTERM, Stop only waits: a
// second SIGTERM would force the exit.
func (g *gateway) Signal(sig os.Signal) {
	if sig == syscall.SIGTERM {
		g.termSent.Store(true)
	}
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Errorf("signal %v: %v", sig, err)
	}
}

// Wait waits for the process to exit, killing it after timeout, and
// returns its exit code (-1 when killed or not exited normally).
func (g *gateway) Wait(timeout time.Duration) int {
	select {
	case <-g.exited:
	case <-time.After(timeout):
		g.t.Errorf("gateway did not exit within %v; killing it", timeout)
		g.cmd.Process.Kill()
		<-g.exited
	}
	return g.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM (once) and waits up to 5 s, killing after that.
func (g *gateway) Stop() int {
	g.stopOnce.Do(func() {
		select {
		case <-g.exited:
		default:
			if !g.termSent.Swap(true) {
				g.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		g.code = g.Wait(5 * time.Second)
	})
	return g.code
}

// lines parses every complete JSON line logged so far.
func (g *gateway) lines() []map[string]any {
	var out []map[string]any
	s := g.logs.String()
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// accessLine waits up to 3 s for the access line of request id.
func (g *gateway) accessLine(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, l := range g.lines() {
			if l["msg"] == "access" && l["request_id"] == id {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line with request_id %q in:\n%s", id, g.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newBackend starts an httptest server on 127.0.0.1, closed at cleanup.
func newBackend(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newClient returns an HTTP/1.1 client of its own, without compression,
// whose idle connections are closed at cleanup.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DisableCompression:    true,
		MaxIdleConnsPerHost:   8,
		ResponseHeaderTimeout: 10 * time.Second,
		// Long enough that a body waits for the gateway's 100 Continue.
		ExpectContinueTimeout: 3 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// do sends req and returns the response with its body read in full.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

// dialRaw opens a TCP connection with an overall deadline of d; it is
// closed at cleanup.
func dialRaw(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(d))
	t.Cleanup(func() { c.Close() })
	return c
}

// readHead reads a raw response head: the status line and the header
// fields exactly as sent (no hop-by-hop processing).
func readHead(br *bufio.Reader) (status string, hdr textproto.MIMEHeader, err error) {
	tp := textproto.NewReader(br)
	status, err = tp.ReadLine()
	if err != nil {
		return "", nil, err
	}
	hdr, err = tp.ReadMIMEHeader()
	if err != nil {
		return status, hdr, err
	}
	return status, hdr, nil
}

// errorBody is the JSON body of a response the gateway produced itself.
type errorBody struct {
	Error     string `json:"error"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

// checkErrorResponse checks a gateway-made JSON error response.
func checkErrorResponse(t *testing.T, resp *http.Response, body []byte, status int) errorBody {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var eb errorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %q is not the expected JSON: %v", body, err)
	}
	if eb.Status != status {
		t.Errorf("body status %d, want %d", eb.Status, status)
	}
	if eb.Error == "" {
		t.Errorf("body %q has no error message", body)
	}
	if eb.RequestID == "" {
		t.Errorf("body %q has no request_id", body)
	}
	if got := resp.Header.Get("X-Request-Id"); got != eb.RequestID {
		t.Errorf("X-Request-Id header %q, body request_id %q", got, eb.RequestID)
	}
	return eb
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// rawBackend is a TCP listener on 127.0.0.1 whose connections are
// served by handle; it is closed, and its handlers waited for, at cleanup.
type rawBackend struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newRawBackend(t *testing.T, handle func(c net.Conn)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln}
	rb.wg.Add(1)
	go func() {
		defer rb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.wg.Add(1)
			go func() {
				defer rb.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rb.wg.Wait()
	})
	return rb
}

func (rb *rawBackend) URL() string { return "http://" + rb.ln.Addr().String() }

// readAllRaw reads from c until EOF, a reset or the deadline. closed
// reports whether the peer closed the connection (EOF or reset).
func readAllRaw(c net.Conn) (data []byte, closed bool, err error) {
	data, err = io.ReadAll(c)
	switch {
	case err == nil:
		return data, true, nil
	case errors.Is(err, syscall.ECONNRESET):
		return data, true, nil
	}
	return data, false, err
}
