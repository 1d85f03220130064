package l7

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/rustygate/rustygate/observe"
)

// rawBackend answers every request on a keep-alive connection with a
// fixed 64-byte response, allocating nothing per request, so a
// benchmark's allocs/op are the proxy's own.
func rawBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + string(bytes.Repeat([]byte("x"), 64)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// BenchmarkProxy measures one keep-alive request through the fast engine
// per operation, client and backend on loopback; allocs/op is the
// gateway's allocation per request (expected 0).
func BenchmarkProxy(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchmarkProxy(b, "fast", nil) })
	b.Run("metrics=on", func(b *testing.B) { benchmarkProxy(b, "fast", observe.NewMetrics()) })
	b.Run("goroutines", func(b *testing.B) { benchmarkProxy(b, "fast-goroutines", observe.NewMetrics()) })
	b.Run("headers", func(b *testing.B) {
		// A headers middleware of constant values on both sides.
		roundTrip := keepAliveClientRoute(b, "fast", observe.NewMetrics(), "/bench", headersBenchRoute)
		b.ReportAllocs()
		for b.Loop() {
			roundTrip()
		}
	})
	b.Run("path=normalized", func(b *testing.B) {
		// The path needs normalizing: it is rebuilt in the connection's
		// scratch buffer, still without allocating.
		roundTrip := keepAliveClientTarget(b, "fast", observe.NewMetrics(), normalizedBenchTarget)
		b.ReportAllocs()
		for b.Loop() {
			roundTrip()
		}
	})
}

// keepAliveClient returns a function that sends one request on a
// keep-alive connection to a gateway in front of rawBackend and reads the
// 64-byte answer, allocating nothing.
func keepAliveClient(b testing.TB, engine string, metrics *observe.Metrics) func() {
	return keepAliveClientTarget(b, engine, metrics, "/bench")
}

// keepAliveClientTarget is keepAliveClient sending target as the
// request-target.
func keepAliveClientTarget(b testing.TB, engine string, metrics *observe.Metrics, target string) func() {
	return keepAliveClientRoute(b, engine, metrics, target, "")
}

// keepAliveClientRoute is keepAliveClientTarget with more route settings
// (flow-mapping entries, e.g. middlewares).
func keepAliveClientRoute(b testing.TB, engine string, metrics *observe.Metrics, target, route string) func() {
	be := rawBackend(b)
	if route != "" {
		route = ", " + route
	}
	gw := startGatewayMetrics(b, engine, fmt.Sprintf("  - { path: \"/\", backend: \"http://%s\"%s }\n", be, route), metrics)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	req := []byte("GET " + target + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n-i-4 >= 64 {
				return
			}
		}
	}
	for range 100 {
		roundTrip() // warm the pools
	}
	return roundTrip
}

func benchmarkProxy(b *testing.B, engine string, metrics *observe.Metrics) {
	roundTrip := keepAliveClient(b, engine, metrics)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

// normalizedBenchTarget is a request-target whose path the gateway
// rewrites ("/bench/x-1?q").
const normalizedBenchTarget = "//%62ench/x%2d1?q"

// headersBenchRoute is a route's headers middleware with constant
// values on both sides: it must cost no allocation either.
const headersBenchRoute = `middlewares: [ { name: headers, request: { set: { X-Env: prod }, add: { X-Via-Gw: "1" }, remove: [X-Debug] }, response: { set: { X-Frame-Options: DENY }, remove: [X-Powered-By] } } ]`

// TestProxyAllocations guards the hot path: a proxied keep-alive request
// allocates nothing, with metrics on, with or without a headers
// middleware of constant values.
func TestProxyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	for _, engine := range []string{"fast", "fast-goroutines"} {
		for _, target := range []string{"/bench", normalizedBenchTarget} {
			for _, route := range []string{"", headersBenchRoute} {
				roundTrip := keepAliveClientRoute(t, engine, observe.NewMetrics(), target, route)
				if n := testing.AllocsPerRun(200, roundTrip); n > 0 {
					t.Fatalf("%s %s %s: %.1f allocations per proxied request, want 0", engine, target, route, n)
				}
			}
		}
	}
}
