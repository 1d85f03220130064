package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// End-to-end tests of backend pools: health checks, retries, the retry
// budget, outlier detection, connection limits, fail-open and the
// selection strategies, against real backends.

// upBackend is an HTTP backend on a fixed 127.0.0.1 port that can be
// stopped (its listener and every connection closed, handlers waited
// for) and started again on the same port. Every response carries
// X-Backend: name. GET /health answers the status set with setHealth
// (200 by default) and is not counted as a hit.
type upBackend struct {
	t    *testing.T
	name string
	addr string
	h    http.HandlerFunc

	health  atomic.Int32
	hits    atomic.Int64 // requests other than /health
	probes  atomic.Int64 // /health requests
	running atomic.Int64 // handlers in progress

	mu     sync.Mutex
	srv    *http.Server
	served chan struct{}
}

func newUpBackend(t *testing.T, name string, h http.HandlerFunc) *upBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &upBackend{t: t, name: name, addr: ln.Addr().String(), h: h}
	b.health.Store(http.StatusOK)
	b.serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *upBackend) URL() string { return "http://" + b.addr }

func (b *upBackend) setHealth(status int) { b.health.Store(int32(status)) }

func (b *upBackend) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(b.handle),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan struct{})
	b.mu.Lock()
	b.srv, b.served = srv, served
	b.mu.Unlock()
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
}

func (b *upBackend) handle(w http.ResponseWriter, r *http.Request) {
	b.running.Add(1)
	defer b.running.Add(-1)
	w.Header().Set("X-Backend", b.name)
	if r.URL.Path == "/health" {
		b.probes.Add(1)
		w.WriteHeader(int(b.health.Load()))
		return
	}
	b.hits.Add(1)
	b.h(w, r)
}

// stop closes the listener and every connection, active ones included,
// and waits for the handlers to return. It is a no-op when stopped.
func (b *upBackend) stop() {
	b.mu.Lock()
	srv, served := b.srv, b.served
	b.srv = nil
	b.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	<-served
	deadline := time.Now().Add(5 * time.Second)
	for b.running.Load() > 0 {
		if time.Now().After(deadline) {
			b.t.Errorf("backend %s: %d handlers still running 5s after stop", b.name, b.running.Load())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restart listens again on the same address.
func (b *upBackend) restart() {
	b.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			b.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("backend %s: listening again on %s: %v", b.name, b.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upOK reads the body and answers 200 "ok".
func upOK(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	io.WriteString(w, "ok")
}

// upSleep answers after d, or gives up when the request is
// cancelled (the gateway closed the connection).
func upSleep(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}
}

// upStatus answers status with a plain-text body.
func upStatus(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Backend-Custom", "kept")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// upChecksum answers with the SHA-256 and length of the request
// body in X-Body-Sha256 and X-Body-Len.
func upChecksum(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set("X-Body-Len", strconv.FormatInt(n, 10))
	io.WriteString(w, "ok")
}

// upConfig is a configuration for engine with the admin listener
// on (for /metrics) and the access log on or off.
func upConfig(engine string, access bool, routes string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
admin:
  listen: %s
log:
  format: json
  level: info
  access: %t
routes:
%s`, anyPort, engineYAML(engine), anyPort, access, routes)
}

// upBackendList is a YAML flow list of backends with the given URLs.
func upBackendList(urls ...string) string {
	parts := make([]string, len(urls))
	for i, u := range urls {
		parts[i] = fmt.Sprintf("{ url: %q }", u)
	}
	return "[ " + strings.Join(parts, ", ") + " ]"
}

// send sends one request and returns the response (body read) and the
// backend that answered (X-Backend).
func upSend(t *testing.T, c *http.Client, method, url string, hdr http.Header, body []byte) (*http.Response, []byte, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, rb := do(t, c, req)
	return resp, rb, resp.Header.Get("X-Backend")
}

// upLogMatches reports whether a log line has msg and every field of match.
func upLogMatches(l map[string]any, msg string, match map[string]any) bool {
	if l["msg"] != msg {
		return false
	}
	for k, v := range match {
		if l[k] != v {
			return false
		}
	}
	return true
}

// upLogCount counts the log lines with msg and the fields of match.
func upLogCount(g *gateway, msg string, match map[string]any) int {
	n := 0
	for _, l := range g.lines() {
		if upLogMatches(l, msg, match) {
			n++
		}
	}
	return n
}

// upWaitLog waits up to d for the n-th log line with msg and the fields of
// match (the log is flushed every 100 ms) and returns it.
func upWaitLog(t *testing.T, g *gateway, d time.Duration, n int, msg string, match map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		k := 0
		for _, l := range g.lines() {
			if upLogMatches(l, msg, match) {
				if k++; k == n {
					return l
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line #%d %q with %v within %v", n, msg, match, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// upLogTime is the time field of a log line.
func upLogTime(t *testing.T, l map[string]any) time.Time {
	t.Helper()
	s, _ := l["time"].(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log line %v: time: %v", l, err)
	}
	return ts
}

// upSample is one series of the Prometheus text exposition.
type upSample struct {
	name   string
	labels map[string]string
	value  float64
}

// upScrape reads the admin listener's /metrics.
func upScrape(t *testing.T, c *http.Client, admin string) []upSample {
	t.Helper()
	resp, body := get(t, c, "http://"+admin+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	var out []upSample
	for line := range strings.SplitSeq(string(body), "\n") {
		if s, ok := upParseSample(line); ok {
			out = append(out, s)
		}
	}
	return out
}

// upParseSample parses `name{k="v",...} value`.
func upParseSample(line string) (upSample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return upSample{}, false
	}
	s := upSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return upSample{}, false
	}
	s.name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if rest == "" {
				return upSample{}, false
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return upSample{}, false
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					if rest[j] == 'n' {
						val.WriteByte('\n')
						continue
					}
				}
				val.WriteByte(rest[j])
			}
			if j == len(rest) {
				return upSample{}, false
			}
			s.labels[key] = val.String()
			rest = rest[j+1:]
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return upSample{}, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return upSample{}, false
	}
	s.value = v
	return s, true
}

// upMetricSum adds the series of name whose labels include match, and
// says how many there were.
func upMetricSum(samples []upSample, name string, match map[string]string) (sum float64, n int) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		sum += s.value
		n++
	}
	return sum, n
}

// TestUpstreamHealthChecks: a backend that stops is marked down within
// two probe intervals and no longer chosen; restarted on the same port it
// is marked up and chosen again.
func TestUpstreamHealthChecks(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		a := newUpBackend(t, "a", upOK)
		b := newUpBackend(t, "b", upOK)
		routes := fmt.Sprintf(`  - name: hc
    path: "/hc"
    backends: %s
    health_check: { path: /health, interval: 100ms, timeout: 50ms, unhealthy_threshold: 2, healthy_threshold: 2 }
`, upBackendList(a.URL(), b.URL()))
		g := startGateway(t, engine, upConfig(engine, false, routes))
		admin := adminAddr(t, g)
		c := newClient(t)
		url := g.URL() + "/hc"

		spread := func(n int) map[string]int {
			t.Helper()
			got := map[string]int{}
			for range n {
				resp, body, be := upSend(t, c, "GET", url, nil, nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, body %q", resp.StatusCode, body)
				}
				got[be]++
			}
			return got
		}
		upValue := func(be *upBackend) (float64, int) {
			return upMetricSum(upScrape(t, c, admin), "rustygate_backend_up", map[string]string{"route": "hc", "backend": be.URL()})
		}

		if got := spread(4); got["a"] != 2 || got["b"] != 2 {
			t.Fatalf("before the stop: backends %v, want a and b twice each", got)
		}
		if n := upLogCount(g, "backend down", nil); n != 0 {
			t.Fatalf("%d \"backend down\" lines while both backends answer", n)
		}

		b.stop()
		stopped := time.Now()
		down := upWaitLog(t, g, 3*time.Second, 1, "backend down", map[string]any{"route": "hc", "backend": b.URL()})
		seen := time.Since(stopped)
		detect := upLogTime(t, down).Sub(stopped)
		t.Logf("marked down %v after the stop (log seen after %v): %v", detect, seen, down["reason"])
		if detect > 500*time.Millisecond {
			t.Errorf("backend marked down %v after it stopped, want within 2 intervals + slack (500ms)", detect)
		}
		if v, n := upValue(b); n != 1 || v != 0 {
			t.Errorf("rustygate_backend_up{route=hc,backend=%s} = %v (%d series), want 0", b.URL(), v, n)
		}
		if v, n := upValue(a); n > 1 || (n == 1 && v != 1) {
			t.Errorf("rustygate_backend_up{route=hc,backend=%s} = %v (%d series), want 1 or absent", a.URL(), v, n)
		}
		if n := upLogCount(g, "backend down", map[string]any{"backend": a.URL()}); n != 0 {
			t.Errorf("the live backend was marked down")
		}
		if got := spread(20); got["a"] != 20 {
			t.Errorf("after the stop: backends %v, want all 20 requests on a", got)
		}

		b.restart()
		restarted := time.Now()
		up := upWaitLog(t, g, 3*time.Second, 1, "backend up", map[string]any{"route": "hc", "backend": b.URL()})
		if d := upLogTime(t, up).Sub(restarted); d > time.Second {
			t.Errorf("backend marked up %v after the restart, want within ~2 intervals", d)
		}
		if v, n := upValue(b); n != 1 || v != 1 {
			t.Errorf("after the restart rustygate_backend_up{route=hc,backend=%s} = %v (%d series), want 1", b.URL(), v, n)
		}
		if got := spread(10); got["b"] < 4 || got["a"] < 4 {
			t.Errorf("after the restart: backends %v, want both chosen (5 each)", got)
		}
	})
}

// TestUpstreamTimeoutRetry: a GET whose backend does not answer within
// response_header is retried on the other backend.
func TestUpstreamTimeoutRetry(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		slow := newUpBackend(t, "slow", upSleep(2*time.Second))
		fast := newUpBackend(t, "fast", upOK)
		routes := fmt.Sprintf(`  - name: to
    path: "/to"
    backends: %s
    strategy: round_robin
    timeouts: { response_header: 200ms }
    retries: { on: [connect_failure, timeout, reset] }
`, upBackendList(slow.URL(), fast.URL()))
		g := startGateway(t, engine, upConfig(engine, true, routes))
		admin := adminAddr(t, g)
		c := newClient(t)

		for i := range 10 {
			start := time.Now()
			resp, body, be := upSend(t, c, "GET", g.URL()+"/to", nil, nil)
			if resp.StatusCode != http.StatusOK || be != "fast" || string(body) != "ok" {
				t.Errorf("request %d: status %d from %q, body %q; want 200 from fast", i, resp.StatusCode, be, body)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("request %d took %v: the retry did not follow the 200ms response_header timeout", i, d)
			}
		}
		retry := upWaitLog(t, g, 3*time.Second, 1, "retrying request", map[string]any{"route": "to", "reason": "timeout", "failed_backend": slow.URL()})
		time.Sleep(250 * time.Millisecond) // the log is flushed every 100ms
		t.Logf("%d of 10 requests went to the slow backend first; ejections: %d", upLogCount(g, "retrying request", map[string]any{"route": "to"}), upLogCount(g, "backend ejected", nil))
		if retry["attempt"] != float64(2) {
			t.Errorf("retry line %v: attempt %v, want 2", retry, retry["attempt"])
		}
		m := upScrape(t, c, admin)
		if v, _ := upMetricSum(m, "rustygate_backend_failures_total", map[string]string{"route": "to", "backend": slow.URL(), "reason": "timeout"}); v < 1 {
			t.Errorf("rustygate_backend_failures_total{reason=timeout} = %v, want >= 1", v)
		}
		if v, n := upMetricSum(m, "rustygate_backend_failures_total", map[string]string{"backend": fast.URL()}); n != 0 {
			t.Errorf("failures counted for the fast backend: %v", v)
		}
		if v, n := upMetricSum(m, "rustygate_retries_total", map[string]string{"route": "to"}); n == 0 || v < 1 {
			t.Errorf("rustygate_retries_total{route=to} = %v (%d series), want >= 1", v, n)
		} else if rv, _ := upMetricSum(m, "rustygate_retries_total", map[string]string{"route": "to", "reason": "timeout"}); rv != v {
			t.Errorf("rustygate_retries_total{reason=timeout} = %v of %v", rv, v)
		}
	})
}

// TestUpstreamConnectFailure: connect failures to a dead backend are
// retried on the live one and counted; a dead backend alone gives 502.
func TestUpstreamConnectFailure(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		live := newUpBackend(t, "live", upOK)
		dead := "http://" + closedAddr(t)
		routes := fmt.Sprintf(`  - name: mixed
    path: "/mixed"
    backends: %s
  - name: single
    path: "/single"
    backends: %s
`, upBackendList(dead, live.URL()), upBackendList(dead))
		g := startGateway(t, engine, upConfig(engine, true, routes))
		admin := adminAddr(t, g)
		c := newClient(t)

		failures := func() float64 {
			v, _ := upMetricSum(upScrape(t, c, admin), "rustygate_backend_failures_total", map[string]string{"route": "mixed", "backend": dead, "reason": "connect_failure"})
			return v
		}
		batch := func() {
			for i := range 3 {
				resp, body, be := upSend(t, c, "GET", g.URL()+"/mixed", nil, nil)
				if resp.StatusCode != http.StatusOK || be != "live" {
					t.Errorf("request %d: status %d from %q, body %q; want 200 from live", i, resp.StatusCode, be, body)
				}
			}
		}
		batch()
		v1 := failures()
		batch()
		v2 := failures()
		t.Logf("connect failures after 3 and 6 requests: %v, %v", v1, v2)
		if v1 < 1 || v2 <= v1 {
			t.Errorf("rustygate_backend_failures_total{reason=connect_failure}: %v then %v, want >= 1 and increasing", v1, v2)
		}
		upWaitLog(t, g, 3*time.Second, 1, "retrying request", map[string]any{"route": "mixed", "reason": "connect_failure", "failed_backend": dead})

		resp, body := get(t, c, g.URL()+"/single")
		eb := checkErrorResponse(t, resp, body, http.StatusBadGateway)
		if eb.Error != "backend unreachable" {
			t.Errorf("error %q, want \"backend unreachable\"", eb.Error)
		}
	})
}

// TestUpstreamStatusRetry: a 503 is retried when retries.on lists it and
// relayed as is otherwise.
func TestUpstreamStatusRetry(t *testing.T) {
	const engine = "fast"
	busy := newUpBackend(t, "busy", upStatus(http.StatusServiceUnavailable, "busy, try later\n"))
	ok := newUpBackend(t, "ok", upOK)
	routes := fmt.Sprintf(`  - name: retry503
    path: "/retry503"
    backends: %[1]s
    retries: { on: ["503"] }
  - name: relay503
    path: "/relay503"
    backends: %[1]s
    outlier_detection: { consecutive_failures: 0 }
`, upBackendList(busy.URL(), ok.URL()))
	g := startGateway(t, engine, upConfig(engine, true, routes))
	c := newClient(t)

	t.Run("retried", func(t *testing.T) {
		before := busy.hits.Load()
		for i := range 10 {
			resp, body, be := upSend(t, c, "GET", g.URL()+"/retry503", nil, nil)
			if resp.StatusCode != http.StatusOK || be != "ok" {
				t.Errorf("request %d: status %d from %q, body %q; want 200 from ok", i, resp.StatusCode, be, body)
			}
		}
		if busy.hits.Load() == before {
			t.Fatal("the 503 backend was never tried")
		}
		upWaitLog(t, g, 3*time.Second, 1, "retrying request", map[string]any{"route": "retry503", "reason": "status_503", "failed_backend": busy.URL()})
	})
	t.Run("relayed", func(t *testing.T) {
		var n503, n200 int
		for i := range 6 {
			resp, body, be := upSend(t, c, "GET", g.URL()+"/relay503", nil, nil)
			switch resp.StatusCode {
			case http.StatusServiceUnavailable:
				n503++
				if be != "busy" || string(body) != "busy, try later\n" || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-Backend-Custom") != "kept" {
					t.Errorf("request %d: 503 from %q, Content-Type %q, body %q: not the backend's response as is", i, be, resp.Header.Get("Content-Type"), body)
				}
			case http.StatusOK:
				n200++
			default:
				t.Errorf("request %d: status %d, body %q", i, resp.StatusCode, body)
			}
		}
		if n503 != 3 || n200 != 3 {
			t.Errorf("%d × 503 and %d × 200, want 3 each (round robin, no retry)", n503, n200)
		}
		if n := upLogCount(g, "retrying request", map[string]any{"route": "relay503"}); n != 0 {
			t.Errorf("%d retries on a route that does not retry 503", n)
		}
	})
}

// TestUpstreamPostRetry: a POST is not retried on a timeout unless
// retries.non_idempotent is set, and is retried on a connect failure with
// its whole body.
func TestUpstreamPostRetry(t *testing.T) {
	const engine = "fast"
	slow := newUpBackend(t, "slow", upSleep(2*time.Second))
	fast := newUpBackend(t, "fast", upChecksum)
	dead := "http://" + closedAddr(t)
	routes := fmt.Sprintf(`  - name: post
    path: "/post"
    backends: %[1]s
    timeouts: { response_header: 200ms }
    outlier_detection: { consecutive_failures: 0 }
  - name: postretry
    path: "/postretry"
    backends: %[1]s
    timeouts: { response_header: 200ms }
    outlier_detection: { consecutive_failures: 0 }
    retries: { non_idempotent: true, on: [connect_failure, timeout, reset] }
  - name: postdead
    path: "/postdead"
    backends: %[2]s
`, upBackendList(slow.URL(), fast.URL()), upBackendList(dead, fast.URL()))
	g := startGateway(t, engine, upConfig(engine, true, routes))
	c := newClient(t)

	check200 := func(t *testing.T, i int, resp *http.Response, body []byte, be string, sent []byte) {
		t.Helper()
		sum := sha256.Sum256(sent)
		if resp.StatusCode != http.StatusOK || be != "fast" {
			t.Errorf("POST %d: status %d from %q, body %q; want 200 from fast", i, resp.StatusCode, be, body)
			return
		}
		if got := resp.Header.Get("X-Body-Sha256"); got != hex.EncodeToString(sum[:]) {
			t.Errorf("POST %d: the backend got a body of %s bytes with SHA-256 %s, want %d bytes %x", i, resp.Header.Get("X-Body-Len"), got, len(sent), sum)
		}
	}

	t.Run("timeout not retried", func(t *testing.T) {
		var n504, n200 int
		for i := range 4 {
			payload := []byte(fmt.Sprintf("post body %d", i))
			start := time.Now()
			resp, body, be := upSend(t, c, "POST", g.URL()+"/post", nil, payload)
			switch resp.StatusCode {
			case http.StatusGatewayTimeout:
				n504++
				eb := checkErrorResponse(t, resp, body, http.StatusGatewayTimeout)
				if eb.Error != "backend timeout" {
					t.Errorf("POST %d: error %q", i, eb.Error)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("POST %d: 504 after %v", i, d)
				}
			default:
				n200++
				check200(t, i, resp, body, be, payload)
			}
		}
		if n504 != 2 || n200 != 2 {
			t.Errorf("%d × 504 and %d × 200, want 2 each: a POST that times out must not be retried", n504, n200)
		}
		if n := upLogCount(g, "retrying request", map[string]any{"route": "post"}); n != 0 {
			t.Errorf("%d POSTs retried after a timeout", n)
		}
	})
	t.Run("timeout retried with non_idempotent", func(t *testing.T) {
		for i := range 4 {
			payload := []byte(fmt.Sprintf("post body %d", i))
			resp, body, be := upSend(t, c, "POST", g.URL()+"/postretry", nil, payload)
			check200(t, i, resp, body, be, payload)
		}
		upWaitLog(t, g, 3*time.Second, 1, "retrying request", map[string]any{"route": "postretry", "reason": "timeout", "failed_backend": slow.URL()})
	})
	t.Run("connect failure retried with the body", func(t *testing.T) {
		for i := range 4 {
			payload := make([]byte, 1024)
			rand.Read(payload)
			resp, body, be := upSend(t, c, "POST", g.URL()+"/postdead", nil, payload)
			check200(t, i, resp, body, be, payload)
		}
		upWaitLog(t, g, 3*time.Second, 1, "retrying request", map[string]any{"route": "postdead", "reason": "connect_failure", "failed_backend": dead})
	})
}

// TestUpstreamPostNotResent: a POST that a backend received on a reused
// keep-alive connection, which it then closed without answering, is not
// sent again: the backend may have acted on it (RFC 9110 9.2.2: a proxy
// MUST NOT automatically retry non-idempotent requests).
func TestUpstreamPostNotResent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		var posts atomic.Int64
		// Every POST is counted. The first request of a connection is
		// answered (keep-alive); a later POST is read in full and the
		// connection closed without an answer.
		be := newRawBackend(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			for k := 0; ; k++ {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if req.Method == "POST" {
					posts.Add(1)
					if k > 0 {
						return
					}
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: raw\r\n\r\nok"); err != nil {
					return
				}
			}
		})
		routes := fmt.Sprintf(`  - name: once
    path: "/once"
    backends: %s
`, upBackendList(be.URL()))
		g := startGateway(t, engine, upConfig(engine, true, routes))
		c := newClient(t)

		for _, tc := range []struct {
			name string
			body []byte
		}{{"with a body", []byte("charge the card once")}, {"without a body", nil}} {
			t.Run(tc.name, func(t *testing.T) {
				// A GET leaves a pooled connection behind.
				if resp, body, _ := upSend(t, c, "GET", g.URL()+"/once", nil, nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("GET: status %d, body %q", resp.StatusCode, body)
				}
				time.Sleep(100 * time.Millisecond)
				before := posts.Load()
				body := tc.body
				if body == nil {
					body = []byte{}
				}
				resp, rb, _ := upSend(t, c, "POST", g.URL()+"/once", nil, body)
				got := posts.Load() - before
				if got == 0 {
					t.Skipf("the POST did not reuse the pooled connection (status %d)", resp.StatusCode)
				}
				if got != 1 {
					t.Errorf("the backend received the POST %d times (client got %d %q); a POST the backend read must not be resent", got, resp.StatusCode, rb)
				}
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("POST: status %d, body %q; want 502", resp.StatusCode, rb)
				}
			})
		}
	})
}

// TestUpstreamRetryBudget: with budget 0 only the minimum of retries (3
// per second over the 10 s window, so 30) happen; with budget 1 every
// failure is retried.
func TestUpstreamRetryBudget(t *testing.T) {
	const engine = "fast"
	// resets reads a request head and resets the connection.
	var resets atomic.Int64
	reset := newRawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		resets.Add(1)
		c.(*net.TCPConn).SetLinger(0)
	})
	good := newUpBackend(t, "good", upOK)
	routes := fmt.Sprintf(`  - name: budget0
    path: "/budget0"
    backends: %[1]s
    retries: { attempts: 2, budget: 0.0 }
    outlier_detection: { consecutive_failures: 0 }
  - name: budget1
    path: "/budget1"
    backends: %[1]s
    retries: { attempts: 2, budget: 1.0 }
    outlier_detection: { consecutive_failures: 0 }
`, upBackendList(reset.URL(), good.URL()))
	g := startGateway(t, engine, upConfig(engine, false, routes))
	admin := adminAddr(t, g)
	c := newClient(t)

	// burst sends n GETs, conc at a time, and counts the statuses.
	burst := func(t *testing.T, path string, n, conc int) map[int]int {
		t.Helper()
		var mu sync.Mutex
		codes := map[int]int{}
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					resp, err := c.Get(g.URL() + path)
					code := -1
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes
	}
	retries := func(route string) float64 {
		v, _ := upMetricSum(upScrape(t, c, admin), "rustygate_retries_total", map[string]string{"route": route})
		return v
	}

	t.Run("budget 0", func(t *testing.T) {
		const n, conc = 100, 4
		r0 := resets.Load()
		start := time.Now()
		codes := burst(t, "/budget0", n, conc)
		elapsed := time.Since(start)
		failed := resets.Load() - r0
		retried := retries("budget0")
		t.Logf("%d requests in %v: statuses %v, %d reset attempts, %v retries", n, elapsed, codes, failed, retried)
		if codes[200]+codes[502] != n {
			t.Fatalf("statuses %v, want only 200 and 502", codes)
		}
		if elapsed < 9*time.Second && retried > 30+conc {
			t.Errorf("%v retries within %v with budget 0, want at most the minimum of 30 per 10s (+%d concurrent overshoot)", retried, elapsed, conc)
		}
		if retried < 1 {
			t.Errorf("no retry at all: the budget's minimum should allow some")
		}
		if codes[502] == 0 {
			t.Errorf("no 502: all %d failed attempts were retried despite budget 0", failed)
		}
		if float64(failed) != retried+float64(codes[502]) {
			t.Errorf("%d failed attempts, %v retried and %d answered 502: each failure should be either retried or answered 502", failed, retried, codes[502])
		}
	})
	t.Run("budget 1", func(t *testing.T) {
		codes := burst(t, "/budget1", 60, 4)
		if codes[200] != 60 {
			t.Errorf("statuses %v, want all 200 with budget 1", codes)
		}
	})
}

// TestUpstreamOutlierDetection: a backend answering 502 is ejected after
// 3 failures in a row, skipped meanwhile and tried again after 1 s.
func TestUpstreamOutlierDetection(t *testing.T) {
	const engine = "fast"
	bad := newUpBackend(t, "bad", upStatus(http.StatusBadGateway, "bad\n"))
	good := newUpBackend(t, "good", upOK)
	routes := fmt.Sprintf(`  - name: outlier
    path: "/outlier"
    backends: %s
    outlier_detection: { consecutive_failures: 3, base_ejection: 1s }
`, upBackendList(bad.URL(), good.URL()))
	g := startGateway(t, engine, upConfig(engine, true, routes))
	c := newClient(t)
	url := g.URL() + "/outlier"

	n502 := 0
	var third time.Time
	for i := 0; n502 < 3; i++ {
		if i == 20 {
			t.Fatalf("only %d × 502 in 20 requests", n502)
		}
		resp, body, be := upSend(t, c, "GET", url, nil, nil)
		switch {
		case resp.StatusCode == http.StatusBadGateway && be == "bad":
			n502++
			third = time.Now()
		case resp.StatusCode == http.StatusOK && be == "good":
		default:
			t.Fatalf("request %d: status %d from %q, body %q", i, resp.StatusCode, be, body)
		}
	}
	ej := upWaitLog(t, g, 2*time.Second, 1, "backend ejected", map[string]any{"route": "outlier", "backend": bad.URL()})
	if ej["reason"] != "status_502" || ej["for"] != "1s" {
		t.Errorf("ejection line %v, want reason status_502 for 1s", ej)
	}

	hits := bad.hits.Load()
	for i := range 10 {
		resp, body, be := upSend(t, c, "GET", url, nil, nil)
		if resp.StatusCode != http.StatusOK || be != "good" {
			t.Errorf("while ejected, request %d: status %d from %q, body %q", i, resp.StatusCode, be, body)
		}
	}
	if d := time.Since(third); d < 900*time.Millisecond && bad.hits.Load() != hits {
		t.Errorf("the ejected backend got %d requests within %v of its ejection", bad.hits.Load()-hits, d)
	}

	time.Sleep(time.Until(third.Add(1300 * time.Millisecond)))
	var back int
	for range 4 {
		resp, _, be := upSend(t, c, "GET", url, nil, nil)
		if resp.StatusCode == http.StatusBadGateway && be == "bad" {
			back++
		}
	}
	if back == 0 {
		t.Errorf("the backend was not tried again after its 1s ejection")
	}
}

// TestUpstreamMaxConns: with max_conns 1 a second and third concurrent
// request wait max_conns_wait, then get 503.
func TestUpstreamMaxConns(t *testing.T) {
	const engine = "fast"
	hold := newUpBackend(t, "hold", upSleep(500*time.Millisecond))
	routes := fmt.Sprintf(`  - name: limited
    path: "/limited"
    backends: %s
    max_conns: 1
    max_conns_wait: 100ms
`, upBackendList(hold.URL()))
	g := startGateway(t, engine, upConfig(engine, true, routes))
	c := newClient(t)

	type result struct {
		resp    *http.Response
		body    []byte
		err     error
		elapsed time.Duration
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range results {
		wg.Go(func() {
			<-startGate
			start := time.Now()
			resp, err := c.Get(g.URL() + "/limited")
			r := result{resp: resp, err: err}
			if err == nil {
				r.body, r.err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			r.elapsed = time.Since(start)
			results[i] = r
		})
	}
	close(startGate)
	wg.Wait()

	var n200, n503 int
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		switch r.resp.StatusCode {
		case http.StatusOK:
			n200++
			if r.elapsed < 450*time.Millisecond {
				t.Errorf("request %d: 200 after %v, the backend holds 500ms", i, r.elapsed)
			}
		case http.StatusServiceUnavailable:
			n503++
			eb := checkErrorResponse(t, r.resp, r.body, http.StatusServiceUnavailable)
			if eb.Error != "backend connection limit reached" {
				t.Errorf("request %d: error %q", i, eb.Error)
			}
			if r.elapsed < 80*time.Millisecond || r.elapsed > 450*time.Millisecond {
				t.Errorf("request %d: 503 after %v, want after the 100ms max_conns_wait", i, r.elapsed)
			}
		default:
			t.Errorf("request %d: status %d, body %q", i, r.resp.StatusCode, r.body)
		}
	}
	if n200 != 1 || n503 != 2 {
		t.Errorf("%d × 200 and %d × 503, want 1 and 2", n200, n503)
	}
	if h := hold.hits.Load(); h != 1 {
		t.Errorf("the backend got %d requests, want 1", h)
	}
}

// TestUpstreamNoHealthyBackend: every backend down gives 503, unless the
// route fails open, which still tries them.
func TestUpstreamNoHealthyBackend(t *testing.T) {
	const engine = "fast"
	sick := newUpBackend(t, "sick", upOK)
	sick.setHealth(http.StatusInternalServerError)
	dead1, dead2 := "http://"+closedAddr(t), "http://"+closedAddr(t)
	const hc = "    health_check: { path: /health, interval: 100ms, timeout: 50ms }\n"
	routes := fmt.Sprintf(`  - name: down
    path: "/down"
    backends: %[1]s
%[3]s  - name: down-open
    path: "/down-open"
    backends: %[1]s
    fail_open: true
%[3]s  - name: sick
    path: "/sick"
    backends: %[2]s
%[3]s  - name: sick-open
    path: "/sick-open"
    backends: %[2]s
    fail_open: true
%[3]s`, upBackendList(dead1, dead2), upBackendList(sick.URL()), hc)
	g := startGateway(t, engine, upConfig(engine, true, routes))
	admin := adminAddr(t, g)
	c := newClient(t)

	for _, w := range []struct{ route, backend string }{
		{"down", dead1}, {"down", dead2}, {"down-open", dead1}, {"down-open", dead2},
		{"sick", sick.URL()}, {"sick-open", sick.URL()},
	} {
		upWaitLog(t, g, 3*time.Second, 1, "backend down", map[string]any{"route": w.route, "backend": w.backend})
	}
	var started time.Time
	for _, l := range g.lines() {
		if l["msg"] == "RustyGate started" {
			started = upLogTime(t, l)
		}
	}
	for _, l := range g.lines() {
		if l["msg"] == "backend down" {
			// Probed right away, then every 100ms: down after 2 probes.
			if d := upLogTime(t, l).Sub(started); d > time.Second {
				t.Errorf("%s of %s marked down %v after the start, want within ~2 intervals", l["backend"], l["route"], d)
			}
		}
	}
	m := upScrape(t, c, admin)
	if v, n := upMetricSum(m, "rustygate_backend_up", nil); n != 6 || v != 0 {
		t.Errorf("rustygate_backend_up: %d series summing to %v, want 6 at 0", n, v)
	}

	t.Run("all down", func(t *testing.T) {
		for _, path := range []string{"/down", "/sick"} {
			resp, body := get(t, c, g.URL()+path)
			eb := checkErrorResponse(t, resp, body, http.StatusServiceUnavailable)
			if eb.Error != "no healthy backend" {
				t.Errorf("%s: error %q, want \"no healthy backend\"", path, eb.Error)
			}
		}
	})
	t.Run("fail open, dead", func(t *testing.T) {
		resp, body := get(t, c, g.URL()+"/down-open")
		eb := checkErrorResponse(t, resp, body, http.StatusBadGateway)
		if eb.Error != "backend unreachable" {
			t.Errorf("error %q, want \"backend unreachable\"", eb.Error)
		}
	})
	t.Run("fail open, answering", func(t *testing.T) {
		hits := sick.hits.Load()
		resp, body, be := upSend(t, c, "GET", g.URL()+"/sick-open", nil, nil)
		if resp.StatusCode != http.StatusOK || be != "sick" || string(body) != "ok" {
			t.Errorf("status %d from %q, body %q; want 200 from the backend failing its health checks", resp.StatusCode, be, body)
		}
		if sick.hits.Load() != hits+1 {
			t.Errorf("the backend got %d requests, want 1", sick.hits.Load()-hits)
		}
	})
}

// upHoldBackend holds requests carrying X-Hold until released.
type upHoldBackend struct {
	*upBackend
	held    atomic.Int64
	release chan struct{}
	once    sync.Once
}

func newUpHoldBackend(t *testing.T, name string) *upHoldBackend {
	hb := &upHoldBackend{release: make(chan struct{})}
	hb.upBackend = newUpBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Hold") != "" {
			hb.held.Add(1)
			defer hb.held.Add(-1)
			select {
			case <-hb.release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	return hb
}

func (hb *upHoldBackend) unhold() { hb.once.Do(func() { close(hb.release) }) }

// TestUpstreamStrategies: the selection strategies, end to end.
func TestUpstreamStrategies(t *testing.T) {
	const engine = "fast"
	r1 := newUpBackend(t, "r1", upOK)
	r2 := newUpBackend(t, "r2", upOK)
	r3 := newUpBackend(t, "r3", upOK)
	lcA := newUpHoldBackend(t, "lcA")
	lcB := newUpHoldBackend(t, "lcB")
	routes := fmt.Sprintf(`  - name: rr
    path: "/rr"
    backends: %[1]s
    strategy: round_robin
  - name: ch
    path: "/ch"
    backends: %[1]s
    strategy: consistent_hash
    hash_key: "header:X-User"
  - name: wrr
    path: "/wrr"
    backends: [ { url: %[2]q, weight: 3 }, { url: %[3]q, weight: 1 } ]
    strategy: weighted_round_robin
  - name: lc
    path: "/lc"
    backends: %[4]s
    strategy: least_connections
`, upBackendList(r1.URL(), r2.URL(), r3.URL()), r1.URL(), r2.URL(), upBackendList(lcA.URL(), lcB.URL()))
	g := startGateway(t, engine, upConfig(engine, false, routes))
	c := newClient(t)

	pick := func(t *testing.T, path string, hdr http.Header) string {
		t.Helper()
		resp, body, be := upSend(t, c, "GET", g.URL()+path, hdr, nil)
		if resp.StatusCode != http.StatusOK || be == "" {
			t.Fatalf("%s: status %d from %q, body %q", path, resp.StatusCode, be, body)
		}
		return be
	}

	t.Run("round_robin", func(t *testing.T) {
		var seq []string
		for range 30 {
			seq = append(seq, pick(t, "/rr", nil))
		}
		if seq[0] == seq[1] || seq[1] == seq[2] || seq[0] == seq[2] {
			t.Fatalf("first three picks %v are not the three backends", seq[:3])
		}
		for i := range seq {
			if seq[i] != seq[i%3] {
				t.Fatalf("pick %d is %s, want %s: sequence %v", i, seq[i], seq[i%3], seq)
			}
		}
	})
	t.Run("consistent_hash", func(t *testing.T) {
		owner := map[string]string{}
		used := map[string]bool{}
		for round := range 5 {
			for u := range 10 {
				user := fmt.Sprintf("user-%d", u)
				be := pick(t, "/ch", http.Header{"X-User": {user}})
				if round == 0 {
					owner[user] = be
					used[be] = true
				} else if be != owner[user] {
					t.Errorf("round %d: %s went to %s, before to %s", round, user, be, owner[user])
				}
			}
		}
		if len(used) < 2 {
			t.Errorf("10 users all on %v, want them spread over at least 2 backends", used)
		}
	})
	t.Run("weighted_round_robin", func(t *testing.T) {
		got := map[string]int{}
		for range 400 {
			got[pick(t, "/wrr", nil)]++
		}
		if got["r1"] < 280 || got["r1"] > 320 || got["r1"]+got["r2"] != 400 {
			t.Errorf("weights 3:1 over 400 requests gave %v, want r1 at 75%% ± 5%% (280-320)", got)
		}
	})
	t.Run("least_connections", func(t *testing.T) {
		var wg sync.WaitGroup
		defer wg.Wait()
		defer lcA.unhold()
		defer lcB.unhold()
		holdErrs := make(chan error, 6)
		// Six held requests, sent one at a time, fill both backends to 3.
		for i := range 6 {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", g.URL()+"/lc", nil)
				req.Header.Set("X-Hold", "1")
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("held request: status %d", resp.StatusCode)
					}
				}
				if err != nil {
					holdErrs <- err
				}
			})
			deadline := time.Now().Add(3 * time.Second)
			for lcA.held.Load()+lcB.held.Load() != int64(i+1) {
				if time.Now().After(deadline) {
					t.Fatalf("held request %d did not reach a backend", i)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		if a, b := lcA.held.Load(), lcB.held.Load(); a != 3 || b != 3 {
			t.Fatalf("held requests %d on lcA and %d on lcB, want 3 each", a, b)
		}
		// lcB finishes its three; lcA stays busy with three.
		lcB.unhold()
		deadline := time.Now().Add(3 * time.Second)
		for lcB.held.Load() != 0 || lcB.running.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("lcB's held requests did not finish")
			}
			time.Sleep(2 * time.Millisecond)
		}
		// Let the gateway see the three responses end.
		time.Sleep(50 * time.Millisecond)
		for i := range 10 {
			if be := pick(t, "/lc", nil); be != "lcB" {
				t.Errorf("fresh request %d went to %s, which holds 3 requests, not to the idle lcB", i, be)
			}
		}
		lcA.unhold()
		wg.Wait()
		close(holdErrs)
		for err := range holdErrs {
			t.Error(err)
		}
	})
}

// TestUpstreamLoadWithKill: 20,000 GETs at concurrency 32 while one of
// the two backends is killed: every response is a 200.
func TestUpstreamLoadWithKill(t *testing.T) {
	const (
		engine = "fast"
		total  = 20000
		conc   = 32
		killAt = 5000
	)
	a := newUpBackend(t, "a", upOK)
	b := newUpBackend(t, "b", upOK)
	routes := fmt.Sprintf(`  - name: load
    path: "/load"
    backends: %s
    health_check: { path: /health, interval: 100ms, timeout: 90ms }
`, upBackendList(a.URL(), b.URL()))
	g := startGateway(t, engine, upConfig(engine, false, routes))
	admin := adminAddr(t, g)

	tr := &http.Transport{
		DisableCompression:  true,
		MaxIdleConns:        2 * conc,
		MaxIdleConnsPerHost: conc,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		next, done atomic.Int64
		failed     atomic.Int64
		mu         sync.Mutex
		samples    []string
		wg         sync.WaitGroup
		killed     = make(chan struct{})
		bHitsKill  atomic.Int64
	)
	record := func(i int64, what string) {
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(samples) < 10 {
			samples = append(samples, fmt.Sprintf("request %d: %s", i, what))
		}
	}
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > total {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", g.URL()+"/load", nil)
				resp, err := c.Do(req)
				if err != nil {
					record(i, err.Error())
				} else {
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case err != nil:
						record(i, "reading body: "+err.Error())
					case resp.StatusCode != http.StatusOK || string(body) != "ok":
						record(i, fmt.Sprintf("status %d, body %q", resp.StatusCode, body))
					}
				}
				if done.Add(1) == killAt {
					go func() {
						defer close(killed)
						b.stop()
						bHitsKill.Store(b.hits.Load())
					}()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend was not killed")
	}
	t.Logf("%d requests in %v (%.0f/s); backend a served %d, b %d (all before the kill: %v)",
		done.Load(), elapsed, float64(done.Load())/elapsed.Seconds(), a.hits.Load(), b.hits.Load(), b.hits.Load() == bHitsKill.Load())
	if n := done.Load(); n != total {
		t.Errorf("only %d of %d requests done within 60s", n, total)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d client errors, e.g.:\n%s", n, strings.Join(samples, "\n"))
	}
	if b.hits.Load() < killAt/4 || a.hits.Load() < total/2 {
		t.Errorf("a served %d and b %d: want both before the kill and a after it", a.hits.Load(), b.hits.Load())
	}
	upWaitLog(t, g, 3*time.Second, 1, "backend down", map[string]any{"route": "load", "backend": b.URL()})
	var why []string
	for _, s := range upScrape(t, newClient(t), admin) {
		if s.name == "rustygate_retries_total" || s.name == "rustygate_backend_failures_total" {
			why = append(why, fmt.Sprintf("%s{backend=%q,reason=%q} %v", s.name, s.labels["backend"], s.labels["reason"], s.value))
		}
	}
	t.Logf("after the kill:\n%s", strings.Join(why, "\n"))
	if n := upLogCount(g, "backend down", map[string]any{"backend": a.URL()}); n != 0 {
		t.Errorf("the live backend was marked down %d times under load", n)
	}
}

// TestUpstreamReadmeMultiBackend: the README's configuration block, with
// only its listen addresses and backend URLs pointed at local ones, runs
// and its multi-backend /api/users route works as documented.
func TestUpstreamReadmeMultiBackend(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const open = "```yaml\nserver:"
	i := bytes.Index(readme, []byte(open))
	if i < 0 {
		t.Fatal("README.md has no ```yaml block starting with server:")
	}
	block := readme[i+len("```yaml\n"):]
	end := bytes.Index(block, []byte("\n```"))
	if end < 0 {
		t.Fatal("README.md: unterminated yaml block")
	}
	yaml := string(block[:end+1])

	type userSeen struct{ backend, uri, host, method string }
	var mu sync.Mutex
	var seenReqs []userSeen
	users := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			mu.Lock()
			seenReqs = append(seenReqs, userSeen{name, r.RequestURI, r.Host, r.Method})
			mu.Unlock()
			io.WriteString(w, "user from "+name)
		}
	}
	u1 := newUpBackend(t, "users1", users("users1"))
	u2 := newUpBackend(t, "users2", users("users2"))
	single := newUpBackend(t, "single", upOK)
	for _, r := range []struct{ old, new string }{
		{`listen: ":8080"`, `listen: "127.0.0.1:0"`},
		{`listen: "127.0.0.1:8081"`, `listen: "127.0.0.1:0"`},
		{`"http://localhost:8001"`, strconv.Quote(single.URL())},
		{`"http://users1:8001"`, strconv.Quote(u1.URL())},
		{`"http://users2:8001"`, strconv.Quote(u2.URL())},
	} {
		if strings.Count(yaml, r.old) != 1 {
			t.Fatalf("the README's configuration block no longer has %s once:\n%s", r.old, yaml)
		}
		yaml = strings.Replace(yaml, r.old, r.new, 1)
	}
	// The block reads the admin token from the environment.
	t.Setenv("RUSTYGATE_ADMIN_TOKEN", "readme-e2e-token")
	g := startGateway(t, "fast", yaml)
	c := newClient(t)

	req := func(method, host, uri string) (*http.Response, []byte) {
		r, err := http.NewRequest(method, g.URL()+uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = host
		return do(t, c, r)
	}

	var order []string
	for i := range 10 {
		resp, body := req("GET", "api.example.com", fmt.Sprintf("/api/users/%d?x=1", i))
		be := resp.Header.Get("X-Backend")
		if resp.StatusCode != http.StatusOK || string(body) != "user from "+be {
			t.Fatalf("GET /api/users/%d: status %d from %q, body %q", i, resp.StatusCode, be, body)
		}
		order = append(order, be)
	}
	for i := range order {
		if order[i] != order[i%2] || order[0] == order[1] {
			t.Fatalf("round_robin over the two users backends gave %v, want them alternating", order)
		}
	}
	mu.Lock()
	for i, s := range seenReqs[:10] {
		if want := fmt.Sprintf("/%d?x=1", i); s.uri != want || s.host != "api.example.com" {
			t.Errorf("request %d reached %s as %q with Host %q, want %q (strip_prefix) and api.example.com", i, s.backend, s.uri, s.host, want)
		}
	}
	mu.Unlock()

	if resp, _ := req("POST", "api.example.com", "/api/users"); resp.StatusCode != http.StatusOK {
		t.Errorf("POST /api/users: status %d, want 200", resp.StatusCode)
	}
	resp, body := req("DELETE", "api.example.com", "/api/users/1")
	checkErrorResponse(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = req("GET", "other.example.com", "/api/users/1")
	checkErrorResponse(t, resp, body, http.StatusNotFound)
	if resp, body := req("GET", "whatever.example", "/api/test"); resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("GET /api/test: status %d, body %q", resp.StatusCode, body)
	}
}
