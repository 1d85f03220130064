//go:build linux

// Command kernel compares the kernel datapath with its userspace twin
// under a connection flood (`make bench-kernel`, as root).
//
// For each mode it builds two network namespaces joined by a veth pair,
// starts a gateway in one and a load generator in the other, each a
// child process of this program entered into its namespace with nsenter:
//
//   - the gateway is a small Go HTTP server (net/http, "ok" to every
//     request) whose listener goes through loader.Datapath: New with the
//     benchmark's limiter config, WrapListener on the listener. In kernel
//     mode the XDP program drops the flood on the veth; in userspace mode
//     every attempt is accepted and the rejected ones reset. It is not the
//     rustygate binary: only the limiter is under test, and the rest of a
//     gateway would cost the same in both modes.
//   - the load generator opens -attempts connections (SYN, then close after
//     200 ms, no request) from -sources source addresses over -duration,
//     while a legitimate client from its own address sends -legit-rps
//     requests per second over keep-alive connections and opens new
//     connections at 80% of the per-source limit, recording latencies.
//
// Reported per mode: the gateway's CPU time (user+system, getrusage) over
// the flood, the machine's busy CPU over the same window (/proc/stat,
// including softirq, where the kernel drops packets), the legitimate
// client's latency percentiles and errors, and the limiter's counters.
// Results go to stdout and to -out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

const (
	serverIf = "rgb-s"
	clientIf = "rgb-c"
	port     = 8080
)

var (
	serverIP = netip.MustParseAddr("10.88.0.1")
	legitIP  = netip.MustParseAddr("10.88.2.1")
)

// floodIP is the i-th flooding source, 10.88.16.1 upwards.
func floodIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 88, byte(16 + i/254), byte(1 + i%254)})
}

type options struct {
	attempts  int
	sources   int
	duration  time.Duration
	rate      int
	burst     int
	legitRPS  int
	modes     string
	rounds    int
	out       string
	verbose   bool
	bpffsRoot string
}

func main() {
	var o options
	role := flag.String("role", "bench", "internal: bench, gateway or loadgen")
	flag.IntVar(&o.attempts, "attempts", 50000, "connection attempts in the flood")
	flag.IntVar(&o.sources, "sources", 200, "flooding source addresses")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the flood")
	flag.IntVar(&o.rate, "rate", 1, "limiter: new connections per second per source")
	flag.IntVar(&o.burst, "burst", 5, "limiter: burst per source")
	flag.IntVar(&o.legitRPS, "legit-rps", 100, "requests per second of the legitimate client (a latency probe: 1000 samples over 10 s)")
	flag.StringVar(&o.modes, "modes", "baseline,kernel,userspace", "modes to run: kernel, userspace, and baseline (userspace without the flood: the legitimate client's own cost)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds over the modes, interleaved; the report gives medians")
	flag.StringVar(&o.out, "out", "test/bench/out/kernel.md", "report file (\"\" for none)")
	flag.BoolVar(&o.verbose, "v", false, "log the gateway's datapath messages")
	flag.StringVar(&o.bpffsRoot, "bpffs", "/sys/fs/bpf", "bpffs under which the gateway pins (a fresh subdirectory)")
	mode := flag.String("mode", "", "internal: the gateway's datapath mode")
	bpffs := flag.String("gateway-bpffs", "", "internal: the gateway's bpffs directory")
	flag.Parse()

	var err error
	switch *role {
	case "bench":
		err = bench(o)
	case "gateway":
		err = gateway(*mode, *bpffs, o)
	case "loadgen":
		err = loadgen(o)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-kernel (%s): %v\n", *role, err)
		os.Exit(1)
	}
}

// result is one mode's measurements.
type result struct {
	Mode       string          `json:"mode"`
	Reason     string          `json:"reason"`
	GatewayCPU float64         `json:"gateway_cpu_seconds"`
	BusyCPU    float64         `json:"machine_busy_cpu_seconds"`
	Counters   loader.Counters `json:"counters"`
	Load       loadResult      `json:"load"`
}

type loadResult struct {
	Attempts     int     `json:"flood_attempts"`
	FloodSeconds float64 `json:"flood_seconds"`
	Requests     int     `json:"legit_requests"`
	Errors       int     `json:"legit_errors"`
	P50, P99     float64 `json:"-"`
	Max          float64 `json:"-"`
	P50ms        float64 `json:"legit_p50_ms"`
	P99ms        float64 `json:"legit_p99_ms"`
	MaxMs        float64 `json:"legit_max_ms"`
	NewConns     int     `json:"new_conns"`
	NewErrors    int     `json:"new_conn_errors"`
	NewP50ms     float64 `json:"new_conn_p50_ms"`
	NewP99ms     float64 `json:"new_conn_p99_ms"`
}

func bench(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, BPF)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed: %w", err)
	}
	modes := strings.Split(o.modes, ",")
	byMode := make(map[string][]result)
	for round := 1; round <= o.rounds; round++ {
		for _, mode := range modes {
			fmt.Printf("== round %d/%d, %s\n", round, o.rounds, mode)
			r, err := runMode(o, mode)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			printResult(os.Stdout, r)
			byMode[mode] = append(byMode[mode], r)
		}
	}
	var results []result
	for _, mode := range modes {
		results = append(results, median(byMode[mode]))
	}
	report := reportText(o, results)
	fmt.Print("\n" + report)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Printf("report written to %s\n", o.out)
	}
	return nil
}

// median takes the median of each measurement over the rounds.
func median(rs []result) result {
	m := rs[0]
	med := func(get func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.GatewayCPU = med(func(r result) float64 { return r.GatewayCPU })
	m.BusyCPU = med(func(r result) float64 { return r.BusyCPU })
	m.Load.P50ms = med(func(r result) float64 { return r.Load.P50ms })
	m.Load.P99ms = med(func(r result) float64 { return r.Load.P99ms })
	m.Load.MaxMs = med(func(r result) float64 { return r.Load.MaxMs })
	m.Load.NewP50ms = med(func(r result) float64 { return r.Load.NewP50ms })
	m.Load.NewP99ms = med(func(r result) float64 { return r.Load.NewP99ms })
	m.Load.Errors = int(med(func(r result) float64 { return float64(r.Load.Errors) }))
	m.Load.NewErrors = int(med(func(r result) float64 { return float64(r.Load.NewErrors) }))
	m.Counters.Passed = uint64(med(func(r result) float64 { return float64(r.Counters.Passed) }))
	m.Counters.Limited = uint64(med(func(r result) float64 { return float64(r.Counters.Limited) }))
	return m
}

func runMode(o options, mode string) (res result, err error) {
	gwMode := mode
	if mode == "baseline" {
		gwMode, o.attempts = loader.ModeUserspace, 0
	}
	id := fmt.Sprintf("rgb%d-%s", os.Getpid(), mode[:1])
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	serverNS, err := namedNS(id + "-s")
	if err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { serverNS.Close(); netns.DeleteNamed(id + "-s") })
	clientNS, err := namedNS(id + "-c")
	if err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { clientNS.Close(); netns.DeleteNamed(id + "-c") })
	if err := wire(serverNS, clientNS, o.sources); err != nil {
		return res, err
	}
	bpffs := filepath.Join(o.bpffsRoot, id)
	cleanups = append(cleanups, func() { os.RemoveAll(bpffs) })

	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	common := []string{
		"-rate", strconv.Itoa(o.rate), "-burst", strconv.Itoa(o.burst), "-attempts", strconv.Itoa(o.attempts),
		"-sources", strconv.Itoa(o.sources), "-duration", o.duration.String(), "-legit-rps", strconv.Itoa(o.legitRPS),
	}
	if o.verbose {
		common = append(common, "-v")
	}
	gw := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + id + "-s", self, "-role", "gateway",
		"-mode", gwMode, "-gateway-bpffs", bpffs}, common...)...)
	gw.Stderr = os.Stderr
	gwIn, err := gw.StdinPipe()
	if err != nil {
		return res, err
	}
	gwOut, err := gw.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := gw.Start(); err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { gwIn.Close(); gw.Process.Kill(); gw.Wait() })
	lines := bufio.NewScanner(gwOut)
	if !lines.Scan() {
		return res, fmt.Errorf("gateway exited before it was ready")
	}
	var ready struct{ Mode, Reason string }
	if err := json.Unmarshal(lines.Bytes(), &ready); err != nil {
		return res, fmt.Errorf("gateway: %q: %w", lines.Text(), err)
	}
	res.Mode, res.Reason = mode, ready.Reason
	if ready.Mode != gwMode {
		return res, fmt.Errorf("gateway runs in %s mode (%s), not %s", ready.Mode, ready.Reason, gwMode)
	}

	busy0, err := busyCPU()
	if err != nil {
		return res, err
	}
	fmt.Fprintln(gwIn, "start")
	lg := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + id + "-c", self, "-role", "loadgen"}, common...)...)
	lg.Stderr = os.Stderr
	out, err := lg.Output()
	if err != nil {
		return res, fmt.Errorf("load generator: %w", err)
	}
	fmt.Fprintln(gwIn, "stop")
	busy1, err := busyCPU()
	if err != nil {
		return res, err
	}
	res.BusyCPU = busy1 - busy0
	if err := json.Unmarshal(out, &res.Load); err != nil {
		return res, fmt.Errorf("load generator output %q: %w", out, err)
	}
	if !lines.Scan() {
		return res, fmt.Errorf("gateway exited without its report")
	}
	var gr struct {
		CPU      float64
		Counters loader.Counters
	}
	if err := json.Unmarshal(lines.Bytes(), &gr); err != nil {
		return res, fmt.Errorf("gateway report %q: %w", lines.Text(), err)
	}
	res.GatewayCPU, res.Counters = gr.CPU, gr.Counters
	return res, nil
}

// namedNS makes a network namespace at /var/run/netns/name without
// moving the calling thread into it.
func namedNS(name string) (netns.NsHandle, error) {
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err = netns.NewNamed(name)
		if err == nil {
			for _, c := range []string{"all", "default"} {
				os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/accept_dad", []byte("0"), 0o644)
			}
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr) // the thread stays locked and dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return h, <-errc
}

// wire joins the namespaces with a veth pair: the server end has
// 10.88.0.1/16, the client end the legitimate address and the flooding
// sources.
func wire(serverNS, clientNS netns.NsHandle, sources int) error {
	hs, err := netlink.NewHandleAt(serverNS)
	if err != nil {
		return err
	}
	defer hs.Close()
	hc, err := netlink.NewHandleAt(clientNS)
	if err != nil {
		return err
	}
	defer hc.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: serverIf}, PeerName: clientIf, PeerNamespace: netlink.NsFd(clientNS)}
	if err := hs.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	up := func(h *netlink.Handle, name string, addrs ...netip.Addr) error {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(16, 32)}}); err != nil {
				return fmt.Errorf("%s: %s: %w", name, a, err)
			}
		}
		return h.LinkSetUp(l)
	}
	if err := up(hs, "lo"); err != nil {
		return err
	}
	if err := up(hc, "lo"); err != nil {
		return err
	}
	if err := up(hs, serverIf, serverIP); err != nil {
		return err
	}
	addrs := []netip.Addr{legitIP}
	for i := range sources {
		addrs = append(addrs, floodIP(i))
	}
	return up(hc, clientIf, addrs...)
}

// busyCPU is the machine's non-idle CPU time in seconds (/proc/stat).
func busyCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100, nil // USER_HZ
}

// gateway serves "ok" behind the datapath until "stop" on stdin, and
// reports its CPU time between "start" and "stop".
func gateway(mode, bpffs string, o options) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := config.Datapath{
		Mode: mode, BPFFS: bpffs, Interfaces: []string{serverIf},
		KernelRateLimit: config.KernelRateLimit{Rate: o.rate, Burst: o.burst, Ports: []string{config.PortsAuto}, MaxSources: 65536},
		Bans:            config.Bans{Duration: config.Duration(10 * time.Minute)},
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	dp, err := loader.New(cfg, []int{port}, log)
	if err != nil {
		return err
	}
	defer dp.Close()
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          nil,
	}
	go srv.Serve(dp.WrapListener(ln))
	defer srv.Close()
	json.NewEncoder(os.Stdout).Encode(map[string]string{"Mode": dp.Mode(), "Reason": dp.Reason()})

	in := bufio.NewScanner(os.Stdin)
	var start float64
	for in.Scan() {
		switch in.Text() {
		case "start":
			start = cpuSeconds()
		case "stop":
			cpu := cpuSeconds() - start
			c, err := dp.Counters()
			if err != nil {
				return err
			}
			return json.NewEncoder(os.Stdout).Encode(map[string]any{"CPU": cpu, "Counters": c})
		}
	}
	return errors.New("stdin closed before stop")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// loadgen floods and measures the legitimate client; it prints a
// loadResult as JSON.
func loadgen(o options) error {
	var res loadResult
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	target := netip.AddrPortFrom(serverIP, port)

	// The legitimate client: keep-alive requests at a fixed pace, and new
	// connections at 80% of the per-source limit (it must not be limited).
	var mu sync.Mutex
	var lat, newLat []time.Duration
	var errs, newErrs atomic.Int64
	dialer := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(legitIP, 0)), Timeout: 3 * time.Second}
	keepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16, MaxConnsPerHost: 16}}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
	url := "http://" + target.String() + "/"
	get := func(c *http.Client) (time.Duration, error) {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0), err
	}
	// Warm the keep-alive pool before the flood.
	for range 4 {
		if _, err := get(keepAlive); err != nil {
			return fmt.Errorf("legitimate client before the flood: %w", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(max(o.legitRPS, 1)))
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				d, err := get(keepAlive)
				if err != nil {
					errs.Add(1)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(newConnInterval(o.rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			d, err := get(fresh)
			if err != nil {
				newErrs.Add(1)
				continue
			}
			mu.Lock()
			newLat = append(newLat, d)
			mu.Unlock()
		}
	}()

	t0 := time.Now()
	n, err := flood(ctx, o, target)
	res.FloodSeconds = time.Since(t0).Seconds()
	<-ctx.Done()
	wg.Wait()
	if err != nil {
		return err
	}
	res.Attempts = n
	res.Requests, res.Errors = len(lat), int(errs.Load())
	res.P50ms, res.P99ms, res.MaxMs = pct(lat, 50), pct(lat, 99), pct(lat, 100)
	res.NewConns, res.NewErrors = len(newLat), int(newErrs.Load())
	res.NewP50ms, res.NewP99ms = pct(newLat, 50), pct(newLat, 99)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// newConnInterval paces the legitimate client's new connections at 80% of
// the per-source rate.
func newConnInterval(rate int) time.Duration {
	return time.Duration(float64(time.Second) * 1.25 / float64(max(rate, 1)))
}

// flood opens o.attempts connections spread evenly over o.duration,
// round robin over the sources, each closed (with a reset, or silently if
// it never got an answer) 200 ms after its SYN.
func flood(ctx context.Context, o options, target netip.AddrPort) (int, error) {
	type pending struct {
		fd int
		at time.Time
	}
	var queue []pending
	closeOlder := func(t time.Time) {
		i := 0
		for ; i < len(queue) && queue[i].at.Before(t); i++ {
			unix.Close(queue[i].fd)
		}
		queue = queue[i:]
	}
	defer closeOlder(time.Now().Add(time.Hour))
	dst := &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	const tick = 5 * time.Millisecond
	perTick := float64(o.attempts) * float64(tick) / float64(o.duration)
	start := time.Now()
	sent := 0
	for sent < o.attempts && ctx.Err() == nil {
		due := int(math.Min(float64(o.attempts), perTick*float64(time.Since(start)/tick+1)))
		for ; sent < due; sent++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return sent, fmt.Errorf("socket: %w", err)
			}
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
			src := &unix.SockaddrInet4{Addr: floodIP(sent % o.sources).As4()}
			if err := unix.Bind(fd, src); err != nil {
				unix.Close(fd)
				return sent, fmt.Errorf("bind: %w", err)
			}
			if err := unix.Connect(fd, dst); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				unix.Close(fd)
				return sent, fmt.Errorf("connect: %w", err)
			}
			queue = append(queue, pending{fd, time.Now()})
		}
		closeOlder(time.Now().Add(-200 * time.Millisecond))
		time.Sleep(time.Until(start.Add(time.Since(start).Truncate(tick) + tick)))
	}
	// Let the last attempts live their 200 ms before closing them.
	time.Sleep(200 * time.Millisecond)
	return sent, nil
}

// pct is the p-th percentile of ds in milliseconds.
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "   gateway CPU %.2fs, machine busy CPU %.2fs; legit %d req p50 %.2fms p99 %.2fms max %.2fms errors %d; new conns %d p50 %.2fms p99 %.2fms errors %d\n",
		r.GatewayCPU, r.BusyCPU, r.Load.Requests, r.Load.P50ms, r.Load.P99ms, r.Load.MaxMs, r.Load.Errors,
		r.Load.NewConns, r.Load.NewP50ms, r.Load.NewP99ms, r.Load.NewErrors)
	fmt.Fprintf(w, "   flood %d attempts in %.1fs; counters %+v\n", r.Load.Attempts, r.Load.FloodSeconds, r.Counters)
}

func reportText(o options, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Kernel vs userspace connection limiting (%s)\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Flood: %d connection attempts from %d sources over %s (%d/s per source); limit %d/s, burst %d per source.\n",
		o.attempts, o.sources, o.duration, int(float64(o.attempts)/float64(o.sources)/o.duration.Seconds()), o.rate, o.burst)
	fmt.Fprintf(&b, "Legitimate client: %d req/s on keep-alive connections, plus a new connection every %s (80%% of its limit).\n", o.legitRPS, newConnInterval(o.rate))
	fmt.Fprintf(&b, "Gateway CPU: getrusage of the gateway process over the flood. Machine busy CPU: /proc/stat over the same window, all processes (the flood generator, and anything else running on the machine).\n\n")
	fmt.Fprintln(&b, "| mode | gateway CPU s | machine busy CPU s | legit p50 ms | legit p99 ms | legit max ms | legit errors | new-conn p50 ms | new-conn p99 ms | new-conn errors | passed | limited |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %.2f | %.2f | %d | %d | %d |\n",
			r.Mode, r.GatewayCPU, r.BusyCPU, r.Load.P50ms, r.Load.P99ms, r.Load.MaxMs, r.Load.Errors,
			r.Load.NewP50ms, r.Load.NewP99ms, r.Load.NewErrors, r.Counters.Passed, r.Counters.Limited)
	}
	var k, u, base *result
	for i := range results {
		switch results[i].Mode {
		case loader.ModeKernel:
			k = &results[i]
		case loader.ModeUserspace:
			u = &results[i]
		case "baseline":
			base = &results[i]
		}
	}
	if k != nil && u != nil && u.GatewayCPU > 0 {
		ratio := k.GatewayCPU / u.GatewayCPU
		verdict := "PASS"
		if ratio > 0.25 || k.Load.P99ms > u.Load.P99ms {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "\nGateway CPU, kernel/userspace: %.0f%% (target <= 25%%); legit p99 kernel %.2f ms vs userspace %.2f ms (target: no worse): %s\n",
			100*ratio, k.Load.P99ms, u.Load.P99ms, verdict)
		if base != nil && u.GatewayCPU > base.GatewayCPU {
			fk, fu := k.GatewayCPU-base.GatewayCPU, u.GatewayCPU-base.GatewayCPU
			fmt.Fprintf(&b, "CPU the flood adds (gateway CPU minus the baseline's %.2f s): kernel %.2f s, userspace %.2f s: %.0f%%\n",
				base.GatewayCPU, fk, fu, 100*fk/fu)
		}
	}
	return b.String()
}
