//go:build linux

package e2e_test

// End-to-end test of a reload that commits all or nothing, through the
// real binary with the kernel datapath: a reload that changes the
// kernel rate limit and adds an l4 listener on a port another socket
// holds fails, and the pinned maps still hold the running rate, burst
// and guarded ports; once the port is free, the same change applies.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rustygate/rustygate/bpf"
	"github.com/rustygate/rustygate/internal/testnet"
)

// kernelLimits is what the pinned limiter maps hold: the interval and
// tolerance of the token bucket (1/rate and burst/rate) and the guarded
// ports.
type kernelLimits struct {
	interval, tolerance time.Duration
	ports               []int
}

// readKernelLimits reads rg_settings and rg_ports pinned under bpffs.
func readKernelLimits(t *testing.T, bpffs string) kernelLimits {
	t.Helper()
	var out kernelLimits
	settings, err := ebpf.LoadPinnedMap(filepath.Join(bpffs, bpf.LimiterMapRgSettings), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer settings.Close()
	var s bpf.LimiterRgSettings
	if err := settings.Lookup(uint32(0), &s); err != nil {
		t.Fatalf("%s: %v", bpf.LimiterMapRgSettings, err)
	}
	out.interval, out.tolerance = time.Duration(s.IntervalNs), time.Duration(s.ToleranceNs)
	ports, err := ebpf.LoadPinnedMap(filepath.Join(bpffs, bpf.LimiterMapRgPorts), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	var port uint16
	var val uint8
	it := ports.Iterate()
	for it.Next(&port, &val) {
		out.ports = append(out.ports, int(port))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("%s: %v", bpf.LimiterMapRgPorts, err)
	}
	slices.Sort(out.ports)
	return out
}

// limitsOf is what kernel_rate_limit {rate, burst} with ports turns into.
func limitsOf(rate, burst int, ports ...int) kernelLimits {
	interval := time.Second / time.Duration(rate)
	ports = slices.Clone(ports)
	slices.Sort(ports)
	return kernelLimits{interval: interval, tolerance: time.Duration(burst) * interval, ports: ports}
}

func (k kernelLimits) String() string {
	return fmt.Sprintf("interval %v, tolerance %v, ports %v", k.interval, k.tolerance, k.ports)
}

func (k kernelLimits) equal(o kernelLimits) bool {
	return k.interval == o.interval && k.tolerance == o.tolerance && slices.Equal(k.ports, o.ports)
}

// TestReloadAllOrNothingDatapath: a reload to a new kernel rate (50/100
// instead of 20/40) that also adds an l4 listener on a port the test
// holds fails (logged, counted as a failure), and then the kernel still
// limits at 20/40 and guards exactly the ports it guarded (not the taken
// one); the running l4 listener still relays. With the port free, the
// same reload applies the new rate and guards the new port, whose
// listener relays.
func TestReloadAllOrNothingDatapath(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
			t.Fatal("RUSTYGATE_REQUIRE_BPF=1, but the kernel datapath needs root and bpffs at /sys/fs/bpf")
		}
		t.Skip("the kernel datapath needs root")
	}
	bpffs := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-e2e-reload-%d", os.Getpid()))
	// Registered first, so it runs after the gateway is stopped.
	t.Cleanup(func() { os.RemoveAll(bpffs) })
	echo := l4EchoBackend(t, "")
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	kept := testnet.FreePortRange(t, "127.0.0.1", 1)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	takenPort := taken.Addr().(*net.TCPAddr).Port

	l4Entry := func(name string, port int) string {
		return fmt.Sprintf("  - name: %s\n    listen: \"127.0.0.1:%d\"\n    backends:\n      - addr: %q\n", name, port, echo.addr())
	}
	cfg := func(version string, rate, burst int, l4 ...string) string {
		extra := fmt.Sprintf("datapath:\n  mode: kernel\n  bpffs: %q\n  interfaces: [lo]\n"+
			"  kernel_rate_limit: { rate: %d, burst: %d }\nl4:\n%s", bpffs, rate, burst, strings.Join(l4, ""))
		return hrCfg{engine: hrEngine, admin: "127.0.0.1:0", version: version,
			routes: hrRoute("web", "/", be.URL), extra: extra}.yaml()
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg("1", 20, 40, l4Entry("kept", kept))), 0o644); err != nil {
		t.Fatal(err)
	}
	p := hrStart(t, path)
	if l := p.startLine(p.pid); l["datapath"] != "kernel" {
		t.Fatalf("startup line %v: want datapath kernel", l)
	}
	proxyPort := portOfAddr(t, p.addr)
	before := readKernelLimits(t, bpffs)
	if want := limitsOf(20, 40, proxyPort, kept); !before.equal(want) {
		t.Fatalf("pinned maps at start: %v, want %v", before, want)
	}
	c := newClient(t)
	_, failures := hrReloadCounts(t, c, p.admin)

	// The new listener's port is taken: the reload fails as a whole.
	hrWrite(t, path, cfg("2", 50, 100, l4Entry("kept", kept), l4Entry("added", takenPort)))
	l := p.sighup(t)
	if l["msg"] != hrMsgFailed || !strings.Contains(fmt.Sprint(l["error"]), strconv.Itoa(takenPort)) {
		t.Fatalf("reload onto a taken port: %v, want %q naming port %d", l, hrMsgFailed, takenPort)
	}
	if _, f := hrReloadCounts(t, c, p.admin); f != failures+1 {
		t.Errorf("failed reloads counted %v, want %v", f, failures+1)
	}
	if after := readKernelLimits(t, bpffs); !after.equal(before) {
		t.Fatalf("pinned maps after the failed reload: %v, want them unchanged: %v", after, before)
	}
	l4RoundTrip(t, dialRaw(t, "127.0.0.1:"+strconv.Itoa(kept), 5*time.Second), "kept after the failed reload")
	hrExpect(t, c, p.url()+"/", http.StatusOK, "ok")

	// Freed, the port takes the listener, and the new rate applies.
	taken.Close()
	hrWrite(t, path, cfg("3", 50, 100, l4Entry("kept", kept), l4Entry("added", takenPort)))
	if l := p.sighup(t); l["msg"] != hrMsgReloaded {
		t.Fatalf("reload with the port free: %v", l)
	}
	if got, want := readKernelLimits(t, bpffs), limitsOf(50, 100, proxyPort, kept, takenPort); !got.equal(want) {
		t.Fatalf("pinned maps after the reload: %v, want %v", got, want)
	}
	l4RoundTrip(t, dialRaw(t, "127.0.0.1:"+strconv.Itoa(takenPort), 5*time.Second), "added after the reload")
	if _, f := hrReloadCounts(t, c, p.admin); f != failures+1 {
		t.Errorf("failed reloads counted %v after the good one, want %v", f, failures+1)
	}
}

// portOfAddr returns the port of a HOST:PORT address.
func portOfAddr(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
