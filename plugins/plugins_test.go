package plugins

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
)

func TestAddHeader(t *testing.T) {
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, example(t, "add_header"), false, nil)

	e := newEx("GET", "/hello?x=1", "Host", "example.test")
	if reply := h.Handle(e); reply != nil {
		t.Fatalf("Handle = %+v, want nil (forward)", reply)
	}
	if got := h.ResponseNeeds(e); got != NeedResponse {
		t.Fatalf("ResponseNeeds = %v, want NeedResponse", got)
	}
	e.responding, e.status = true, 200
	if err := h.OnResponse(e); err != nil {
		t.Fatal(err)
	}
	if got := e.respHeader("X-RustyGate-Plugin"); got != "executed" {
		t.Fatalf("X-RustyGate-Plugin = %q, want executed (headers %q)", got, e.respH)
	}
	if got := h.ResponseNeeds(e); got != NeedNone {
		t.Fatalf("ResponseNeeds after OnResponse = %v, want NeedNone", got)
	}
	// Again through the pooled instance.
	r := roundTrip(h, newEx("GET", "/"))
	if r.status != 200 || r.header("X-RustyGate-Plugin") != "executed" || r.body != "ok" {
		t.Fatalf("second request: %+v", r)
	}
}

func TestDeny(t *testing.T) {
	m, _ := newManager(t, Options{})
	rep := &reporter{}
	h, err := New(m, Entry{Path: example(t, "deny")}, "r1", rep)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	r := roundTrip(h, newEx("GET", "/", "X-Deny", "1"))
	if r.forwarded || r.status != 403 || r.body != "denied by plugin\n" || r.header("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("with X-Deny: %+v", r)
	}
	r = roundTrip(h, newEx("GET", "/"))
	if !r.forwarded || r.status != 200 {
		t.Fatalf("without X-Deny: %+v", r)
	}
	if got := rep.got(); !slices.Equal(got, []string{"wasm/r1/denied"}) {
		t.Fatalf("reported %q", got)
	}
}

func TestLoopIsCutByTheDeadline(t *testing.T) {
	for _, workers := range []int{0, -1} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			testLoopIsCut(t, Options{Timeout: 100 * time.Millisecond, Workers: workers})
		})
	}
}

// testLoopIsCut: a guest that never returns fails its call with a timeout
// at the deadline; its instance is discarded, and Handle answers 504.
func testLoopIsCut(t *testing.T, opts Options) {
	m, logs := newManager(t, opts)
	rep := &reporter{}
	h, err := New(m, Entry{Path: example(t, "loop")}, "r1", rep)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	start := time.Now()
	_, err = h.OnRequest(newEx("GET", "/"))
	elapsed := time.Since(start)
	var pe *Error
	if !errors.As(err, &pe) || pe.Reason != "timeout" {
		t.Fatalf("err = %v, want a timeout *Error", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("stopped after %v, want about 100ms", elapsed)
	}
	// The instance that overran is discarded, not pooled, and its slot
	// freed, once the guest has stopped.
	waitFor(t, "the overrun instance discarded", func() bool {
		return h.cur.Load().live.Load() == 0 && h.Running() == 0
	})
	// Through Handle: fail closed with the 504.
	r := roundTrip(h, newEx("GET", "/"))
	if r.forwarded || r.status != 504 || r.body != `{"error":"plugin timed out"}` {
		t.Fatalf("fail closed: %+v", r)
	}
	if got := rep.got(); !slices.Equal(got, []string{"wasm/r1/timeout"}) {
		t.Fatalf("reported %q", got)
	}
	if !strings.Contains(logs.String(), "wasm plugin failed") {
		t.Fatalf("failure not logged:\n%s", logs)
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTrap(t *testing.T) {
	m, _ := newManager(t, Options{})
	for _, failOpen := range []bool{false, true} {
		rep := &reporter{}
		h, err := New(m, Entry{Path: example(t, "trap"), FailOpen: failOpen}, "r1", rep)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			r := roundTrip(h, newEx("GET", "/"))
			if failOpen {
				if !r.forwarded || r.status != 200 {
					t.Fatalf("fail open: %+v", r)
				}
			} else if r.forwarded || r.status != 500 || r.body != `{"error":"plugin failed"}` || r.header("Content-Type") != "application/json" {
				t.Fatalf("fail closed: %+v", r)
			}
		}
		if got := rep.got(); len(got) != 3 || got[0] != "wasm/r1/trap" {
			t.Fatalf("fail_open=%v: reported %q", failOpen, got)
		}
		_, err = h.OnRequest(newEx("GET", "/"))
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v, want the unreachable trap", err)
		}
		h.Close()
	}
}

func TestConcurrentCalls(t *testing.T) {
	// Generous deadlines: this checks pooling, not speed, on a shared CPU.
	m, _ := newManager(t, Options{Timeout: 5 * time.Second, QueueTimeout: 30 * time.Second})
	h, err := New(m, Entry{Path: example(t, "add_header"), MaxConcurrency: 64, MaxQueue: 1000}, "r1", &reporter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			r := roundTrip(h, newEx("GET", "/c"))
			if r.status != 200 || r.header("X-RustyGate-Plugin") != "executed" {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d calls failed", f, n)
	}
	if live := h.cur.Load().live.Load(); live < 1 || live > int64(m.opts.MaxInstances) {
		t.Fatalf("%d instances, want 1..%d", live, m.opts.MaxInstances)
	}
}

func TestHotSwap(t *testing.T) {
	dir := t.TempDir()
	path := copyExample(t, "add_header", dir, "plugin.wasm")
	v2, err := os.ReadFile(example(t, "add_header_v2"))
	if err != nil {
		t.Fatal(err)
	}
	m, logs := newManager(t, Options{Timeout: 5 * time.Second, QueueTimeout: 30 * time.Second, Debounce: 50 * time.Millisecond})
	h := newHandler(t, m, path, false, nil)
	if err := m.Watch(dir); err != nil {
		t.Fatal(err)
	}
	// Compile v2 once beforehand, as a deployment pipeline would (make
	// plugins, then copy): the wazero compilation cache then makes the
	// reload quick even under the race detector.
	if err := m.Load(copyExample(t, "add_header_v2", t.TempDir(), "v2.wasm")); err != nil {
		t.Fatal(err)
	}

	var (
		stop     atomic.Bool
		failures atomic.Int64
		calls    atomic.Int64
		sawV2    = make(chan time.Time, 1)
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				time.Sleep(100 * time.Microsecond) // busy, not CPU-bound
				r := roundTrip(h, newEx("GET", "/swap"))
				calls.Add(1)
				switch r.header("X-RustyGate-Plugin") {
				case "executed":
				case "executed-v2":
					select {
					case sawV2 <- time.Now():
					default:
					}
				default:
					failures.Add(1)
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	written := time.Now()
	if err := os.WriteFile(path, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	var swapped time.Time
	select {
	case swapped = <-sawV2:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if swapped.IsZero() {
		t.Fatalf("v2 never seen after %d calls; logs:\n%s", calls.Load(), logs)
	}
	if d := swapped.Sub(written); d > time.Second {
		t.Errorf("new behaviour after %v, want within 1s", d)
	}
	t.Logf("swap seen %v after the write, %d calls", swapped.Sub(written), calls.Load())
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d failed calls during the swap", f)
	}
	if r := roundTrip(h, newEx("GET", "/")); r.header("X-RustyGate-Plugin") != "executed-v2" {
		t.Fatalf("after the swap: %+v", r)
	}

	// A broken file keeps the running version.
	swaps := m.Stats().Swaps
	if err := os.WriteFile(path, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "reload failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("broken file not reported; logs:\n%s", logs)
	}
	if r := roundTrip(h, newEx("GET", "/")); r.header("X-RustyGate-Plugin") != "executed-v2" {
		t.Fatalf("after a broken file: %+v", r)
	}
	if m.Stats().Swaps != swaps {
		t.Fatal("a broken file was swapped in")
	}
}

func TestReloadUnchangedAndNewFile(t *testing.T) {
	dir := t.TempDir()
	path := copyExample(t, "add_header", dir, "a.wasm")
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, path, false, nil)
	before := h.cur.Load()
	if err := m.Reload(path); err != nil {
		t.Fatal(err)
	}
	if h.cur.Load() != before {
		t.Fatal("unchanged file swapped")
	}
	// Handlers of the same file with different configurations get their
	// own pools but share the compiled code.
	h2 := newHandler(t, m, path, false, map[string]any{"k": "v"})
	if h2.cur.Load().c != before.c {
		t.Fatal("compiled code not shared")
	}
	if got := m.Stats().Compiled; got != 1 {
		t.Fatalf("%d compiled modules, want 1", got)
	}
	h2.Close()

	// Building a handler (a configuration reload) picks up a changed file
	// without Watch, and moves the running handlers of the file along.
	copyExample(t, "add_header_v2", dir, "a.wasm")
	h3 := newHandler(t, m, path, false, nil)
	for i, hh := range []*Handler{h, h3} {
		if r := roundTrip(hh, newEx("GET", "/")); r.header("X-RustyGate-Plugin") != "executed-v2" {
			t.Fatalf("handler %d after the file changed: %+v", i, r)
		}
	}
	h.Close()
	h3.Close()
	// The compiled code stays cached for the path (a new handler is
	// quick); the first version's code was released.
	if got := m.Stats().Compiled; got != 1 {
		t.Fatalf("%d compiled modules after closing handlers, want 1", got)
	}
}

func TestLoadErrors(t *testing.T) {
	m, _ := newManager(t, Options{MemoryLimitPages: 16})
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "x.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	noExport := writeGuest(t, &wasmModule{
		types:   []wasmType{{nil, []byte{tI64}}},
		funcs:   []wasmFunc{{typ: 0, body: i64c(1)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}}, // no handle_request
	})
	bigMemory := writeGuest(t, &wasmModule{
		types:   []wasmType{{nil, []byte{tI64}}},
		funcs:   []wasmFunc{{typ: 0, body: i64c(1)}},
		memMin:  32, // over the 16-page cap
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 0}},
	})
	otherImport := writeGuest(t, &wasmModule{
		types:   []wasmType{{nil, []byte{tI64}}, {nil, nil}},
		imports: []wasmImport{{"env", "abort", 1}},
		funcs:   []wasmFunc{{typ: 0, body: i64c(1)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 1}},
	})
	for name, p := range map[string]string{
		"missing":      filepath.Join(dir, "nope.wasm"),
		"not wasm":     notWasm,
		"no export":    noExport,
		"big memory":   bigMemory,
		"other import": otherImport,
	} {
		_, err := New(m, Entry{Path: p}, "r1", nil)
		if err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(m, Entry{}, "r1", nil); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := New(m, Entry{Path: noExport, Config: map[string]any{"f": func() {}}}, "r1", nil); err == nil {
		t.Error("unencodable config accepted")
	}
}

// abiGuest is written against the published ABI only:
//
//	(module
//	  (import "http_handler" "get_uri" (func $get_uri (param i32 i32) (result i32)))
//	  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
//	  (import "http_handler" "add_header_value" (func $add_header_value (param i32 i32 i32 i32 i32)))
//	  (import "http_handler" "get_config" (func $get_config (param i32 i32) (result i32)))
//	  (import "http_handler" "get_header_values" (func $get_header_values (param i32 i32 i32 i32 i32) (result i64)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "x-uri-seen")
//	  (data (i32.const 16) "x-abi")
//	  (data (i32.const 32) "wat")
//	  (data (i32.const 48) "x-config")
//	  (data (i32.const 64) "x-echo")
//	  (data (i32.const 80) "x-ctx")
//	  (data (i32.const 96) "ok")
//	  (data (i32.const 112) "x-error")
//	  (func (export "handle_request") (result i64)
//	    (local $len i32) (local $count_len i64)
//	    ;; the URI into memory[1024:], copied to a request header
//	    (local.set $len (call $get_uri (i32.const 1024) (i32.const 1024)))
//	    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 1024) (local.get $len))
//	    ;; the values of request header x-echo into memory[3072:] (NUL-terminated);
//	    ;; if there is one, it becomes response header x-echo (len - 1: no NUL)
//	    (local.set $count_len (call $get_header_values (i32.const 0) (i32.const 64) (i32.const 6) (i32.const 3072) (i32.const 1024)))
//	    (if (i32.wrap_i64 (i64.shr_u (local.get $count_len) (i64.const 32)))
//	      (then (call $add_header_value (i32.const 1) (i32.const 64) (i32.const 6) (i32.const 3072)
//	              (i32.sub (i32.wrap_i64 (local.get $count_len)) (i32.const 1)))))
//	    ;; next=1 with request context 42
//	    (i64.const 180388626433))
//	  (func (export "handle_response") (param $reqCtx i32) (param $isError i32)
//	    (local $len i32)
//	    (call $add_header_value (i32.const 1) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 3))
//	    (local.set $len (call $get_config (i32.const 2048) (i32.const 1024)))
//	    (call $add_header_value (i32.const 1) (i32.const 48) (i32.const 8) (i32.const 2048) (local.get $len))
//	    (if (i32.eq (local.get $reqCtx) (i32.const 42))
//	      (then (call $add_header_value (i32.const 1) (i32.const 80) (i32.const 5) (i32.const 96) (i32.const 2))))
//	    (if (local.get $isError)
//	      (then (call $add_header_value (i32.const 1) (i32.const 112) (i32.const 7) (i32.const 96) (i32.const 2))))))
func abiGuest() *wasmModule {
	const (
		getURI, setHeaderValue, addHeaderValue, getConfig, getHeaderValues = 0, 1, 2, 3, 4
	)
	return &wasmModule{
		types: []wasmType{
			{[]byte{tI32, tI32}, []byte{tI32}},                   // 0: get_uri, get_config
			{[]byte{tI32, tI32, tI32, tI32, tI32}, nil},          // 1: set/add_header_value
			{[]byte{tI32, tI32, tI32, tI32, tI32}, []byte{tI64}}, // 2: get_header_values
			{nil, []byte{tI64}},                                  // 3: handle_request
			{[]byte{tI32, tI32}, nil},                            // 4: handle_response
		},
		imports: []wasmImport{
			{"http_handler", "get_uri", 0},
			{"http_handler", "set_header_value", 1},
			{"http_handler", "add_header_value", 1},
			{"http_handler", "get_config", 0},
			{"http_handler", "get_header_values", 2},
		},
		funcs: []wasmFunc{
			{typ: 3, locals: []byte{tI32, tI64}, body: code(
				i32c(1024), i32c(1024), call(getURI), localSet(0),
				i32c(0), i32c(0), i32c(10), i32c(1024), localGet(0), call(setHeaderValue),
				i32c(0), i32c(64), i32c(6), i32c(3072), i32c(1024), call(getHeaderValues), localTee(1),
				i64c(32), opI64ShrU, opI32WrapI64,
				opIfVoid,
				i32c(1), i32c(64), i32c(6), i32c(3072), localGet(1), opI32WrapI64, i32c(1), opI32Sub, call(addHeaderValue),
				opEnd,
				i64c(42<<32|1),
			)},
			{typ: 4, locals: []byte{tI32}, body: code(
				i32c(1), i32c(16), i32c(5), i32c(32), i32c(3), call(addHeaderValue),
				i32c(2048), i32c(1024), call(getConfig), localSet(2),
				i32c(1), i32c(48), i32c(8), i32c(2048), localGet(2), call(addHeaderValue),
				localGet(0), i32c(42), opI32Eq,
				opIfVoid, i32c(1), i32c(80), i32c(5), i32c(96), i32c(2), call(addHeaderValue), opEnd,
				localGet(1),
				opIfVoid, i32c(1), i32c(112), i32c(7), i32c(96), i32c(2), call(addHeaderValue), opEnd,
			)},
		},
		memMin: 1,
		memMax: -1,
		exports: []wasmExport{
			{"memory", 2, 0},
			{"handle_request", 0, 5},
			{"handle_response", 0, 6},
		},
		data: []wasmData{
			{0, "x-uri-seen"}, {16, "x-abi"}, {32, "wat"}, {48, "x-config"},
			{64, "x-echo"}, {80, "x-ctx"}, {96, "ok"}, {112, "x-error"},
		},
	}
}

func TestABIGuest(t *testing.T) {
	m, _ := newManager(t, Options{MaxInstances: 2})
	h := newHandler(t, m, writeGuest(t, abiGuest()), false, map[string]any{"greeting": "hi"})

	e := newEx("GET", "/v1/items?id=7", "X-Echo", "first")
	r := roundTrip(h, e)
	if !r.forwarded || r.status != 200 {
		t.Fatalf("%+v", r)
	}
	if got := string(e.Header("x-uri-seen")); got != "/v1/items?id=7" {
		t.Errorf("request header x-uri-seen = %q", got)
	}
	for name, want := range map[string]string{
		"x-abi":    "wat",
		"x-config": `{"greeting":"hi"}`,
		"x-echo":   "first", // count 1, len 6 ("first\x00")
		"x-ctx":    "ok",    // handle_response got the request context 42
		"x-error":  "",
	} {
		if got := r.header(name); got != want {
			t.Errorf("response header %s = %q, want %q (all: %q)", name, got, want, r.headers)
		}
	}

	// The request context pins the instance until handle_response: with
	// two instances, two requests in their request phase take both, and a
	// third waits (here: times out quickly).
	m2, _ := newManager(t, Options{MaxInstances: 2, QueueTimeout: 50 * time.Millisecond})
	h2 := newHandler(t, m2, writeGuest(t, abiGuest()), false, nil)
	e1, e2 := newEx("GET", "/1"), newEx("GET", "/2")
	if h2.Handle(e1) != nil || h2.Handle(e2) != nil {
		t.Fatal("not forwarded")
	}
	if _, err := h2.OnRequest(newEx("GET", "/3")); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("third request: err = %v, want busy", err)
	}
	e1.responding, e1.isErr = true, true
	if err := h2.OnResponse(e1); err != nil {
		t.Fatal(err)
	}
	if e1.respHeader("x-ctx") != "ok" || e1.respHeader("x-error") != "ok" {
		t.Fatalf("error response headers %q", e1.respH)
	}
	if _, err := h2.OnRequest(newEx("GET", "/3")); err != nil {
		t.Fatalf("after one response: %v", err)
	}
	e2.responding = true
	if err := h2.OnResponse(e2); err != nil {
		t.Fatal(err)
	}
}

// memoryGuest grows its memory by pages in handle_request and traps when
// that fails:
//
//	(module
//	  (memory (export "memory") 1)
//	  (func (export "handle_request") (result i64)
//	    (if (i32.eq (memory.grow (i32.const <pages>)) (i32.const -1))
//	      (then unreachable))
//	    (i64.const 1)))
func memoryGuest(pages int32) *wasmModule {
	return &wasmModule{
		types: []wasmType{{nil, []byte{tI64}}},
		funcs: []wasmFunc{{typ: 0, body: code(
			i32c(pages), opMemoryGrow, i32c(-1), opI32Eq,
			opIfVoid, opUnreachable, opEnd,
			i64c(1),
		)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 0}},
	}
}

func TestMemoryCap(t *testing.T) {
	m, _ := newManager(t, Options{MemoryLimitPages: 16})
	small := newHandler(t, m, writeGuest(t, memoryGuest(4)), false, nil)
	big := newHandler(t, m, writeGuest(t, memoryGuest(32)), false, nil)

	// 1 + 4 pages, then 9, 13: under the cap; then 17 is over it.
	for i := range 3 {
		if _, err := small.OnRequest(newEx("GET", "/")); err != nil {
			t.Fatalf("grow %d under the cap: %v", i, err)
		}
	}
	_, err := small.OnRequest(newEx("GET", "/"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Reason != "trap" {
		t.Fatalf("growing past the cap: err = %v, want a trap", err)
	}
	// The failed instance was replaced by a fresh one (1 page again).
	if _, err := small.OnRequest(newEx("GET", "/")); err != nil {
		t.Fatalf("fresh instance: %v", err)
	}
	if _, err := big.OnRequest(newEx("GET", "/")); err == nil {
		t.Fatal("growing 32 pages with a 16-page cap succeeded")
	}
}

// TestBadReturn: a next flag other than 0 or 1 is an error.
func TestBadReturn(t *testing.T) {
	m, _ := newManager(t, Options{})
	g := &wasmModule{
		types:   []wasmType{{nil, []byte{tI64}}},
		funcs:   []wasmFunc{{typ: 0, body: i64c(7)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 0}},
	}
	h := newHandler(t, m, writeGuest(t, g), true, nil)
	_, err := h.OnRequest(newEx("GET", "/"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Reason != "bad_return" {
		t.Fatalf("err = %v, want bad_return", err)
	}
	// Fail open: the request goes on.
	if r := roundTrip(h, newEx("GET", "/")); !r.forwarded {
		t.Fatalf("%+v", r)
	}
}

// TestHostTraps: invalid arguments from the guest trap instead of reaching
// the proxy (here a header value with CR LF).
func TestHostTraps(t *testing.T) {
	//	(module
	//	  (import "http_handler" "set_header_value" (func (param i32 i32 i32 i32 i32)))
	//	  (memory (export "memory") 1)
	//	  (data (i32.const 0) "x-a")
	//	  (data (i32.const 16) "v\r\nInjected: 1")
	//	  (func (export "handle_request") (result i64)
	//	    (call 0 (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 14))
	//	    (i64.const 1)))
	g := &wasmModule{
		types:   []wasmType{{[]byte{tI32, tI32, tI32, tI32, tI32}, nil}, {nil, []byte{tI64}}},
		imports: []wasmImport{{"http_handler", "set_header_value", 0}},
		funcs: []wasmFunc{{typ: 1, body: code(
			i32c(0), i32c(0), i32c(3), i32c(16), i32c(14), call(0), i64c(1),
		)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 1}},
		data:    []wasmData{{0, "x-a"}, {16, "v\r\nInjected: 1"}},
	}
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, writeGuest(t, g), false, nil)
	e := newEx("GET", "/")
	_, err := h.OnRequest(e)
	if err == nil || !strings.Contains(err.Error(), "invalid value") {
		t.Fatalf("err = %v, want an invalid value trap", err)
	}
	if len(e.reqH) != 0 {
		t.Fatalf("headers reached the request: %q", e.reqH)
	}
}

func TestHandleNeedsExchange(t *testing.T) {
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, example(t, "add_header"), false, nil)
	reply := h.Handle(plainRequest{})
	if reply == nil || reply.Status != 500 {
		t.Fatalf("reply = %+v, want the 500", reply)
	}
}

type plainRequest struct{ middleware.Request }

func (plainRequest) PeerIP() netip.Addr { return netip.Addr{} }

func TestManagerClose(t *testing.T) {
	dir := t.TempDir()
	path := copyExample(t, "add_header", dir, "p.wasm")
	m, err := NewManager(Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(m, Entry{Path: path}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Watch(dir); err != nil {
		t.Fatal(err)
	}
	if r := roundTrip(h, newEx("GET", "/")); r.header("X-RustyGate-Plugin") != "executed" {
		t.Fatalf("%+v", r)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Calls after Close fail (closed) rather than crash.
	if _, err := h.OnRequest(newEx("GET", "/")); err == nil {
		t.Fatal("call after Close succeeded")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(m, Entry{Path: path}, "r1", nil); err == nil {
		t.Fatal("New after Close succeeded")
	}
}
