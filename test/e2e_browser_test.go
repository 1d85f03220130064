package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// browserPage is the page the origin servers serve: it POSTs to the gateway
// with a custom header (so the browser sends a preflight) and reports the
// outcome with GET /report?result=<JSON>.
//
//go:embed browser/fetch.html
var browserPage []byte

// chromiumPath is where the Debian chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// browserPayload is what the backend of TestBrowser answers;
// browserLegacyPayload what its backend with CORS headers of its own does.
const (
	browserPayload       = `{"data":"from the backend"}`
	browserLegacyPayload = `{"data":"from the legacy backend"}`
)

// TestBrowser runs a real headless Chromium against the gateway: a page
// from an allowed origin can POST JSON to the gateway across origins and
// read the answer, a page from another origin cannot (the preflight is
// refused), and the gateway answers the preflights itself. The same holds
// when the backend sends a CORS header of its own: the route's policy
// decides, not the backend.
func TestBrowser(t *testing.T) {
	bin := chromiumBinary(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			rec.record(r)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Backend-Private", "not for the page")
			io.WriteString(w, browserPayload)
		})
		// A backend that does CORS itself, for any origin, as many do.
		legacy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, browserLegacyPayload)
		})
		originA, originB := newBrowserOrigin(t), newBrowserOrigin(t)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, fmt.Sprintf(`  - name: cors
    allow_origins: [%q]
    allow_methods: [GET, POST]
    allow_headers: [Content-Type, X-Custom]
    expose_headers: [X-Request-Id]
`, originA.URL()), fmt.Sprintf(`  - name: api
    path: "/api"
    backend: %q
  - name: legacy
    path: "/legacy"
    backend: %q
`, be.URL, legacy.URL)))
		// The browser talks to the gateway through a recorder of the raw
		// bytes, which shows the preflight answers as the gateway sent them.
		tap := newBrowserTap(t, g.addr)
		gatewayURL := "http://" + tap.Addr()

		t.Run("allowed origin", func(t *testing.T) {
			res := browserVisit(t, bin, originA, gatewayURL, nil)
			if !res.OK {
				t.Fatalf("the fetch from the allowed origin %s failed: %s %s", originA.URL(), res.Name, res.Error)
			}
			if res.Status != http.StatusOK || res.Body != browserPayload {
				t.Errorf("the page got status %d, body %q; want 200, %q", res.Status, res.Body, browserPayload)
			}
			if res.Exposed == nil || !hexID.MatchString(*res.Exposed) {
				t.Errorf("the page read X-Request-Id %s; want the request id (listed in Access-Control-Expose-Headers)", browserStr(res.Exposed))
			}
			if res.Hidden != nil {
				t.Errorf("the page read X-Backend-Private %q, which is not exposed", *res.Hidden)
			}

			pre := tap.find("OPTIONS", "/api/data", originA.URL())
			if len(pre) == 0 {
				t.Fatalf("the browser sent no preflight through the gateway; seen:\n%s", tap.describe())
			}
			for _, x := range pre {
				if m := x.req.Header.Get("Access-Control-Request-Method"); m != "POST" {
					t.Errorf("preflight Access-Control-Request-Method %q, want POST", m)
				}
				if h := x.req.Header.Get("Access-Control-Request-Headers"); !strings.Contains(strings.ToLower(h), "x-custom") {
					t.Errorf("preflight Access-Control-Request-Headers %q, want x-custom", h)
				}
				if x.resp == nil {
					t.Errorf("no answer to the preflight")
					continue
				}
				if x.resp.StatusCode != http.StatusNoContent {
					t.Errorf("preflight answered %d, want 204", x.resp.StatusCode)
				}
				if v := x.resp.Header.Get("Access-Control-Allow-Origin"); v != originA.URL() {
					t.Errorf("preflight Access-Control-Allow-Origin %q, want %q", v, originA.URL())
				}
				if !polHasToken(x.resp.Header, "Access-Control-Allow-Headers", "X-Custom") {
					t.Errorf("preflight Access-Control-Allow-Headers %q lacks X-Custom", x.resp.Header.Values("Access-Control-Allow-Headers"))
				}
			}
			posts := tap.find("POST", "/api/data", originA.URL())
			if len(posts) != 1 || posts[0].resp == nil {
				t.Fatalf("%d POSTs from the allowed origin, want 1 answered; seen:\n%s", len(posts), tap.describe())
			}
			if v := posts[0].resp.Header.Get("Access-Control-Allow-Origin"); v != originA.URL() {
				t.Errorf("POST Access-Control-Allow-Origin %q, want %q", v, originA.URL())
			}

			var got []seen
			for _, s := range browserBackendRequests(rec) {
				if s.Header.Get("Origin") == originA.URL() {
					got = append(got, s)
				}
			}
			if len(got) != 1 || got[0].Method != "POST" {
				t.Fatalf("backend requests from origin A: %+v, want one POST", got)
			}
			if v := got[0].Header.Get("X-Custom"); v != "1" {
				t.Errorf("backend X-Custom %q, want 1", v)
			}
			if v := got[0].Header.Get("Content-Type"); v != "application/json" {
				t.Errorf("backend Content-Type %q, want application/json", v)
			}
		})

		t.Run("other origin", func(t *testing.T) {
			res := browserVisit(t, bin, originB, gatewayURL, nil)
			if res.OK {
				t.Fatalf("the fetch from origin %s, not allowed, succeeded: status %d, body %q", originB.URL(), res.Status, res.Body)
			}
			if res.Name != "TypeError" {
				t.Errorf("the fetch failed with %s %q, want a TypeError", res.Name, res.Error)
			}

			pre := tap.find("OPTIONS", "/api/data", originB.URL())
			if len(pre) == 0 {
				t.Fatalf("the browser sent no preflight through the gateway; seen:\n%s", tap.describe())
			}
			for _, x := range pre {
				if x.resp == nil {
					t.Errorf("no answer to the preflight")
					continue
				}
				if v := x.resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
					t.Errorf("the preflight from origin B was answered with Access-Control-Allow-Origin %q", v)
				}
				if x.resp.StatusCode/100 == 2 {
					t.Errorf("the preflight from origin B was answered %d", x.resp.StatusCode)
				}
			}
			if posts := tap.find("POST", "/api/data", originB.URL()); len(posts) != 0 {
				t.Errorf("the browser sent the POST from origin B after a refused preflight")
			}
			for _, s := range browserBackendRequests(rec) {
				if s.Header.Get("Origin") == originB.URL() || s.Method == "OPTIONS" {
					t.Errorf("the backend got %s %s from origin %q", s.Method, s.RequestURI, s.Header.Get("Origin"))
				}
			}
			c := newClient(t)
			polWaitMetric(t, c, admin, "rustygate_cors_rejected_total", map[string]string{"route": "api"}, float64(len(pre)))
		})

		t.Run("access log", func(t *testing.T) {
			// Both preflights were answered by the gateway and logged.
			want := map[float64]bool{http.StatusNoContent: false, http.StatusForbidden: false}
			deadline := time.Now().Add(3 * time.Second)
			for {
				for _, l := range g.lines() {
					if l["msg"] == "access" && l["method"] == "OPTIONS" && l["path"] == "/api/data" && l["route"] == "api" {
						if st, ok := l["status"].(float64); ok {
							want[st] = true
						}
					}
				}
				if want[http.StatusNoContent] && want[http.StatusForbidden] {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("access log lacks an OPTIONS /api/data line with status 204 (origin A) or 403 (origin B): %v", want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})

		// The backend of /legacy answers every request with
		// Access-Control-Allow-Origin: *. The route's cors policy must still
		// decide what a page may read.
		t.Run("backend CORS header, allowed origin", func(t *testing.T) {
			res := browserVisit(t, bin, originA, gatewayURL, url.Values{"path": {"/legacy/data"}})
			posts := browserTapSummary(tap.find("POST", "/legacy/data", originA.URL()))
			if !res.OK {
				t.Fatalf("the fetch from the allowed origin failed (%s %q); the gateway's answer to the POST: %s"+
					"(a browser refuses a response whose Access-Control-Allow-Origin has more than one value)", res.Name, res.Error, posts)
			}
			if res.Body != browserLegacyPayload {
				t.Errorf("the page read %q, want %q", res.Body, browserLegacyPayload)
			}
		})
		t.Run("backend CORS header, other origin", func(t *testing.T) {
			// A simple GET: no preflight, so only the response headers decide.
			res := browserVisit(t, bin, originB, gatewayURL, url.Values{"path": {"/legacy/data"}, "mode": {"simple"}})
			gets := browserTapSummary(tap.find("GET", "/legacy/data", originB.URL()))
			if res.OK {
				t.Errorf("the page of origin %s, which the cors policy does not allow, read the response (status %d, body %q): "+
					"the backend's Access-Control-Allow-Origin reached the browser; the gateway's answer: %s", originB.URL(), res.Status, res.Body, gets)
			}
		})
	})
}

// chromiumBinary returns the browser to run: $CHROMIUM_BIN when set,
// else the Debian package's. The test skips without one unless CI is set,
// where the package is required (.ci/run installs it).
func chromiumBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHROMIUM_BIN: %v", err)
		}
		return p
	}
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("%s not found and CI=%s: the chromium package is required (apt-get install chromium)", chromiumPath, ci)
	}
	t.Skipf("%s not found (apt-get install chromium); set CI=true to make this a failure", chromiumPath)
	return ""
}

// browserResult is what the page reports.
type browserResult struct {
	OK      bool    `json:"ok"`
	Status  int     `json:"status"`
	Body    string  `json:"body"`
	Exposed *string `json:"exposed"`
	Hidden  *string `json:"hidden"`
	Name    string  `json:"name"`
	Error   string  `json:"error"`
}

func browserStr(p *string) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *p)
}

// browserBackendRequests returns a copy of what rec recorded.
func browserBackendRequests(rec *recorder) []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// browserOrigin is a web origin serving browserPage and receiving its report.
type browserOrigin struct {
	srv     *httptest.Server
	reports chan string
}

func newBrowserOrigin(t *testing.T) *browserOrigin {
	t.Helper()
	o := &browserOrigin{reports: make(chan string, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(browserPage)
	})
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		select {
		case o.reports <- r.URL.Query().Get("result"):
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	return o
}

// URL is the origin, http://127.0.0.1:PORT.
func (o *browserOrigin) URL() string { return o.srv.URL }

// browserVisit opens the origin's page in Chromium, pointed at gatewayURL
// (with the page parameters params: path, mode), and returns what the
// page reported. Chromium is started a second time if the first one dies
// without the page reporting (a crash on startup).
func browserVisit(t *testing.T, bin string, o *browserOrigin, gatewayURL string, params url.Values) browserResult {
	t.Helper()
	q := url.Values{"gateway": {gatewayURL}}
	for k, v := range params {
		q[k] = v
	}
	page := o.URL() + "/?" + q.Encode()
	for attempt := 1; ; attempt++ {
		run := startChromium(t, bin, page)
		var raw string
		select {
		case raw = <-o.reports:
		case <-run.exited:
			// The report may still be on its way.
			select {
			case raw = <-o.reports:
			case <-time.After(time.Second):
			}
		}
		if raw == "" {
			if attempt == 1 && run.crashed() {
				t.Logf("chromium exited without the page reporting (%v); starting it once more.\nstderr:\n%s", run.err, run.stderr.String())
				continue
			}
			t.Fatalf("chromium exited (%v) without the page reporting.\nDOM:\n%s\nstderr:\n%s", run.result(), run.stdout.String(), run.stderr.String())
		}
		// With --dump-dom Chromium exits once the page is done.
		select {
		case <-run.exited:
		case <-time.After(10 * time.Second):
			t.Logf("chromium still running 10s after the report; killing it")
			run.kill()
			<-run.exited
		}
		var res browserResult
		if err := json.Unmarshal([]byte(raw), &res); err != nil {
			t.Fatalf("the page reported %q: %v", raw, err)
		}
		t.Logf("page %s reported %s", page, raw)
		return res
	}
}

// chromiumRun is one headless Chromium process (group).
type chromiumRun struct {
	cmd            *exec.Cmd
	ctx            context.Context
	stdout, stderr *logBuffer
	exited         chan struct{}
	err            error // cmd.Wait's result, valid once exited is closed
}

// startChromium starts headless Chromium on url with a fresh profile,
// in a process group of its own that is killed at cleanup; it is
// bounded by a 30 s timeout.
func startChromium(t *testing.T, bin, url string) *chromiumRun {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r := &chromiumRun{ctx: ctx, stdout: &logBuffer{}, stderr: &logBuffer{}, exited: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, bin,
		"--headless",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-dev-shm-usage",
		"--disable-quic",
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-extensions",
		"--user-data-dir="+home+"/profile",
		"--virtual-time-budget=10000",
		"--dump-dom",
		url,
	)
	// A home of its own keeps caches and crash reports out of the user's.
	r.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config", "XDG_CACHE_HOME="+home+"/.cache")
	r.cmd.Stdout = r.stdout
	r.cmd.Stderr = r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.Cancel = func() error { return r.kill() }
	r.cmd.WaitDelay = 5 * time.Second
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		cancel()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.kill()
		<-r.exited
		// Helpers that outlived the browser share its process group.
		r.kill()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", r.stderr.String())
		}
	})
	return r
}

// kill kills the whole process group (the browser and its helpers).
func (r *chromiumRun) kill() error {
	err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// crashed reports whether the run ended abnormally before showing the
// page: an exit status other than 0, not because of the timeout, and no
// DOM dumped.
func (r *chromiumRun) crashed() bool {
	return r.err != nil && !r.timedOut() && !strings.Contains(r.stdout.String(), `id="result"`)
}

// timedOut reports whether the run was killed by its 30 s timeout.
func (r *chromiumRun) timedOut() bool {
	return errors.Is(r.ctx.Err(), context.DeadlineExceeded)
}

func (r *chromiumRun) result() string {
	if r.timedOut() {
		return fmt.Sprintf("%v after the 30s timeout", r.err)
	}
	if r.err == nil {
		return "exit status 0"
	}
	return r.err.Error()
}

// browserTap forwards TCP connections to a target address and records the
// bytes of both directions.
type browserTap struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*browserTapConn
}

type browserTapConn struct {
	client, server net.Conn
	up, down       bytes.Buffer // guarded by browserTap.mu
}

func newBrowserTap(t *testing.T, target string) *browserTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &browserTap{ln: ln, target: target}
	tp.wg.Add(1)
	go tp.serve()
	t.Cleanup(func() {
		ln.Close()
		tp.mu.Lock()
		for _, c := range tp.conns {
			c.client.Close()
			c.server.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
	})
	return tp
}

// Addr is the address to connect to instead of the target.
func (tp *browserTap) Addr() string { return tp.ln.Addr().String() }

func (tp *browserTap) serve() {
	defer tp.wg.Done()
	for {
		client, err := tp.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", tp.target, 3*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		tc := &browserTapConn{client: client, server: server}
		tp.mu.Lock()
		tp.conns = append(tp.conns, tc)
		tp.mu.Unlock()
		tp.wg.Add(2)
		go tp.pipe(server, client, &tc.up)
		go tp.pipe(client, server, &tc.down)
	}
}

// pipe copies src to dst, recording into rec, then half-closes dst.
func (tp *browserTap) pipe(dst, src net.Conn, rec *bytes.Buffer) {
	defer tp.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			tp.mu.Lock()
			rec.Write(buf[:n])
			tp.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tcp, ok := dst.(*net.TCPConn); ok {
		tcp.CloseWrite()
	}
}

// browserExchange is one request seen through the tap with its response
// (nil when none was read); bodies are consumed.
type browserExchange struct {
	req  *http.Request
	resp *http.Response
}

// exchanges parses the recorded connections into requests and responses.
func (tp *browserTap) exchanges() []browserExchange {
	tp.mu.Lock()
	var raw [][2][]byte
	for _, c := range tp.conns {
		raw = append(raw, [2][]byte{bytes.Clone(c.up.Bytes()), bytes.Clone(c.down.Bytes())})
	}
	tp.mu.Unlock()
	var out []browserExchange
	for _, r := range raw {
		reqs := bufio.NewReader(bytes.NewReader(r[0]))
		resps := bufio.NewReader(bytes.NewReader(r[1]))
		for {
			req, err := http.ReadRequest(reqs)
			if err != nil {
				break
			}
			io.Copy(io.Discard, req.Body)
			resp, err := http.ReadResponse(resps, req)
			if err != nil {
				out = append(out, browserExchange{req: req})
				break
			}
			io.Copy(io.Discard, resp.Body)
			out = append(out, browserExchange{req: req, resp: resp})
		}
	}
	return out
}

// find returns the exchanges of method on path from origin.
func (tp *browserTap) find(method, path, origin string) []browserExchange {
	var out []browserExchange
	for _, x := range tp.exchanges() {
		if x.req.Method == method && x.req.URL.Path == path && x.req.Header.Get("Origin") == origin {
			out = append(out, x)
		}
	}
	return out
}

// describe lists the exchanges, for failure messages.
func (tp *browserTap) describe() string {
	return browserTapSummary(tp.exchanges())
}

// browserTapSummary lists exchanges with their CORS response headers.
func browserTapSummary(xs []browserExchange) string {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "  %s %s Origin=%q", x.req.Method, x.req.URL, x.req.Header.Get("Origin"))
		if x.resp != nil {
			fmt.Fprintf(&b, " -> %d Access-Control-Allow-Origin=%q", x.resp.StatusCode, x.resp.Header.Values("Access-Control-Allow-Origin"))
		} else {
			b.WriteString(" -> (no response)")
		}
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return "  (nothing)\n"
	}
	return b.String()
}
