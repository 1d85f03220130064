// Command h3load measures requests per second through RustyGate over
// HTTP/3 against HTTP/2 over TLS, on the same HTTPS listener (its TCP and
// UDP port) and the same route, in one run.
//
//	h3load -serve 127.0.0.1:18001                    # the backend: a 64-byte answer
//	h3load -url https://127.0.0.1:18089/ -k -c 32 -conns 2 -d 5s -rounds 3
//
// Each of -c workers sends GETs one after another for -d over -conns
// client connections (streams multiplexed on each, as browsers do), first
// over HTTP/2, then over HTTP/3, -rounds times; the medians are reported.
// The last line is machine-readable:
//
//	result h2_rps=21000 h3_rps=9000 ratio=0.43 h2_p99_ms=3.1 h3_p99_ms=7.4
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// run is one measurement: requests per second and the sorted latencies.
type run struct {
	rps  float64
	lat  []time.Duration
	errs int
}

func main() {
	serve := flag.String("serve", "", "serve the backend on this address")
	url := flag.String("url", "https://127.0.0.1:18089/", "the gateway's HTTPS URL (HTTP/3 on the same port)")
	insecure := flag.Bool("k", false, "do not verify the gateway's certificate (loopback benchmarks)")
	conc := flag.Int("c", 32, "concurrent requests")
	conns := flag.Int("conns", 1, "client connections per protocol")
	dur := flag.Duration("d", 5*time.Second, "duration of one measurement")
	rounds := flag.Int("rounds", 3, "measurements of each protocol")
	flag.Parse()
	if *serve != "" {
		if err := serveBackend(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	cfg := &tls.Config{InsecureSkipVerify: *insecure}
	if err := compare(*url, cfg, *conc, *conns, *dur, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

var body64 = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n")

func serveBackend(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body64) }))
}

// transports builds n client connections' worth of round trippers for
// proto ("h2" or "h3") and a function that closes them.
func transports(proto string, cfg *tls.Config, n int) ([]http.RoundTripper, func()) {
	rts := make([]http.RoundTripper, n)
	var closers []func()
	for i := range rts {
		if proto == "h3" {
			tr := &http3.Transport{TLSClientConfig: cfg.Clone()}
			rts[i], closers = tr, append(closers, func() { tr.Close() })
		} else {
			tr := &http2.Transport{TLSClientConfig: cfg.Clone()}
			rts[i], closers = tr, append(closers, tr.CloseIdleConnections)
		}
	}
	return rts, func() {
		for _, c := range closers {
			c()
		}
	}
}

func compare(url string, cfg *tls.Config, conc, conns int, dur time.Duration, rounds int) error {
	res := map[string][]run{}
	for r := 0; r < rounds; r++ {
		for _, proto := range []string{"h2", "h3"} {
			rn, err := measure(proto, url, cfg, conc, conns, dur)
			if err != nil {
				return fmt.Errorf("%s: %w", proto, err)
			}
			fmt.Printf("round %d %s: %.0f req/s p50 %s p99 %s errors %d\n", r+1, proto, rn.rps, pct(rn.lat, 50), pct(rn.lat, 99), rn.errs)
			res[proto] = append(res[proto], rn)
		}
	}
	h2, h3 := median(res["h2"]), median(res["h3"])
	fmt.Printf("result h2_rps=%.0f h3_rps=%.0f ratio=%.2f h2_p99_ms=%.2f h3_p99_ms=%.2f\n",
		h2.rps, h3.rps, h3.rps/h2.rps, ms(pct(h2.lat, 99)), ms(pct(h3.lat, 99)))
	return nil
}

// measure runs conc workers for dur after one warm-up request per
// connection.
func measure(proto, url string, cfg *tls.Config, conc, conns int, dur time.Duration) (run, error) {
	rts, closeAll := transports(proto, cfg, conns)
	defer closeAll()
	clients := make([]*http.Client, conns)
	for i, rt := range rts {
		clients[i] = &http.Client{Transport: rt, Timeout: 10 * time.Second}
		if err := get(clients[i], url, proto); err != nil {
			return run{}, err
		}
	}
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(c *http.Client) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			e := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				if get(c, url, proto) != nil {
					e++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all, errs = append(all, lat...), errs+e
			mu.Unlock()
		}(clients[w%conns])
	}
	wg.Wait()
	slices.Sort(all)
	return run{rps: float64(len(all)) / time.Since(start).Seconds(), lat: all, errs: errs}, nil
}

func get(c *http.Client, url, proto string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if want := map[string]int{"h2": 2, "h3": 3}[proto]; resp.ProtoMajor != want || resp.StatusCode != 200 {
		return errors.New("unexpected " + resp.Proto + " " + resp.Status)
	}
	return nil
}

func median(rs []run) run {
	slices.SortFunc(rs, func(a, b run) int {
		switch {
		case a.rps < b.rps:
			return -1
		case a.rps > b.rps:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, len(lat)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
