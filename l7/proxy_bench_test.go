package l7

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/rustygate/rustygate/config"
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
	b.Run("tracing=ratio1", func(b *testing.B) {
		roundTrip := keepAliveClientChain(b, "fast", observe.NewMetrics(), "/bench", tracedChain(b))
		b.ReportAllocs()
		for b.Loop() {
			roundTrip()
		}
	})
	for _, chain := range append(append(benchChains[1:], policyChains(b)...), wasmChain(b)) {
		b.Run("chain="+chain.name, func(b *testing.B) {
			roundTrip := keepAliveClientChain(b, "fast", observe.NewMetrics(), "/bench", chain)
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
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
	return keepAliveClientChain(b, engine, metrics, target, benchChain{})
}

// benchChain is a route's middlewares (a YAML flow sequence, "" for none)
// and the header lines the client sends for them, the gateway's tracer
// (nil: tracing off), and guestCalls, the WASM guest calls per request (a
// chain with some gets a plugin host).
type benchChain struct {
	name, middlewares, headers string
	tracer                     *observe.Tracer
	guestCalls                 int
}

// tracedChain is the chain of a gateway tracing every request (ratio
// 1.0) to a real OTLP/HTTP receiver, which reads and acknowledges each
// export, in batches sent at least every 20 ms.
func tracedChain(tb testing.TB) benchChain {
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	tr, err := observe.NewTracer(context.Background(), config.Tracing{
		Enabled: true, Endpoint: recv.URL, Protocol: config.TracingHTTP, Ratio: 1,
		BatchTimeout: config.Duration(20 * time.Millisecond),
	}, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		tr.Shutdown(context.Background())
		recv.Close()
	})
	return benchChain{name: "tracing_ratio1", tracer: tr}
}

// benchChains are the chains whose hot path must not allocate.
var benchChains = []benchChain{
	{name: "none"},
	{name: "ip_filter", middlewares: `[ { name: ip_filter, allow: ["127.0.0.0/8"], deny: ["10.0.0.0/8"] } ]`},
	{
		name: "ip_filter+basic_auth",
		// bench:pw, its bcrypt verification cached after the warm-up.
		middlewares: `[ { name: ip_filter, allow: ["127.0.0.0/8"] }, { name: basic_auth, user_header: X-User, users: ["bench:$2a$04$FHPnDiiGNAuIbTmQ.WNscO/kdmRhU66yOoRcPxCyUURQ8VUvmwK16"] } ]`,
		headers:     "Authorization: Basic YmVuY2g6cHc=\r\n",
	},
	{
		name: "headers",
		// Constant values on both sides.
		middlewares: `[ { name: headers, request: { set: { X-Env: prod }, add: { X-Gw: "1" }, remove: [X-Debug] }, response: { set: { X-Frame-Options: DENY }, remove: [X-Powered-By] } } ]`,
	},
	{
		name:        "headers+ip_filter+basic_auth",
		middlewares: `[ { name: ip_filter, allow: ["127.0.0.0/8"] }, { name: basic_auth, users: ["bench:$2a$04$FHPnDiiGNAuIbTmQ.WNscO/kdmRhU66yOoRcPxCyUURQ8VUvmwK16"] }, { name: headers, request: { set: { X-Env: prod } }, response: { set: { X-Frame-Options: DENY } } } ]`,
		headers:     "Authorization: Basic YmVuY2g6cHc=\r\n",
	},
}

// policyChains are the chains of the policies a gateway is chosen for:
// cors, rate_limit (a limit never reached) and jwt, with an HS256 and an
// RS256 token that the client repeats (verified once, then a cache hit).
func policyChains(tb testing.TB) []benchChain {
	claims := gojwt.MapClaims{"sub": "bench", "aud": "api", "exp": time.Now().Add(24 * time.Hour).Unix()}
	const secret = "bench-hs256-secret-0123456789abcdef"
	hs, err := gojwt.NewWithClaims(gojwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	rs, err := gojwt.NewWithClaims(gojwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	pemFile := filepath.Join(tb.TempDir(), "jwt.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	const policies = `{ name: cors, allow_origins: ["http://bench.example"] }, { name: rate_limit, limit: 100000000, window: 60, key: ip }`
	return []benchChain{
		{
			name:        "cors+rate_limit+jwt_hs256",
			middlewares: fmt.Sprintf(`[ %s, { name: jwt, algorithms: [HS256], secret: %q, audience: [api], claims_to_headers: { sub: X-User } } ]`, policies, secret),
			headers:     "Origin: http://bench.example\r\nAuthorization: Bearer " + hs + "\r\n",
		},
		{
			name:        "cors+rate_limit+jwt_rs256",
			middlewares: fmt.Sprintf(`[ %s, { name: jwt, algorithms: [RS256], public_key_file: %q, audience: [api] } ]`, policies, pemFile),
			headers:     "Origin: http://bench.example\r\nAuthorization: Bearer " + rs + "\r\n",
		},
	}
}

// keepAliveClientChain is keepAliveClientTarget with the route's chain.
func keepAliveClientChain(b testing.TB, engine string, metrics *observe.Metrics, target string, chain benchChain) func() {
	be := rawBackend(b)
	route := fmt.Sprintf("  - { path: \"/\", backend: \"http://%s\" }\n", be)
	if chain.middlewares != "" {
		route = fmt.Sprintf("  - { path: \"/\", backend: \"http://%s\", middlewares: %s }\n", be, chain.middlewares)
	}
	var setup func(*Transport)
	if chain.guestCalls > 0 {
		setup = pluginHost(b, 100*time.Millisecond)
	}
	gw := startGatewayWith(b, engine, "", route, metrics, chain.tracer, setup)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	req := []byte("GET " + target + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n" + chain.headers + "\r\n")
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
				if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
					b.Fatalf("answer %q", buf[:n])
				}
				return
			}
		}
	}
	warm := 100
	if chain.tracer != nil {
		warm = 2000 // and the span records, recycled once exported
	}
	for range warm {
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

// TestProxyAllocations guards the hot path: a proxied keep-alive request
// allocates nothing, with metrics on, without middlewares and with each
// chain of benchChains, the policies' and a WASM plugin's (its guest
// calls included).
func TestProxyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	for _, engine := range []string{"fast", "fast-goroutines"} {
		for _, target := range []string{"/bench", normalizedBenchTarget} {
			roundTrip := keepAliveClientTarget(t, engine, observe.NewMetrics(), target)
			if n := testing.AllocsPerRun(200, roundTrip); n > 0 {
				t.Fatalf("%s %s: %.1f allocations per proxied request, want 0", engine, target, n)
			}
		}
		for _, chain := range append(append(benchChains[1:], policyChains(t)...), wasmChain(t)) {
			roundTrip := keepAliveClientChain(t, engine, observe.NewMetrics(), "/bench", chain)
			if n := testing.AllocsPerRun(200, roundTrip); n > 0 {
				t.Fatalf("%s with %s: %.1f allocations per proxied request, want 0", engine, chain.name, n)
			}
		}
		traced := tracedChain(t)
		roundTrip := keepAliveClientChain(t, engine, observe.NewMetrics(), "/bench", traced)
		if n := testing.AllocsPerRun(1000, roundTrip); n > 0 {
			t.Fatalf("%s with tracing at ratio 1.0: %.1f allocations per proxied request, want 0", engine, n)
		}
		if err := traced.tracer.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Every span was exported: 2 per request (server and attempt).
		if c := traced.tracer.SpanCounters(); c.Exported != 2*(2000+1001) || c.Dropped != 0 || c.Failed != 0 {
			t.Errorf("%s: span counters %+v, want %d exported", engine, c, 2*(2000+1001))
		}
	}
}
