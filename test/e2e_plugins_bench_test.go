package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testnet"
)

// pluginDeadline is the gateway's WASM call deadline (plugins.Options).
const pluginDeadline = 100 * time.Millisecond

// BenchmarkPluginIsolation measures what a looping WASM guest on one route
// costs another route of the same gateway: the req/s of a plain route with
// 8 keep-alive clients, alone (baseline) and while 16 clients hit a route
// whose plugin never returns (plugins/examples/loop), in alternating rounds
// of one run. Each loaded round is compared with the mean of the baseline
// rounds just before and after it, so that the machine getting slower or
// faster during the run (other processes, a shared host) weighs on both
// sides of a ratio; it reports the median of these ratios (target >= 0.8),
// and how
// far past the plugin deadline the looping route's answers came (its
// requests wait for a free slot and then run, within one deadline). The
// looping route's clients are wrk, a process of its own: timed by a
// goroutine of this busy process, an answer would also wait for its
// netpoller (polled every 10 ms when every thread is busy).
//
// The overrun has a baseline measured at the same time: 16 more wrk
// clients on a route whose backend never answers, with
// timeouts.response_header at the plugin deadline, so that they get the
// gateway's own 504 at that deadline. How late those answers come is what
// the machine, wrk and the gateway's timers add to any deadline under this
// load; the looping route's overrun past it is the plugin host's own.
//
//	go test -run '^$' -bench PluginIsolation -benchtime 1x ./test/
func BenchmarkPluginIsolation(b *testing.B) {
	dir := b.TempDir()
	loop := filepath.Join(dir, "loop.wasm")
	buildPlugin(b, "loop", loop)
	be := newBackend(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") })
	hung, _ := testnet.HungListener(b)
	g := startGateway(b, "fast", fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "off" }
log: { format: json, level: info, access: false }
routes:
  - path: "/plain"
    backend: %q
  - path: "/loop"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
  - path: "/hang"
    backend: "http://%s"
    timeouts: { response_header: %s }
    retries: { attempts: 0 }
`, be.URL, be.URL, loop, hung, pluginDeadline))

	wrk := lookWrk(b)
	script := filepath.Join(dir, "loop.lua")
	if err := os.WriteFile(script, []byte(loopLua), 0o644); err != nil {
		b.Fatal(err)
	}
	const rounds, phase = 5, time.Second
	var base, loaded, ratios []float64
	var p99s, maxes, hungP99s, hungMaxes []time.Duration
	answers := 0
	for b.Loop() {
		base = append(base, plainRate(b, g.addr, phase))
		for range rounds {
			h := startWrkLoop(b, wrk, script, g.addr, "/loop")
			hh := startWrkLoop(b, wrk, script, g.addr, "/hang")
			time.Sleep(200 * time.Millisecond) // let the looping calls pile up
			loaded = append(loaded, plainRate(b, g.addr, phase))
			res, hres := h.wait(b), hh.wait(b)
			answers += res.requests
			p99s, maxes = append(p99s, res.p99), append(maxes, res.max)
			hungP99s, hungMaxes = append(hungP99s, hres.p99), append(hungMaxes, hres.max)
			base = append(base, plainRate(b, g.addr, phase))
			n := len(base)
			ratios = append(ratios, loaded[len(loaded)-1]/((base[n-2]+base[n-1])/2))
		}
	}
	b.Logf("plain route req/s alone %v, loaded %v; ratios %v; loop answers p99 %v, max %v; timeout baseline p99 %v, max %v",
		base, loaded, ratios, p99s, maxes, hungP99s, hungMaxes)
	slices.Sort(base)
	slices.Sort(loaded)
	slices.Sort(ratios)
	slices.Sort(p99s)
	slices.Sort(maxes)
	slices.Sort(hungP99s)
	slices.Sort(hungMaxes)
	ratio := ratios[len(ratios)/2]
	over := func(d time.Duration) float64 { return float64(d-pluginDeadline) / float64(time.Millisecond) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(base[len(base)/2], "base_req/s")
	b.ReportMetric(loaded[len(loaded)/2], "loaded_req/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(over(p99s[len(p99s)/2]), "overrun_p99_ms")
	b.ReportMetric(over(maxes[len(maxes)-1]), "overrun_max_ms")
	b.ReportMetric(over(hungP99s[len(hungP99s)/2]), "timeout_overrun_p99_ms")
	b.ReportMetric(over(hungMaxes[len(hungMaxes)-1]), "timeout_overrun_max_ms")
	b.Logf("plain route median %.0f req/s alone, %.0f with 16 looping clients (median ratio %.2f); loop answers: %d, median p99 %v, max %v; the gateway's own timeout at the same deadline: median p99 %v, max %v",
		base[len(base)/2], loaded[len(loaded)/2], ratio, answers, p99s[len(p99s)/2], maxes[len(maxes)-1], hungP99s[len(hungP99s)/2], hungMaxes[len(hungMaxes)-1])
}

// loopLua makes wrk check that every answer of the looping route is 503
// or 504, and print its latencies' p99 and max in microseconds.
const loopLua = `local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 503 and status ~= 504 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  io.write(string.format("rg-loop requests %d bad %d errors %d p99 %d max %d\n",
    summary.requests, n, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(99), latency.max))
end
`

// lookWrk finds wrk, which the benchmark needs.
func lookWrk(b *testing.B) string {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("BenchmarkPluginIsolation drives the looping route with wrk: %v (apt-get install wrk)", err)
	}
	return wrk
}

// wrkLoop is a wrk run on the looping route.
type wrkLoop struct {
	path string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// startWrkLoop starts 16 wrk connections on path (the looping route or
// the hung one) for 2 s, the 200 ms that let the calls pile up and the
// loaded phase included.
func startWrkLoop(b *testing.B, wrk, script, addr, path string) *wrkLoop {
	h := &wrkLoop{path: path, cmd: exec.Command(wrk, "-t1", "-c16", "-d2s", "--timeout", "2s", "-s", script, "http://"+addr+path)}
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	return h
}

type loopResult struct {
	requests int
	p99, max time.Duration
}

// wait waits for wrk to end and returns what it measured.
func (h *wrkLoop) wait(b *testing.B) loopResult {
	if err := h.cmd.Wait(); err != nil {
		b.Fatalf("wrk: %v\n%s", err, h.out.String())
	}
	var r loopResult
	var bad, errs, p99, mx int64
	for line := range strings.Lines(h.out.String()) {
		if _, err := fmt.Sscanf(line, "rg-loop requests %d bad %d errors %d p99 %d max %d", &r.requests, &bad, &errs, &p99, &mx); err == nil {
			break
		}
	}
	if r.requests == 0 {
		b.Fatalf("no answer from %s:\n%s", h.path, h.out.String())
	}
	if bad != 0 || errs != 0 {
		b.Errorf("%s: %d answers not 503 or 504, %d errors, of %d", h.path, bad, errs, r.requests)
	}
	r.p99, r.max = time.Duration(p99)*time.Microsecond, time.Duration(mx)*time.Microsecond
	return r
}

// plainRate runs 8 keep-alive clients on /plain for d and returns their
// req/s.
func plainRate(b *testing.B, addr string, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 8 {
		wg.Go(func() {
			c := dialKeepAlive(b, addr)
			defer c.close()
			for time.Now().Before(end) {
				if status := c.get(b, "/plain"); status != 200 {
					b.Errorf("plain route: status %d", status)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// keepAlive is a minimal HTTP/1.1 client on one connection, cheap enough
// that the clients do not take the CPU the gateway is measured with.
type keepAlive struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialKeepAlive(b *testing.B, addr string) *keepAlive {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return &keepAlive{conn: c, br: bufio.NewReader(c)}
}

func (k *keepAlive) close() { k.conn.Close() }

// get sends a GET and reads the response; it returns its status, or 0 on
// an error (reported).
func (k *keepAlive) get(b *testing.B, path string) int {
	k.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.conn, "GET "+path+" HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		b.Error(err)
		return 0
	}
	status, length := 0, 0
	for first := true; ; first = false {
		line, err := k.br.ReadString('\n')
		if err != nil {
			b.Error(err)
			return 0
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case first:
			if len(line) >= 12 {
				status, _ = strconv.Atoi(line[9:12])
			}
		case line == "":
			if _, err := k.br.Discard(length); err != nil {
				b.Error(err)
				return 0
			}
			return status
		default:
			if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
}
