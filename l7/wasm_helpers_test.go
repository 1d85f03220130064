package l7

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rustygate/rustygate/l7/middleware/wasm"
	"github.com/rustygate/rustygate/plugins"
)

// wasmGuest builds an http-wasm guest for the tests: an example of
// plugins/examples ("add_header") or a guest of testdata ("wasmspin"),
// into a temporary directory.
func wasmGuest(t testing.TB, name string) string {
	t.Helper()
	src := "../plugins/examples/" + name
	if _, err := os.Stat(src); err != nil {
		src = "./testdata/" + name
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", out, src)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building guest %s: %v\n%s", name, err, b)
	}
	return out
}

// wasmGateway starts a fast-engine gateway whose WASM plugins run in a
// plugin host with the given call deadline, closed after the gateway.
func wasmGateway(t testing.TB, server, routes string, deadline time.Duration) *testGateway {
	t.Helper()
	return startGatewayWith(t, "fast", server, routes, nil, nil, pluginHost(t, deadline))
}

// pluginHost starts a plugin host with the given call deadline, closed
// when the test ends (after the gateways started later), and returns the
// setup that hands it to a gateway's middlewares.
func pluginHost(t testing.TB, deadline time.Duration) func(*Transport) {
	t.Helper()
	m, err := plugins.NewManager(plugins.Options{Timeout: deadline, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return func(tr *Transport) { tr.SetResource(wasm.ManagerResource, m) }
}

// wasmChain is the route chain of plugins/examples/add_header (two guest
// calls per request: handle_request and handle_response), for the
// allocation test and the benchmarks; its gateway gets a plugin host.
func wasmChain(tb testing.TB) benchChain {
	return benchChain{
		name:        "wasm_add_header",
		middlewares: fmt.Sprintf(`[ { name: wasm, path: %q } ]`, wasmGuest(tb, "add_header")),
		guestCalls:  2,
	}
}
