//go:build unix

// Command soak drives a long, bounded run of keep-alive requests through a
// RustyGate instance and checks that its memory (RSS) and goroutine count
// stay flat.
//
// It either watches a gateway that is already running (-pid N, with -gateway
// and -admin pointing at it) or, with -spawn (implied when -pid is not
// given), starts `rustygate demo-backend` and `rustygate run` itself on a
// generated configuration and stops both at the end:
//
//	go run ./test/soak -spawn                       # what `make soak` runs
//	go run ./test/soak -requests 200000 -concurrency 32
//	go run ./test/soak -pid 1234 -gateway http://127.0.0.1:8080/ -admin http://127.0.0.1:8081
//
// RSS (VmRSS from /proc/PID/status) and the goroutine count (first line of
// the admin listener's /debug/pprof/goroutine?debug=1) are sampled at the
// start, when half of the requests are done (or half of -max-duration has
// passed) and at the end after a settle pause. The verdict is FLAT when
//
//	end RSS        <= 1.5 x middle RSS + 8 MiB, and
//	end goroutines <= middle goroutines + 10
//
// and GROWING otherwise. The exit status is 0 for FLAT with every request
// answered 200, 1 for GROWING or any failed request, 2 when the run could
// not start. Traffic goes only to the given gateway address; the run is
// bounded by -requests and by -max-duration, whichever ends first.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const mib = 1 << 20

type options struct {
	gateway     string
	admin       string
	requests    int64
	concurrency int
	maxDuration time.Duration
	timeout     time.Duration
	settle      time.Duration
	pid         int
	spawn       bool
	bin         string
	backend     string
	accessLog   bool
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.StringVar(&o.gateway, "gateway", "http://127.0.0.1:18080/", "gateway URL every request is sent to")
	flag.StringVar(&o.admin, "admin", "http://127.0.0.1:18081", "gateway admin base URL (serves /debug/pprof/)")
	flag.Int64Var(&o.requests, "requests", 1000000, "number of requests to send")
	flag.IntVar(&o.concurrency, "concurrency", 64, "concurrent keep-alive connections")
	flag.DurationVar(&o.maxDuration, "max-duration", 10*time.Minute, "stop sending after this long even if requests remain")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "pause after the load before the end sample")
	flag.IntVar(&o.pid, "pid", 0, "PID of a running gateway to watch (instead of -spawn)")
	flag.BoolVar(&o.spawn, "spawn", false, "start demo-backend and the gateway from -bin (implied without -pid)")
	flag.StringVar(&o.bin, "bin", envOr("RG_BIN", "bin/rustygate"), "rustygate binary for -spawn (env RG_BIN)")
	flag.StringVar(&o.backend, "backend", "127.0.0.1:18001", "listen address of the spawned demo backend")
	flag.BoolVar(&o.accessLog, "access-log", true, "access log on in the spawned gateway's configuration")
	flag.Parse()

	if o.requests <= 0 || o.concurrency <= 0 || o.maxDuration <= 0 {
		fmt.Fprintln(os.Stderr, "soak: -requests, -concurrency and -max-duration must be positive")
		return 2
	}
	if o.pid != 0 && o.spawn {
		fmt.Fprintln(os.Stderr, "soak: give either -pid or -spawn, not both")
		return 2
	}
	if o.pid == 0 {
		o.spawn = true
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pid := o.pid
	if o.spawn {
		procs, err := spawn(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 2
		}
		defer procs.stop()
		pid = procs.gateway.cmd.Process.Pid
	}

	if err := waitReady(ctx, o.gateway, 15*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "soak: gateway not ready:", err)
		return 2
	}
	start, err := sample(pid, o.admin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: cannot sample the gateway:", err)
		return 2
	}
	fmt.Printf("soak: %d requests to %s, concurrency %d, at most %s, gateway pid %d\n",
		o.requests, o.gateway, o.concurrency, o.maxDuration, pid)
	fmt.Printf("start   %s\n", start)

	res, middle := load(ctx, o, pid)

	settled := "no settle: interrupted"
	if ctx.Err() == nil {
		time.Sleep(o.settle)
		settled = "after " + o.settle.String() + " settle"
	}
	end, endErr := sample(pid, o.admin)

	res.print()
	fmt.Println("summary:")
	fmt.Printf("start   %s\n", start)
	if middle.err != nil {
		fmt.Printf("middle  unavailable: %v\n", middle.err)
	} else {
		fmt.Printf("middle  %s\n", middle.snapshot)
	}
	if endErr != nil {
		fmt.Printf("end     unavailable: %v\n", endErr)
	} else {
		fmt.Printf("end     %s (%s)\n", end, settled)
	}

	code := 0
	switch {
	case ctx.Err() != nil:
		fmt.Println("verdict: INTERRUPTED")
		return 1
	case middle.err != nil || endErr != nil:
		fmt.Println("verdict: UNKNOWN (a sample failed; did the gateway die?)")
		code = 1
	default:
		rssLimit := middle.snapshot.rss*3/2 + 8*mib
		gLimit := middle.snapshot.goroutines + 10
		if end.rss <= rssLimit && end.goroutines <= gLimit {
			fmt.Printf("verdict: FLAT (end RSS %s <= %s, end goroutines %d <= %d)\n",
				mibString(end.rss), mibString(rssLimit), end.goroutines, gLimit)
		} else {
			fmt.Printf("verdict: GROWING (end RSS %s, limit %s; end goroutines %d, limit %d)\n",
				mibString(end.rss), mibString(rssLimit), end.goroutines, gLimit)
			code = 1
		}
	}
	if failed := res.failed(); failed > 0 {
		fmt.Printf("FAIL: %d of %d requests did not get 200\n", failed, res.sent.Load())
		code = 1
	}
	return code
}

// ---------------------------------------------------------------- load

type results struct {
	sent     atomic.Int64
	ok       atomic.Int64
	bad      atomic.Int64 // errors and non-200 answers
	elapsed  time.Duration
	timedOut bool

	mu       sync.Mutex
	statuses map[int]int64 // non-200 statuses
	errs     int64
	firstErr []string
}

func (r *results) record(status int, err error) {
	if err == nil && status == http.StatusOK {
		r.ok.Add(1)
		return
	}
	r.bad.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs++
		if len(r.firstErr) < 5 {
			r.firstErr = append(r.firstErr, err.Error())
		}
		return
	}
	r.statuses[status]++
}

func (r *results) failed() int64 { return r.bad.Load() }

func (r *results) print() {
	sent := r.sent.Load()
	rate := float64(sent) / r.elapsed.Seconds()
	fmt.Printf("sent %d requests in %s (%.0f req/s): %d ok, %d errors",
		sent, r.elapsed.Round(time.Millisecond), rate, r.ok.Load(), r.errs)
	codes := make([]int, 0, len(r.statuses))
	for c := range r.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Printf(", %d x HTTP %d", r.statuses[c], c)
	}
	fmt.Println()
	if r.timedOut {
		fmt.Println("note: -max-duration reached before all requests were sent")
	}
	for _, e := range r.firstErr {
		fmt.Println("  error:", e)
	}
}

type middleSample struct {
	snapshot snapshot
	err      error
}

// load sends the requests from o.concurrency workers over keep-alive
// connections and takes the middle sample once half of them are done or
// half of the time bound has passed.
func load(parent context.Context, o options, pid int) (*results, middleSample) {
	ctx, cancel := context.WithTimeout(parent, o.maxDuration)
	defer cancel()

	transport := &http.Transport{
		Proxy:               nil, // loopback only: never an environment proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.concurrency,
		MaxIdleConnsPerHost: o.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport, Timeout: o.timeout}

	res := &results{statuses: map[int]int64{}}
	var next, done atomic.Int64
	half := (o.requests + 1) / 2
	halfway := make(chan struct{})
	var halfOnce sync.Once

	var mid middleSample
	midDone := make(chan struct{})
	go func() {
		defer close(midDone)
		select {
		case <-halfway:
		case <-time.After(o.maxDuration / 2):
		case <-ctx.Done():
		}
		mid.snapshot, mid.err = sample(pid, o.admin)
		if mid.err == nil {
			fmt.Printf("middle  %s (%d requests done)\n", mid.snapshot, done.Load())
		}
	}()

	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Printf("progress: %d/%d requests, %d failed\n", done.Load(), o.requests, res.failed())
			case <-progressDone:
				return
			}
		}
	}()

	began := time.Now()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= o.requests {
				res.sent.Add(1)
				status, err := get(ctx, client, o.gateway)
				if err != nil && ctx.Err() != nil {
					// Cut off by the time bound or Ctrl-C: not the gateway's failure.
					res.sent.Add(-1)
					return
				}
				res.record(status, err)
				if done.Add(1) == half {
					halfOnce.Do(func() { close(halfway) })
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(began)
	res.timedOut = parent.Err() == nil && ctx.Err() != nil && res.sent.Load() < o.requests
	close(progressDone)
	halfOnce.Do(func() { close(halfway) })
	<-midDone
	return res, mid
}

func get(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	// Drain the body so the connection goes back to the keep-alive pool.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

func waitReady(ctx context.Context, target string, within time.Duration) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(within)
	for {
		status, err := get(ctx, client, target)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%s answers HTTP %d", target, status)
			}
			return fmt.Errorf("not answering 200 within %s: %w", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- samples

type snapshot struct {
	rss        int64 // bytes
	goroutines int
}

func (s snapshot) String() string {
	return fmt.Sprintf("RSS %s, goroutines %d", mibString(s.rss), s.goroutines)
}

func sample(pid int, admin string) (snapshot, error) {
	rss, err := readRSS(pid)
	if err != nil {
		return snapshot{}, err
	}
	g, err := goroutines(admin)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{rss: rss, goroutines: g}, nil
}

// readRSS returns VmRSS of pid in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of pid %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// goroutines reads "goroutine profile: total N" from the admin pprof endpoint.
func goroutines(admin string) (int, error) {
	u := strings.TrimRight(admin, "/") + "/debug/pprof/goroutine?debug=1"
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("%s: %w", u, err)
	}
	const prefix = "goroutine profile: total "
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, prefix) {
		return 0, fmt.Errorf("%s: unexpected first line %q", u, line)
	}
	return strconv.Atoi(strings.TrimPrefix(line, prefix))
}

func mibString(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/mib) }

// ---------------------------------------------------------------- spawn

type processes struct {
	dir     string
	procs   []*proc // in start order
	gateway *proc
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *tailWriter
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result, valid after exited is closed
}

// spawn starts the demo backend and a gateway on a generated configuration
// whose listeners are the hosts of -gateway and -admin.
func spawn(o options) (*processes, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("rustygate binary %s not found (run make build or pass -bin): %w", o.bin, err)
	}
	gw, err := hostPort(o.gateway)
	if err != nil {
		return nil, fmt.Errorf("-gateway: %w", err)
	}
	adm, err := hostPort(o.admin)
	if err != nil {
		return nil, fmt.Errorf("-admin: %w", err)
	}
	for _, addr := range []string{o.backend, gw, adm} {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is already in use; stop what listens there or pick other addresses", addr)
		}
	}

	dir, err := os.MkdirTemp("", "rustygate-soak-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`server: { listen: %q }
admin:  { listen: %q }
log:    { format: json, level: info, access: %t }
routes:
  - path: "/"
    backend: %q
`, gw, adm, o.accessLog, "http://"+o.backend)
	cfgPath := filepath.Join(dir, "soak.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	p := &processes{dir: dir}
	backend, err := p.start(bin, "demo-backend", "demo-backend", "--listen", o.backend)
	if err != nil {
		p.stop()
		return nil, err
	}
	p.gateway, err = p.start(bin, "gateway", "run", "-c", cfgPath)
	if err != nil {
		p.stop()
		return nil, err
	}
	fmt.Printf("spawned demo-backend (pid %d) on %s and gateway (pid %d) with %s\n",
		backend.cmd.Process.Pid, o.backend, p.gateway.cmd.Process.Pid, cfgPath)
	return p, nil
}

func (p *processes) start(bin, name string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	// A process group of its own: a Ctrl-C in the terminal reaches only this
	// program, which then stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The access log can run to hundreds of MB over a soak: keep only its
	// tail (for diagnostics) and a line count instead of writing it to disk.
	w := &tailWriter{name: name}
	cmd.Stdout = w
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, log: w, exited: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.exited)
	}()
	p.procs = append(p.procs, pr)
	return pr, nil
}

// stop sends SIGTERM to the spawned processes (gateway first), waits up to
// 35s for each and kills what remains. A process that had died on its own
// or logged errors gets the tail of its output shown.
func (p *processes) stop() {
	for i := len(p.procs) - 1; i >= 0; i-- {
		pr := p.procs[i]
		early := false
		select {
		case <-pr.exited:
			early = true
		default:
			_ = pr.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-pr.exited:
			case <-time.After(35 * time.Second):
				fmt.Fprintf(os.Stderr, "soak: %s (pid %d) did not stop on SIGTERM within 35s; killing it\n",
					pr.name, pr.cmd.Process.Pid)
				_ = pr.cmd.Process.Kill()
				<-pr.exited
			}
		}
		fmt.Printf("%s wrote %d log lines\n", pr.name, pr.log.lineCount())
		if early {
			fmt.Fprintf(os.Stderr, "soak: %s exited on its own before the end: %v\n", pr.name, pr.err)
		}
		if early || pr.log.failed() {
			pr.log.dump(os.Stderr)
		}
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// tailWriter counts the lines a process writes and keeps the last 16 KiB.
type tailWriter struct {
	name  string
	mu    sync.Mutex
	lines int64
	tail  []byte
	bad   bool
}

const tailMax = 16 << 10

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines += int64(bytes.Count(b, []byte("\n")))
	if !w.bad && (bytes.Contains(b, []byte(`"level":"ERROR"`)) || bytes.Contains(b, []byte("panic:"))) {
		w.bad = true
	}
	w.tail = append(w.tail, b...)
	if len(w.tail) > tailMax {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-tailMax:]...)
	}
	return len(b), nil
}

func (w *tailWriter) lineCount() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

func (w *tailWriter) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

func (w *tailWriter) dump(out io.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(out, "---- last output of %s:\n%s\n----\n", w.name, w.tail)
}

func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host:port", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
