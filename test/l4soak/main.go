//go:build unix

// Command l4soak is the integrity soak of RustyGate's TCP proxy (l4/): it
// pushes checksummed bulk transfers, many short connections and abrupt
// resets through an `l4:` listener and fails on any corrupted, truncated or
// hung transfer, or when the gateway stops serving.
//
//	go run ./test/l4soak -spawn                      # starts bin/rustygate itself
//	go run ./test/l4soak -spawn -datapath kernel
//	go run ./test/l4soak -target 127.0.0.1:19004 -backend 127.0.0.1:19101
//	                                                 # a proxy you run, forwarding to -backend
//	go run ./test/l4soak -direct                     # no proxy: checks the harness itself
//
//	make soak-l4        short form (CI): -transfers64 20 -transfers1g 1 -short 2000 -resets 200
//	make soak-l4-long   long form: 200 x 64 MiB, 20 x 1 GiB, 10000 short, 1000 resets
//
// The program runs its own backend on 127.0.0.1. Each connection starts with
// a 24-byte header ("L4SK", mode, 3 reserved bytes, n and seed as big-endian
// uint64) that tells the backend what to do:
//
//	sink    read to EOF, answer the byte count (8 bytes) and the SHA-256 (32)
//	source  send n bytes of the PRNG stream of seed, then their SHA-256
//	echo    echo every byte until EOF
//	rst-tx  send n bytes of the PRNG stream, then reset (SO_LINGER 0 close)
//	rst-rx  read n bytes, then reset
//
// Reads and writes use random chunk sizes from 1 B to 256 KiB (log-uniform,
// so tiny chunks are common), on both ends. Transfers are 64 MiB and 1 GiB,
// their mode rotating over echo (both directions at once), source
// (backend to client) and sink (client to backend), run -concurrency at a
// time; the client checks the SHA-256 and the length of what arrived against
// what was sent. Every transfer is bounded by a deadline (-timeout-base plus
// n at -min-rate) and by a stall timeout per read or write (-stall): a
// transfer that times out is "hung".
//
// Then -short short connections (connect, send a few bytes, read their echo,
// close) and -resets abrupt resets, from either side, at random points of a
// transfer. A reset passes when the side that did not reset sees its
// connection end (error or EOF) in time, and what it received before is an
// intact prefix of what was sent. After the resets the gateway must still be
// running and serve a final round of short connections and a 64 MiB echo,
// and (with an admin address) rustygate_l4_connections_active must fall back
// to 0.
//
// With -datapath kernel the gateway relays with splice(2) wherever it cannot
// splice in the kernel; the summary counts the datapath field of the
// gateway's "l4 connection" lines, and -require-kernel fails a run in which
// no connection was spliced in the kernel.
//
// Exit status: 0 when every check passed, 1 on any failure, 2 when the run
// could not start. Traffic goes only to 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30

	magic    = "L4SK"
	hdrLen   = 24
	maxChunk = 256 * kib
)

// Backend modes (header byte 4).
const (
	modeSink   = 'k'
	modeSource = 's'
	modeEcho   = 'e'
	modeRstTx  = 'r'
	modeRstRx  = 'x'
)

func modeName(m byte) string {
	switch m {
	case modeSink:
		return "sink"
	case modeSource:
		return "source"
	case modeEcho:
		return "echo"
	case modeRstTx:
		return "rst-tx"
	case modeRstRx:
		return "rst-rx"
	}
	return fmt.Sprintf("mode-%q", m)
}

type options struct {
	transfers64 int
	transfers1g int
	concurrency int
	short       int
	resets      int

	target   string
	direct   bool
	spawn    bool
	bin      string
	datapath string
	backend  string
	admin    string

	timeoutBase  time.Duration
	minRate      float64 // MiB/s
	stall        time.Duration
	seed         uint64
	keep         bool
	reqKernel    bool
	startTimeout time.Duration
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.IntVar(&o.transfers64, "transfers64", 200, "number of 64 MiB transfers (modes rotate: echo, source, sink)")
	flag.IntVar(&o.transfers1g, "transfers1g", 20, "number of 1 GiB transfers (modes rotate: echo, source, sink)")
	flag.IntVar(&o.concurrency, "concurrency", 8, "transfers (and short connections, resets) in flight at once")
	flag.IntVar(&o.short, "short", 10000, "number of short connections (connect, send a few bytes, read the echo, close)")
	flag.IntVar(&o.resets, "resets", 1000, "number of abrupt resets (SO_LINGER 0 close) mid-transfer, from either side")
	flag.StringVar(&o.target, "target", "", "address of a proxy already running in front of -backend (instead of -spawn)")
	flag.BoolVar(&o.direct, "direct", false, "no proxy: connect to the backend itself (checks the harness)")
	flag.BoolVar(&o.spawn, "spawn", false, "start the gateway from -bin with an l4 listener in front of the backend (default without -target/-direct)")
	flag.StringVar(&o.bin, "bin", envOr("RG_BIN", "bin/rustygate"), "rustygate binary for -spawn, built with go build when missing (env RG_BIN)")
	flag.StringVar(&o.datapath, "datapath", "splice", "datapath of the spawned l4 listener: auto, splice or kernel")
	flag.StringVar(&o.backend, "backend", "127.0.0.1:0", "listen address of the soak backend (fix it with -target)")
	flag.StringVar(&o.admin, "admin", "", "admin address (host:port) of a -target RustyGate, for its metrics")
	flag.DurationVar(&o.timeoutBase, "timeout-base", 30*time.Second, "fixed part of each transfer's deadline")
	flag.Float64Var(&o.minRate, "min-rate", 4, "MiB/s a transfer must at least reach: its deadline is -timeout-base + n / min-rate")
	flag.DurationVar(&o.stall, "stall", 30*time.Second, "a read or write that makes no progress this long is a hang")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the run (0: from the clock); printed so a run can be repeated")
	flag.BoolVar(&o.keep, "keep", false, "keep the spawned gateway's temporary directory (config, log)")
	flag.DurationVar(&o.startTimeout, "start-timeout", 90*time.Second, "how long the spawned gateway may take to start (loading and verifying BPF programs is slow under emulation)")
	flag.BoolVar(&o.reqKernel, "require-kernel", false, "with -spawn -datapath kernel: fail unless kernel splicing relayed connections (not a silent fallback to splice(2))")
	flag.Parse()

	if o.transfers64 < 0 || o.transfers1g < 0 || o.short < 0 || o.resets < 0 || o.concurrency <= 0 {
		fmt.Fprintln(os.Stderr, "l4soak: counts must not be negative and -concurrency must be positive")
		return 2
	}
	modes := 0
	for _, b := range []bool{o.target != "", o.direct, o.spawn} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		fmt.Fprintln(os.Stderr, "l4soak: give one of -spawn, -target and -direct")
		return 2
	}
	if modes == 0 {
		o.spawn = true
	}
	if o.target != "" && o.backend == "127.0.0.1:0" {
		fmt.Fprintln(os.Stderr, "l4soak: -target needs -backend: the fixed address the proxy forwards to")
		return 2
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	be, err := startBackend(o.backend, o.stall*2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "l4soak: backend:", err)
		return 2
	}
	defer be.close()

	var gw *gatewayProc
	target, admin, label := o.target, o.admin, "proxy at "+o.target
	switch {
	case o.direct:
		target, label = be.addr(), "direct (no proxy)"
	case o.spawn:
		gw, err = spawnGateway(o, be.addr())
		if err != nil {
			fmt.Fprintln(os.Stderr, "l4soak:", err)
			return 2
		}
		defer gw.stop(o.keep)
		target, admin = gw.l4Addr, gw.adminAddr
		label = fmt.Sprintf("RustyGate pid %d, l4 datapath %s", gw.cmd.Process.Pid, o.datapath)
		if o.datapath == "kernel" {
			label += " (kernel splicing falls back to splice(2) when unavailable: the gateway log line below says which relayed)"
		}
	}
	fmt.Printf("l4soak: target %s (%s), backend %s, seed %d\n", target, label, be.addr(), o.seed)
	fmt.Printf("l4soak: %d x 64 MiB + %d x 1 GiB transfers, concurrency %d, %d short connections, %d resets\n",
		o.transfers64, o.transfers1g, o.concurrency, o.short, o.resets)

	s := &soak{o: o, target: target, be: be, gw: gw}
	startGoroutines := -1
	if admin != "" {
		startGoroutines, _ = goroutines(admin)
	}
	begin := time.Now()

	phases := []struct {
		name string
		run  func(context.Context) *phaseResult
	}{
		{"transfers", s.transfers},
		{"short", func(ctx context.Context) *phaseResult { return s.shorts(ctx, o.short, "short") }},
		{"resets", s.resetPhase},
		{"after-resets", s.afterResets},
	}
	var results []*phaseResult
	for _, ph := range phases {
		if ctx.Err() != nil {
			break
		}
		fmt.Printf("== %s\n", ph.name)
		r := ph.run(ctx)
		r.name = ph.name
		r.print()
		results = append(results, r)
	}
	elapsed := time.Since(begin)

	// Survival checks.
	var checks []string
	failed := false
	check := func(ok bool, format string, args ...any) {
		verdict := "ok  "
		if !ok {
			verdict = "FAIL"
			failed = true
		}
		checks = append(checks, verdict+" "+fmt.Sprintf(format, args...))
	}
	if gw != nil {
		check(gw.running(), "gateway process %d still running", gw.cmd.Process.Pid)
	}
	if admin != "" {
		active, err := waitActiveZero(admin, 10*time.Second)
		if gw != nil {
			time.Sleep(300 * time.Millisecond) // the gateway flushes its log every 100 ms
		}
		check(err == nil && active == 0, "rustygate_l4_connections_active back to 0 within 10s (last value %g%s)", active, errSuffix(err))
		endGoroutines, gerr := goroutines(admin)
		if gerr == nil && startGoroutines >= 0 {
			// Reported, and failed only on a gross leak: a goroutine or two
			// per resident connection would show as thousands here.
			check(endGoroutines <= startGoroutines+50, "gateway goroutines %d at start, %d at the end", startGoroutines, endGoroutines)
		}
	}
	active := waitZero(&be.active, 10*time.Second)
	check(active == 0, "backend connections all closed within 10s (open: %d)", active)
	if n := be.stalls.Load(); n > 0 {
		check(false, "backend connections that stalled (no EOF nor reset from the proxy within %s): %d", o.stall*2, n)
	}
	if gw != nil && o.reqKernel {
		dp := gw.datapaths()
		check(dp["kernel"] > 0, "kernel splicing relayed %d connections (datapath of the l4 connection lines: %v)", dp["kernel"], dp)
	}
	if n := be.protoErrs.Load(); n > 0 {
		check(false, "backend connections with a bad header: %d", n)
	}

	// Totals.
	var tot phaseResult
	for _, r := range results {
		tot.add(r)
	}
	fmt.Println()
	fmt.Println("== totals")
	fmt.Printf("transfers:   %d run, %d ok (bulk %d, short %d, reset %d, final %d)\n",
		tot.runs, tot.ok, results0(results, "transfers").runs, results0(results, "short").runs,
		results0(results, "resets").runs, results0(results, "after-resets").runs)
	fmt.Printf("bytes:       %s client->backend, %s backend->client, %s in all (verified end to end)\n",
		size(tot.up), size(tot.down), size(tot.up+tot.down))
	fmt.Printf("failures:    %d (corrupted %d, truncated %d, hung %d, error %d)\n",
		tot.failures(), tot.corrupted, tot.truncated, tot.hung, tot.errored)
	fmt.Printf("duration:    %s\n", elapsed.Round(time.Millisecond))
	fmt.Printf("backend:     %s\n", be.summary())
	if gw != nil {
		fmt.Printf("gateway log: %s\n", gw.logSummary())
	}
	for _, c := range checks {
		fmt.Println("check:      ", c)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Println("verdict:     INTERRUPTED")
		return 1
	case tot.failures() > 0 || failed:
		fmt.Println("verdict:     FAIL")
		if gw != nil {
			fmt.Println("---- last lines of the gateway log:")
			fmt.Println(gw.tail(20))
		}
		return 1
	}
	fmt.Println("verdict:     PASS")
	return 0
}

func results0(rs []*phaseResult, name string) *phaseResult {
	for _, r := range rs {
		if r.name == name {
			return r
		}
	}
	return &phaseResult{}
}

func errSuffix(err error) string {
	if err != nil {
		return ": " + err.Error()
	}
	return ""
}

// ---------------------------------------------------------------- results

type failKind int

const (
	ok failKind = iota
	corrupted
	truncated
	hung
	errored
)

func (k failKind) String() string {
	return [...]string{"ok", "corrupted", "truncated", "hung", "error"}[k]
}

// outcome is the result of one transfer.
type outcome struct {
	kind     failKind
	up, down int64 // verified bytes each way
	detail   string
}

func fail(kind failKind, format string, args ...any) outcome {
	return outcome{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// classify turns an I/O error into a failure kind: a deadline is a hang,
// an early end (EOF, reset, broken pipe) is a truncation.
func classify(err error) failKind {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return hung
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return truncated
	}
	return errored
}

type phaseResult struct {
	name                                string
	runs, ok                            int64
	corrupted, truncated, hung, errored int64
	up, down                            int64
	elapsed                             time.Duration
	firstFailures                       []string
	notes                               []string
	resetSeenAs                         map[string]int64
	mu                                  sync.Mutex
}

func (r *phaseResult) record(what string, o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs++
	r.up += o.up
	r.down += o.down
	switch o.kind {
	case ok:
		r.ok++
		return
	case corrupted:
		r.corrupted++
	case truncated:
		r.truncated++
	case hung:
		r.hung++
	default:
		r.errored++
	}
	if len(r.firstFailures) < 10 {
		r.firstFailures = append(r.firstFailures, fmt.Sprintf("%s: %s: %s", what, o.kind, o.detail))
	}
}

func (r *phaseResult) seen(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resetSeenAs == nil {
		r.resetSeenAs = map[string]int64{}
	}
	r.resetSeenAs[key]++
}

func (r *phaseResult) failures() int64 { return r.corrupted + r.truncated + r.hung + r.errored }

func (r *phaseResult) add(o *phaseResult) {
	r.runs += o.runs
	r.ok += o.ok
	r.corrupted += o.corrupted
	r.truncated += o.truncated
	r.hung += o.hung
	r.errored += o.errored
	r.up += o.up
	r.down += o.down
}

func (r *phaseResult) print() {
	secs := r.elapsed.Seconds()
	rate := ""
	if secs > 0 && r.up+r.down > 0 {
		rate = fmt.Sprintf(", %.0f MiB/s", float64(r.up+r.down)/mib/secs)
	}
	fmt.Printf("   %d run, %d ok, %d failed (corrupted %d, truncated %d, hung %d, error %d); %s up, %s down in %s%s\n",
		r.runs, r.ok, r.failures(), r.corrupted, r.truncated, r.hung, r.errored,
		size(r.up), size(r.down), r.elapsed.Round(time.Millisecond), rate)
	if len(r.resetSeenAs) > 0 {
		keys := make([]string, 0, len(r.resetSeenAs))
		for k := range r.resetSeenAs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("   %-58s %d\n", k, r.resetSeenAs[k])
		}
	}
	for _, n := range r.notes {
		fmt.Println("  ", n)
	}
	for _, f := range r.firstFailures {
		fmt.Println("   FAIL", f)
	}
}

func size(n int64) string {
	switch {
	case n >= gib:
		return fmt.Sprintf("%.2f GiB", float64(n)/gib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	}
	return fmt.Sprintf("%d B", n)
}

// ---------------------------------------------------------------- data

// stream is the PRNG byte stream of a seed (splitmix64, little endian).
type stream struct {
	s    uint64
	buf  [64 * kib]byte
	r, w int
}

func newStream(seed uint64) *stream { return &stream{s: seed} }

func (p *stream) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if p.r == p.w {
			p.refill()
		}
		c := copy(b[n:], p.buf[p.r:p.w])
		p.r += c
		n += c
	}
	return n, nil
}

func (p *stream) refill() {
	s := p.s
	for i := 0; i < len(p.buf); i += 8 {
		s += 0x9E3779B97F4A7C15
		z := s
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(p.buf[i:], z^(z>>31))
	}
	p.s = s
	p.r, p.w = 0, len(p.buf)
}

// chunk returns a random I/O size from 1 B to 256 KiB, log-uniform.
func chunk(r *rand.Rand) int {
	return 1 + r.IntN(1<<r.IntN(19))
}

// dconn bounds each read and write of a connection by the earlier of an
// overall deadline and a stall timeout. It must not be given to io.Copy
// (which would reach the *net.TCPConn methods and skip the deadlines).
type dconn struct {
	c     *net.TCPConn
	end   time.Time
	stall time.Duration
}

func (d *dconn) next() time.Time {
	t := time.Now().Add(d.stall)
	if t.After(d.end) {
		return d.end
	}
	return t
}

func (d *dconn) Read(p []byte) (int, error) {
	d.c.SetReadDeadline(d.next())
	return d.c.Read(p)
}

func (d *dconn) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(d.next())
	return d.c.Write(p)
}

// sendStream writes n bytes of src in random chunks and returns the
// SHA-256 of what was written.
func sendStream(w io.Writer, src io.Reader, n int64, rng *rand.Rand, buf []byte) ([]byte, int64, error) {
	h := sha256.New()
	var sent int64
	for sent < n {
		k := int64(chunk(rng))
		k = min(k, n-sent)
		b := buf[:k]
		src.Read(b)
		h.Write(b)
		m, err := w.Write(b)
		sent += int64(m)
		if err != nil {
			return nil, sent, err
		}
	}
	return h.Sum(nil), sent, nil
}

// recvAll reads in random chunks until EOF (or limit+1 bytes, to detect
// extra data) and returns the SHA-256 and count of what was read.
func recvAll(r io.Reader, limit int64, rng *rand.Rand, buf []byte) ([]byte, int64, error) {
	h := sha256.New()
	var got int64
	for {
		k := chunk(rng)
		m, err := r.Read(buf[:k])
		if m > 0 {
			h.Write(buf[:m])
			got += int64(m)
		}
		if err == io.EOF {
			return h.Sum(nil), got, nil
		}
		if err != nil {
			return h.Sum(nil), got, err
		}
		if limit >= 0 && got > limit {
			return h.Sum(nil), got, nil
		}
	}
}

// recvN reads exactly n bytes in random chunks and returns their SHA-256.
func recvN(r io.Reader, n int64, rng *rand.Rand, buf []byte) ([]byte, int64, error) {
	h := sha256.New()
	var got int64
	for got < n {
		k := int64(chunk(rng))
		k = min(k, n-got)
		m, err := r.Read(buf[:k])
		if m > 0 {
			h.Write(buf[:m])
			got += int64(m)
		}
		if err != nil {
			if err == io.EOF && got < n {
				err = io.ErrUnexpectedEOF
			}
			if got >= n {
				break
			}
			return nil, got, err
		}
	}
	return h.Sum(nil), got, nil
}

// expectEOF reads what follows the expected end: only EOF is right.
func expectEOF(r io.Reader) (extra int, err error) {
	var b [4096]byte
	for {
		m, err := r.Read(b[:])
		extra += m
		if err == io.EOF {
			return extra, nil
		}
		if err != nil {
			return extra, err
		}
		if extra > 1<<20 {
			return extra, nil
		}
	}
}

func header(mode byte, n, seed uint64) []byte {
	h := make([]byte, hdrLen)
	copy(h, magic)
	h[4] = mode
	binary.BigEndian.PutUint64(h[8:], n)
	binary.BigEndian.PutUint64(h[16:], seed)
	return h
}

// ---------------------------------------------------------------- backend

type backend struct {
	ln    *net.TCPListener
	stall time.Duration
	wg    sync.WaitGroup

	conns     atomic.Int64
	active    atomic.Int64
	stalls    atomic.Int64
	protoErrs atomic.Int64
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	// How a client's abrupt reset reached the backend (through the proxy).
	peerEOF, peerRST, peerOther atomic.Int64
}

func startBackend(addr string, stall time.Duration) (*backend, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &backend{ln: ln.(*net.TCPListener), stall: stall}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) close() {
	b.ln.Close()
	b.wg.Wait()
}

func (b *backend) summary() string {
	return fmt.Sprintf("%d connections, %s in, %s out; client resets (while sending) seen by the backend as EOF %d, reset %d, other %d",
		b.conns.Load(), size(b.bytesIn.Load()), size(b.bytesOut.Load()),
		b.peerEOF.Load(), b.peerRST.Load(), b.peerOther.Load())
}

func (b *backend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.AcceptTCP()
		if err != nil {
			return
		}
		b.conns.Add(1)
		b.active.Add(1)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.active.Add(-1)
			b.serve(c)
		}()
	}
}

func (b *backend) serve(c *net.TCPConn) {
	defer c.Close()
	d := &dconn{c: c, end: time.Now().Add(time.Hour), stall: b.stall}
	hdr := make([]byte, hdrLen)
	if _, err := io.ReadFull(d, hdr); err != nil {
		b.noteEnd(err, false)
		return
	}
	if string(hdr[:4]) != magic {
		b.protoErrs.Add(1)
		return
	}
	mode := hdr[4]
	resetTest := hdr[5] == 1
	n := binary.BigEndian.Uint64(hdr[8:])
	seed := binary.BigEndian.Uint64(hdr[16:])
	rng := rand.New(rand.NewPCG(seed, 0xb5ad4eceda1ce2a9))
	buf := make([]byte, maxChunk)
	switch mode {
	case modeSink:
		sum, got, err := recvAll(d, -1, rng, buf)
		b.bytesIn.Add(got)
		if err != nil {
			b.noteEnd(err, resetTest)
			return
		}
		if resetTest {
			b.peerEOF.Add(1)
		}
		var ans [40]byte
		binary.BigEndian.PutUint64(ans[:8], uint64(got))
		copy(ans[8:], sum)
		if _, err := d.Write(ans[:]); err != nil {
			b.noteEnd(err, false)
			return
		}
		b.finish(d, c, resetTest)
	case modeSource:
		sum, sent, err := sendStream(d, newStream(seed), int64(n), rng, buf)
		b.bytesOut.Add(sent)
		if err == nil {
			_, err = d.Write(sum)
		}
		if err != nil {
			// A write error tells nothing of how the client's reset was
			// passed on (a closed socket answers data with a reset).
			b.noteEnd(err, false)
			return
		}
		b.finish(d, c, resetTest)
	case modeEcho:
		for {
			k := chunk(rng)
			m, err := d.Read(buf[:k])
			b.bytesIn.Add(int64(m))
			if m > 0 {
				if _, werr := d.Write(buf[:m]); werr != nil {
					b.noteEnd(werr, false)
					return
				}
				b.bytesOut.Add(int64(m))
			}
			if err == io.EOF {
				if resetTest {
					b.peerEOF.Add(1)
				}
				b.finish(d, c, false)
				return
			}
			if err != nil {
				b.noteEnd(err, resetTest)
				return
			}
		}
	case modeRstTx:
		_, sent, err := sendStream(d, newStream(seed), int64(n), rng, buf)
		b.bytesOut.Add(sent)
		if err != nil {
			return
		}
		c.SetLinger(0)
	case modeRstRx:
		_, got, err := recvN(d, int64(n), rng, buf)
		b.bytesIn.Add(got)
		if err != nil {
			return
		}
		c.SetLinger(0)
	default:
		b.protoErrs.Add(1)
	}
}

// finish half-closes and waits for the client's EOF, so that closing does
// not reset a connection whose last bytes are still on their way.
func (b *backend) finish(d *dconn, c *net.TCPConn, resetTest bool) {
	c.CloseWrite()
	if _, err := expectEOF(d); err != nil && !resetTest {
		b.noteEnd(err, false)
	}
}

// noteEnd records how a connection ended early: in a reset test, by EOF
// or by a reset; elsewhere only stalls matter (the client sees the rest).
func (b *backend) noteEnd(err error, resetTest bool) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		b.stalls.Add(1)
	case !resetTest:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		b.peerEOF.Add(1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		b.peerRST.Add(1)
	default:
		b.peerOther.Add(1)
	}
}

// ---------------------------------------------------------------- client

type soak struct {
	o      options
	target string
	be     *backend
	gw     *gatewayProc
	seq    atomic.Uint64
}

func (s *soak) nextSeed() uint64 {
	i := s.seq.Add(1)
	z := s.o.seed + i*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	return z ^ (z >> 27)
}

func (s *soak) dial(n int64) (*net.TCPConn, *dconn, error) {
	c, err := net.DialTimeout("tcp", s.target, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	tc := c.(*net.TCPConn)
	limit := s.o.timeoutBase + time.Duration(float64(n)/(s.o.minRate*mib)*float64(time.Second))
	return tc, &dconn{c: tc, end: time.Now().Add(limit), stall: s.o.stall}, nil
}

// parallel runs n jobs, concurrency at a time, until ctx ends.
func (s *soak) parallel(ctx context.Context, n int, job func(i int)) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < min(s.o.concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				job(i)
			}
		}()
	}
	wg.Wait()
}

type job struct {
	n    int64
	mode byte
}

var bulkModes = []byte{modeEcho, modeSource, modeSink}

func (s *soak) transfers(ctx context.Context) *phaseResult {
	var jobs []job
	for i := 0; i < s.o.transfers1g; i++ {
		jobs = append(jobs, job{gib, bulkModes[i%3]})
	}
	for i := 0; i < s.o.transfers64; i++ {
		jobs = append(jobs, job{64 * mib, bulkModes[i%3]})
	}
	r := &phaseResult{}
	start := time.Now()
	var done atomic.Int64
	stopProgress := s.progress(&done, len(jobs), "transfers")
	s.parallel(ctx, len(jobs), func(i int) {
		j := jobs[i]
		o := s.transfer(j.n, j.mode)
		r.record(fmt.Sprintf("#%d %s %s", i, size(j.n), modeName(j.mode)), o)
		done.Add(1)
	})
	stopProgress()
	r.elapsed = time.Since(start)
	return r
}

// progress prints a line every 10 s while a phase runs.
func (s *soak) progress(done *atomic.Int64, total int, what string) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Printf("   ... %d/%d %s after %s\n", done.Load(), total, what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// transfer runs one checksummed transfer of n bytes in mode.
func (s *soak) transfer(n int64, mode byte) outcome {
	seed := s.nextSeed()
	rng := rand.New(rand.NewPCG(seed, 0x853c49e6748fea9b))
	c, d, err := s.dial(n)
	if err != nil {
		return fail(errored, "dial: %v", err)
	}
	defer c.Close()
	if _, err := d.Write(header(mode, uint64(n), seed)); err != nil {
		return fail(classify(err), "header: %v", err)
	}
	buf := make([]byte, maxChunk)
	switch mode {
	case modeSink:
		sum, sent, err := sendStream(d, newStream(seed), n, rng, buf)
		if err != nil {
			return fail(classify(err), "sent %d of %d bytes: %v", sent, n, err)
		}
		if err := c.CloseWrite(); err != nil {
			return fail(errored, "CloseWrite: %v", err)
		}
		var ans [40]byte
		if _, err := io.ReadFull(d, ans[:]); err != nil {
			return fail(classify(err), "reading the backend's count and SHA-256: %v", err)
		}
		got := int64(binary.BigEndian.Uint64(ans[:8]))
		switch {
		case got < n:
			return fail(truncated, "backend received %d of %d bytes", got, n)
		case got > n:
			return fail(corrupted, "backend received %d bytes, %d more than sent", got, got-n)
		case !bytes.Equal(ans[8:], sum):
			return fail(corrupted, "SHA-256 mismatch: backend %x, sent %x", ans[8:], sum)
		}
		if extra, err := expectEOF(d); err != nil || extra > 0 {
			return fail(corrupted, "after the answer: %d extra bytes, %v", extra, err)
		}
		return outcome{up: n}
	case modeSource:
		sum, got, err := recvN(d, n, rng, buf)
		if err != nil {
			return fail(classify(err), "received %d of %d bytes: %v", got, n, err)
		}
		var trailer [32]byte
		if m, err := io.ReadFull(d, trailer[:]); err != nil {
			return fail(classify(err), "reading the SHA-256 trailer (%d of 32 bytes): %v", m, err)
		}
		if !bytes.Equal(trailer[:], sum) {
			return fail(corrupted, "SHA-256 mismatch: backend sent %x, received %x", trailer, sum)
		}
		if extra, err := expectEOF(d); err != nil || extra > 0 {
			return fail(corrupted, "after the trailer: %d extra bytes, %v", extra, err)
		}
		c.CloseWrite()
		return outcome{down: n}
	case modeEcho:
		type sent struct {
			sum []byte
			n   int64
			err error
		}
		res := make(chan sent, 1)
		go func() {
			wrng := rand.New(rand.NewPCG(seed, 1))
			sum, m, err := sendStream(d, newStream(seed), n, wrng, make([]byte, maxChunk))
			if err == nil {
				err = c.CloseWrite()
			}
			res <- sent{sum, m, err}
		}()
		sum, got, rerr := recvAll(d, n, rng, buf)
		if rerr != nil || got != n {
			// Unblock the writer, which may wait on a full window.
			c.Close()
		}
		w := <-res
		switch {
		case rerr != nil && w.err != nil && w.n < n && classify(rerr) != hung:
			return fail(classify(w.err), "sent %d of %d bytes: %v (reading: %v)", w.n, n, w.err, rerr)
		case rerr != nil:
			return fail(classify(rerr), "echo: received %d of %d bytes: %v", got, n, rerr)
		case got < n:
			return fail(truncated, "echo: EOF after %d of %d bytes", got, n)
		case got > n:
			return fail(corrupted, "echo: received more than the %d bytes sent", n)
		case w.err != nil:
			return fail(classify(w.err), "sent %d of %d bytes: %v", w.n, n, w.err)
		case !bytes.Equal(sum, w.sum):
			return fail(corrupted, "echo: SHA-256 mismatch: sent %x, received %x", w.sum, sum)
		}
		return outcome{up: n, down: n}
	}
	return fail(errored, "unknown mode %q", mode)
}

// shorts runs n short connections: connect, send a few bytes, read their
// echo, close.
func (s *soak) shorts(ctx context.Context, n int, what string) *phaseResult {
	r := &phaseResult{}
	start := time.Now()
	s.parallel(ctx, n, func(i int) {
		r.record(fmt.Sprintf("%s #%d", what, i), s.short())
	})
	r.elapsed = time.Since(start)
	return r
}

func (s *soak) short() outcome {
	seed := s.nextSeed()
	rng := rand.New(rand.NewPCG(seed, 7))
	payload := make([]byte, 1+rng.IntN(64))
	newStream(seed).Read(payload)
	c, d, err := s.dial(0)
	if err != nil {
		return fail(errored, "dial: %v", err)
	}
	defer c.Close()
	d.stall = 10 * time.Second
	msg := append(header(modeEcho, 0, seed), payload...)
	if _, err := d.Write(msg); err != nil {
		return fail(classify(err), "write: %v", err)
	}
	got := make([]byte, len(payload))
	if m, err := io.ReadFull(d, got); err != nil {
		return fail(classify(err), "read %d of %d bytes: %v", m, len(payload), err)
	}
	if !bytes.Equal(got, payload) {
		return fail(corrupted, "echo %x, sent %x", got, payload)
	}
	return outcome{up: int64(len(payload)), down: int64(len(payload))}
}

// Reset scenarios.
const (
	rstClientRecv = iota // client resets while the backend sends
	rstClientSend        // client resets while it sends
	rstClientEcho        // client resets during an echo
	rstBackendTx         // backend resets while it sends
	rstBackendRx         // backend resets while the client sends
	rstBackendNow        // backend resets right after the header
	rstScenarios
)

var rstNames = [...]string{
	"client resets while receiving",
	"client resets while sending",
	"client resets during echo",
	"backend resets while sending",
	"backend resets while receiving",
	"backend resets at once",
}

func (s *soak) resetPhase(ctx context.Context) *phaseResult {
	r := &phaseResult{}
	start := time.Now()
	s.parallel(ctx, s.o.resets, func(i int) {
		sc := i % rstScenarios
		o, seen := s.reset(sc)
		if seen != "" {
			r.seen(seen)
		}
		r.record(fmt.Sprintf("reset #%d (%s)", i, rstNames[sc]), o)
	})
	r.elapsed = time.Since(start)
	return r
}

// reset runs one reset scenario. It fails only when the side that did not
// reset hangs, or receives bytes that are not a prefix of what was sent;
// seen tells how the reset reached the client (for backend resets).
func (s *soak) reset(sc int) (o outcome, seen string) {
	seed := s.nextSeed()
	rng := rand.New(rand.NewPCG(seed, 11))
	// The point of the reset: anywhere in the first 4 MiB, often early.
	k := int64(rng.IntN(1 << rng.IntN(23)))
	const big = 64 * mib
	c, d, err := s.dial(big)
	if err != nil {
		return fail(errored, "dial: %v", err), ""
	}
	defer c.Close()
	d.stall = 15 * time.Second
	d.end = time.Now().Add(60 * time.Second)
	hdr := func(mode byte, n int64) []byte {
		h := header(mode, uint64(n), seed)
		h[5] = 1 // a reset test: the backend counts how the reset reached it
		return h
	}
	buf := make([]byte, maxChunk)
	abort := func() {
		c.SetLinger(0)
		c.Close()
	}
	switch sc {
	case rstClientRecv:
		if _, err := d.Write(hdr(modeSource, big)); err != nil {
			return fail(classify(err), "header: %v", err), ""
		}
		exp := newStream(seed)
		if err := readPrefix(d, exp, k, rng, buf); err != nil {
			return fail(errKind(err), "before resetting: %v", err), ""
		}
		abort()
		return outcome{down: k}, ""
	case rstClientSend:
		if _, err := d.Write(hdr(modeSink, big)); err != nil {
			return fail(classify(err), "header: %v", err), ""
		}
		if _, sent, err := sendStream(d, newStream(seed), k, rng, buf); err != nil {
			return fail(classify(err), "sent %d of %d bytes before resetting: %v", sent, k, err), ""
		}
		abort()
		return outcome{up: k}, ""
	case rstClientEcho:
		if _, err := d.Write(hdr(modeEcho, 0)); err != nil {
			return fail(classify(err), "header: %v", err), ""
		}
		// Send k bytes while reading back the first half, then reset (the
		// writer may still be sending: its error is expected).
		done := make(chan struct{})
		go func() {
			defer close(done)
			sendStream(d, newStream(seed), k, rand.New(rand.NewPCG(seed, 12)), make([]byte, maxChunk))
		}()
		rerr := readPrefix(d, newStream(seed), k/2, rng, buf)
		abort()
		<-done
		if rerr != nil {
			return fail(errKind(rerr), "before resetting: %v", rerr), ""
		}
		return outcome{up: k / 2, down: k / 2}, ""
	case rstBackendTx, rstBackendNow:
		if sc == rstBackendNow {
			k = 0
		}
		if _, err := d.Write(hdr(modeRstTx, k)); err != nil {
			return fail(classify(err), "header: %v", err), ""
		}
		// Everything up to k may arrive, then the end: never more, never
		// other bytes, never a hang.
		exp := newStream(seed)
		var got int64
		want := make([]byte, maxChunk)
		for {
			m, err := d.Read(buf[:chunk(rng)])
			if m > 0 {
				exp.Read(want[:m])
				if !bytes.Equal(buf[:m], want[:m]) {
					return fail(corrupted, "bytes %d..%d differ from what the backend sent", got, got+int64(m)), ""
				}
				got += int64(m)
				if got > k {
					return fail(corrupted, "received %d bytes, the backend sent %d", got, k), ""
				}
			}
			if err != nil {
				kind := classify(err)
				if kind == hung || kind == errored {
					return fail(kind, "after %d of %d bytes: %v", got, k, err), ""
				}
				how := "clean EOF"
				if errors.Is(err, syscall.ECONNRESET) {
					how = "reset"
				}
				complete := "all bytes"
				if got < k {
					complete = "some bytes lost"
				}
				return outcome{down: got}, fmt.Sprintf("%s: client saw %s (%s)", rstNames[sc], how, complete)
			}
		}
	case rstBackendRx:
		if _, err := d.Write(hdr(modeRstRx, k)); err != nil {
			return fail(classify(err), "header: %v", err), ""
		}
		// Keep sending until the connection fails; past big bytes the
		// proxy did not pass the reset on.
		_, sent, err := sendStream(d, newStream(seed), big, rng, buf)
		if err == nil {
			c.CloseWrite()
			var one [1]byte
			_, err = d.Read(one[:])
			if err == nil {
				return fail(corrupted, "the backend sent data in rst-rx mode"), ""
			}
			if err == io.EOF {
				return outcome{up: k}, rstNames[sc] + ": client could send everything, then saw clean EOF"
			}
		}
		kind := classify(err)
		if kind == hung || kind == errored {
			return fail(kind, "after sending %d bytes (backend reset after %d): %v", sent, k, err), ""
		}
		how := "reset"
		if errors.Is(err, io.EOF) {
			how = "EOF"
		}
		return outcome{up: k}, fmt.Sprintf("%s: client write failed (%s)", rstNames[sc], how)
	}
	return fail(errored, "unknown scenario %d", sc), ""
}

type kindError struct {
	kind failKind
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }

func errKind(err error) failKind {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return classify(err)
}

// readPrefix reads n bytes and checks that they are the next n of exp.
func readPrefix(r io.Reader, exp io.Reader, n int64, rng *rand.Rand, buf []byte) error {
	want := make([]byte, len(buf))
	var got int64
	for got < n {
		k := min(int64(chunk(rng)), n-got)
		m, err := r.Read(buf[:k])
		if m > 0 {
			exp.Read(want[:m])
			if !bytes.Equal(buf[:m], want[:m]) {
				return &kindError{corrupted, fmt.Errorf("bytes %d..%d differ from what was sent", got, got+int64(m))}
			}
			got += int64(m)
		}
		if err != nil && got < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("after %d of %d bytes: %w", got, n, err)
		}
	}
	return nil
}

// afterResets checks the gateway still serves: short connections and a
// 64 MiB echo.
func (s *soak) afterResets(ctx context.Context) *phaseResult {
	start := time.Now()
	r := s.shorts(ctx, 200, "after-resets short")
	o := s.transfer(64*mib, modeEcho)
	r.record("after-resets 64 MiB echo", o)
	r.elapsed = time.Since(start)
	return r
}

// ---------------------------------------------------------------- gateway

type gatewayProc struct {
	cmd       *exec.Cmd
	dir       string
	logPath   string
	l4Addr    string
	adminAddr string
	exited    chan struct{}
}

func spawnGateway(o options, backendAddr string) (*gatewayProc, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Printf("l4soak: %s missing: building it\n", o.bin)
		build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/rustygate")
		build.Dir = moduleRoot()
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/rustygate: %v\n%s", err, out)
		}
	}
	switch o.datapath {
	case "auto", "splice", "kernel":
	default:
		return nil, fmt.Errorf("-datapath %q: want auto, splice or kernel", o.datapath)
	}
	dir, err := os.MkdirTemp("", "rustygate-l4soak-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`# l4soak: an l4 listener in front of the soak backend
server: { listen: "127.0.0.1:0" }
admin:  { listen: "127.0.0.1:0" }
log:    { format: json, level: info, access: false }
routes: []
l4:
  - name: soak
    listen: "127.0.0.1:0"
    backends: [ { addr: %q } ]
    datapath: %s
`, backendAddr, o.datapath)
	cfgPath := filepath.Join(dir, "l4soak.yaml")
	logPath := filepath.Join(dir, "gateway.log")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	lf.Close()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	g := &gatewayProc{cmd: cmd, dir: dir, logPath: logPath, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(g.exited)
	}()
	started := time.Now()
	deadline := started.Add(o.startTimeout)
	for {
		for _, l := range g.lines() {
			switch l["msg"] {
			case "l4 listener started":
				if l["listener"] == "soak" {
					g.l4Addr, _ = l["listen"].(string)
				}
			case "RustyGate started":
				g.adminAddr, _ = l["admin"].(string)
			}
		}
		if g.l4Addr != "" && g.adminAddr != "" {
			fmt.Printf("l4soak: spawned gateway pid %d, ready after %s (config %s, log %s)\n", cmd.Process.Pid, time.Since(started).Round(time.Millisecond), cfgPath, logPath)
			return g, nil
		}
		if !g.running() {
			out := g.tail(30)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("gateway exited during start-up:\n%s", out)
		}
		if time.Now().After(deadline) {
			out := g.tail(30)
			g.stop(true)
			return nil, fmt.Errorf("gateway did not start within %s (log kept in %s):\n%s", o.startTimeout, dir, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "."
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func (g *gatewayProc) running() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

func (g *gatewayProc) stop(keep bool) {
	if g.running() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			g.cmd.Process.Kill()
			<-g.exited
		}
	}
	if keep {
		fmt.Printf("l4soak: gateway files kept in %s\n", g.dir)
		return
	}
	os.RemoveAll(g.dir)
}

func (g *gatewayProc) lines() []map[string]any {
	f, err := os.Open(g.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*kib), 4*mib)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (g *gatewayProc) tail(n int) string {
	b, _ := os.ReadFile(g.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSummary counts the gateway's "l4 connection" lines by close reason,
// and its warnings and errors.
func (g *gatewayProc) logSummary() string {
	closes := map[string]int{}
	datapaths := map[string]int{}
	levels := map[string]int{}
	n := 0
	for _, l := range g.lines() {
		if lv, _ := l["level"].(string); lv == "WARN" || lv == "ERROR" {
			levels[lv+" "+fmt.Sprint(l["msg"])]++
		}
		if l["msg"] != "l4 connection" {
			continue
		}
		n++
		reason, _ := l["close"].(string)
		if reason == "" {
			reason, _ = l["result"].(string)
		}
		closes[reason]++
		if dp, _ := l["datapath"].(string); dp != "" {
			datapaths[dp]++
		} else {
			datapaths["(not logged)"]++
		}
	}
	s := fmt.Sprintf("%d \"l4 connection\" lines (close: %s; datapath: %s)", n, counts(closes), counts(datapaths))
	if len(levels) > 0 {
		var w []string
		for k, v := range levels {
			w = append(w, fmt.Sprintf("%q x%d", k, v))
		}
		sort.Strings(w)
		s += "; warnings/errors: " + strings.Join(w, ", ")
	}
	return s
}

// datapaths counts the "l4 connection" lines by their datapath field.
func (g *gatewayProc) datapaths() map[string]int {
	dp := map[string]int{}
	for _, l := range g.lines() {
		if l["msg"] == "l4 connection" {
			v, _ := l["datapath"].(string)
			dp[v]++
		}
	}
	return dp
}

func counts(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// ---------------------------------------------------------------- metrics

func metric(admin, series string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, series) {
			continue
		}
		rest := line[len(series):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("no %s series", series)
	}
	return sum, nil
}

func waitActiveZero(admin string, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := metric(admin, "rustygate_l4_connections_active")
		if (err == nil && v == 0) || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutines reads the count on the first line of the pprof goroutine
// page ("goroutine profile: total N").
func goroutines(admin string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return 0, fmt.Errorf("unexpected pprof line %q", line)
	}
	return strconv.Atoi(f[len(f)-1])
}

func waitZero(v *atomic.Int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for v.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return v.Load()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
