package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
)

// testGateway runs a Server on a loopback listener with the given engine
// and routes (YAML list items), and stops it when the test ends.
type testGateway struct {
	addr string
	srv  *Server
	logs *strings.Builder
}

func startGateway(t testing.TB, engine, routes string) *testGateway {
	t.Helper()
	return startGatewayMetrics(t, engine, routes, nil)
}

// startGatewayMetrics is startGateway recording into metrics (nil: none).
func startGatewayMetrics(t testing.TB, engine, routes string, metrics *observe.Metrics) *testGateway {
	t.Helper()
	return startGatewayServer(t, engine, "", routes, metrics)
}

// startGatewayServer is startGatewayMetrics with more server settings
// (flow-mapping entries, e.g. "headers_with_underscores: allow").
func startGatewayServer(t testing.TB, engine, server, routes string, metrics *observe.Metrics) *testGateway {
	t.Helper()
	return startGatewayWith(t, engine, server, routes, metrics, nil, nil)
}

// startGatewayTraced is startGatewayServer with a tracer (nil: none).
func startGatewayTraced(t testing.TB, engine, server, routes string, metrics *observe.Metrics, tracer *observe.Tracer) *testGateway {
	t.Helper()
	return startGatewayWith(t, engine, server, routes, metrics, tracer, nil)
}

// startGatewayWith is startGatewayServer with a tracer (nil: none) and
// setup run on the transport before the snapshot is built (to hand it
// resources: SetResource).
func startGatewayWith(t testing.TB, engine, server, routes string, metrics *observe.Metrics, tracer *observe.Tracer, setup func(*Transport)) *testGateway {
	t.Helper()
	if server != "" {
		server = ", " + server
	}
	yaml := fmt.Sprintf("server: { listen: \"127.0.0.1:0\", %s%s }\nadmin: { listen: \"127.0.0.1:0\" }\nlog: { access: false }\nroutes:\n%s", engineYAML(engine), server, routes)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	lg, err := observe.NewLogger(io.Discard, observe.LogOptions{Format: "json", Level: "error", Access: false})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(nil, nil)
	if setup != nil {
		setup(tr)
	}
	snap, err := NewSnapshot(cfg, tr, metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(snap, tr, lg, metrics)
	srv.SetTracer(tracer)
	tr.Activate(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		tr.Close()
		lg.Close()
	})
	return &testGateway{addr: ln.Addr().String(), srv: srv}
}

// backend starts an httptest server on loopback.
func backend(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// rawExchange sends raw bytes and reads the whole answer until the
// gateway closes the connection (or the deadline passes).
func rawExchange(t testing.TB, addr, raw string) (string, bool) {
	t.Helper()
	return rawExchangeHalfClose(t, addr, raw, false)
}

// rawExchangeHalfClose is rawExchange that can also end the client's
// sending side after the request.
func rawExchangeHalfClose(t testing.TB, addr, raw string, halfClose bool) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	b, err := io.ReadAll(c)
	closed := err == nil
	return string(b), closed
}

// statusOf returns the status code of the first response in raw.
func statusOf(raw string) int {
	br := bufio.NewReader(strings.NewReader(raw))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// engines are the configurations behaviour tests run on: the fast engine
// on event loops (the default), the fast engine with a goroutine per
// connection, and net/http.
var engines = []string{"fast", "fast-goroutines", "standard"}

// engineYAML is the server settings (inside a flow mapping) of an entry
// of engines.
func engineYAML(engine string) string {
	if engine == "fast-goroutines" {
		return `engine: fast, event_loops: "off"`
	}
	return "engine: " + engine
}
