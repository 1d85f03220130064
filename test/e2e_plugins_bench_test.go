package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
// requests wait for a free slot and then run, within one deadline).
//
//	go test -run '^$' -bench PluginIsolation -benchtime 1x ./test/
func BenchmarkPluginIsolation(b *testing.B) {
	dir := b.TempDir()
	loop := filepath.Join(dir, "loop.wasm")
	buildPlugin(b, "loop", loop)
	be := newBackend(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") })
	g := startGateway(b, "fast", fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "off" }
log: { format: json, level: info, access: false }
routes:
  - path: "/plain"
    backend: %q
  - path: "/loop"
    backend: %q
    middlewares: [ { name: wasm, path: %q } ]
`, be.URL, be.URL, loop))

	const rounds, phase = 5, time.Second
	var base, loaded, ratios []float64
	var lat []time.Duration
	for b.Loop() {
		base = append(base, plainRate(b, g.addr, phase))
		for range rounds {
			stop := make(chan struct{})
			done := hammerLoop(b, g.addr, 16, stop)
			time.Sleep(200 * time.Millisecond) // let the looping calls pile up
			loaded = append(loaded, plainRate(b, g.addr, phase))
			close(stop)
			lat = append(lat, <-done...)
			base = append(base, plainRate(b, g.addr, phase))
			n := len(base)
			ratios = append(ratios, loaded[len(loaded)-1]/((base[n-2]+base[n-1])/2))
		}
	}
	b.Logf("plain route req/s alone %v, loaded %v; ratios %v", base, loaded, ratios)
	slices.Sort(base)
	slices.Sort(loaded)
	slices.Sort(ratios)
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no answer from the looping route")
	}
	ratio := ratios[len(ratios)/2]
	over := func(q float64) float64 {
		d := lat[min(len(lat)-1, int(q*float64(len(lat))))] - pluginDeadline
		return float64(d) / float64(time.Millisecond)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(base[len(base)/2], "base_req/s")
	b.ReportMetric(loaded[len(loaded)/2], "loaded_req/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(over(0.99), "overrun_p99_ms")
	b.ReportMetric(over(1), "overrun_max_ms")
	b.Logf("plain route median %.0f req/s alone, %.0f with 16 looping clients (median ratio %.2f); loop answers: %d, p50 %v p99 %v max %v",
		base[len(base)/2], loaded[len(loaded)/2], ratio, len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
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

// hammerLoop runs n clients on /loop until stop is closed, then sends
// the latencies of their requests (each answered 503 or 504) on the
// returned channel.
func hammerLoop(b *testing.B, addr string, n int, stop chan struct{}) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := dialKeepAlive(b, addr)
			defer c.close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				status := c.get(b, "/loop")
				d := time.Since(start)
				if status != 503 && status != 504 {
					b.Errorf("loop route: status %d, want 503 or 504", status)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	go func() {
		wg.Wait()
		out <- lat
	}()
	return out
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
