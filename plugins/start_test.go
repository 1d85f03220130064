package plugins

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Memory instructions (alignment 2^2, offset 0) and i32.add.
var (
	opI32Load  = []byte{0x28, 0x02, 0x00}
	opI32Store = []byte{0x36, 0x02, 0x00}
	opI32Add   = []byte{0x6a}
)

// commandGuest is a WASI command, like the guests TinyGo and the
// http-wasm guest libraries build: its main (_start) sets the guest up,
// here by counting its runs in memory[0:4], then ends as start says:
// "return", "exit0" (proc_exit(0), as a C or Go main does), "exit3",
// "trap" or "loop" (never). handle_request traps unless main ran exactly once in its
// instance, and answers "main ran once".
//
//	(module
//	  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
//	  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 16) "main ran once")
//	  (func (export "_start")
//	    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
//	    ;; "exit0": (call $proc_exit (i32.const 0)) unreachable
//	    ;; "exit3": (call $proc_exit (i32.const 3)) unreachable
//	    ;; "trap":  unreachable
//	    ;; "loop":  (loop br 0)
//	  )
//	  (func (export "handle_request") (result i64)
//	    (if (i32.ne (i32.load (i32.const 0)) (i32.const 1)) (then unreachable))
//	    (call $write_body (i32.const 1) (i32.const 16) (i32.const 13))
//	    (i64.const 0)))
func commandGuest(start string) *wasmModule {
	const procExit, writeBody = 0, 1
	main := code(i32c(0), i32c(0), opI32Load, i32c(1), opI32Add, opI32Store)
	switch start {
	case "exit0":
		main = code(main, i32c(0), call(procExit), opUnreachable)
	case "exit3":
		main = code(main, i32c(3), call(procExit), opUnreachable)
	case "trap":
		main = code(main, opUnreachable)
	case "loop":
		main = code(main, []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}) // loop br 0 end
	}
	return &wasmModule{
		types: []wasmType{
			{[]byte{tI32}, nil},             // 0: proc_exit
			{[]byte{tI32, tI32, tI32}, nil}, // 1: write_body
			{nil, nil},                      // 2: _start
			{nil, []byte{tI64}},             // 3: handle_request
		},
		imports: []wasmImport{
			{"wasi_snapshot_preview1", "proc_exit", 0},
			{"http_handler", "write_body", 1},
		},
		funcs: []wasmFunc{
			{typ: 2, body: main},
			{typ: 3, body: code(
				i32c(0), opI32Load, i32c(1), opI32Ne,
				opIfVoid, opUnreachable, opEnd,
				i32c(1), i32c(16), i32c(13), call(writeBody),
				i64c(0),
			)},
		},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"_start", 0, 2}, {"handle_request", 0, 3}},
		data:    []wasmData{{16, "main ran once"}},
	}
}

// TestCommandGuest: the host runs a command's _start once per instance
// (its main registers the handler), before the instance serves requests;
// a main ending with proc_exit(0) started the guest successfully.
func TestCommandGuest(t *testing.T) {
	for _, start := range []string{"return", "exit0"} {
		t.Run(start, func(t *testing.T) {
			m, _ := newManager(t, Options{MaxInstances: 4})
			h := newHandler(t, m, writeGuest(t, commandGuest(start)), false, nil)
			var wg sync.WaitGroup
			errs := make(chan string, 64)
			for range 8 {
				wg.Go(func() {
					for range 8 {
						r := roundTrip(h, newEx("GET", "/"))
						if r.status != 200 || r.body != "main ran once" || r.forwarded {
							errs <- r.body
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Errorf("reply %q, want %q from its own answer", e, "main ran once")
			}
			if n := m.Stats().Instances; n < 1 || n > 4 {
				t.Errorf("%d instances made, want 1 to 4 (one main each)", n)
			}
		})
	}
}

// TestStartFailures: a guest whose main traps, exits with a non-zero code
// or never returns (cut at the start deadline), and a module that is both
// a command and a reactor, fail to load with a reason, and fail Check.
func TestStartFailures(t *testing.T) {
	both := commandGuest("return")
	both.exports = append(both.exports, wasmExport{"_initialize", 0, 2})
	for name, tc := range map[string]struct {
		g    *wasmModule
		want string
	}{
		"trap":  {commandGuest("trap"), "_start: wasm error: unreachable"},
		"exit3": {commandGuest("exit3"), "exit_code(3)"},
		"both":  {both, `exports both "_start" (a WASI command) and "_initialize" (a WASI reactor)`},
		"loop":  {commandGuest("loop"), "the guest did not start within 300ms"},
	} {
		m, _ := newManager(t, Options{InitTimeout: 300 * time.Millisecond})
		path := writeGuest(t, tc.g)
		_, err := New(m, Entry{Path: path}, "r1", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v, want an error containing %q", name, err, tc.want)
		}
		if name == "loop" {
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason != "timeout" {
				t.Errorf("loop: New: %v, want a timeout", err)
			}
			tc.want = "the guest did not start within 2s" // Check's deadline is run's
		}
		if err := Check(path, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// prefixGuest writes a response body in handle_request and forwards the
// request (next=1), as the http-wasm TCK's get_protocol_version does; it
// exports no handle_response.
//
//	(module
//	  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "guest:")
//	  (func (export "handle_request") (result i64)
//	    (call $write_body (i32.const 1) (i32.const 0) (i32.const 6))
//	    (i64.const 1)))
func prefixGuest() *wasmModule {
	return &wasmModule{
		types:   []wasmType{{[]byte{tI32, tI32, tI32}, nil}, {nil, []byte{tI64}}},
		imports: []wasmImport{{"http_handler", "write_body", 0}},
		funcs: []wasmFunc{{typ: 1, body: code(
			i32c(1), i32c(0), i32c(6), call(0),
			i64c(1),
		)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 1}},
		data:    []wasmData{{0, "guest:"}},
	}
}

// TestBodyWrittenBeforeForwarding: what the guest wrote to the response
// body before forwarding the request comes before the backend's body
// (the proxy buffers that response); the gateway's own error response is
// left alone.
func TestBodyWrittenBeforeForwarding(t *testing.T) {
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, writeGuest(t, prefixGuest()), false, nil)
	e := newEx("GET", "/")
	if reply := h.Handle(e); reply != nil {
		t.Fatalf("Handle answered %+v, want the request forwarded", reply)
	}
	if got := h.ResponseNeeds(e); got != NeedBody {
		t.Fatalf("ResponseNeeds = %v, want NeedBody", got)
	}
	e.responding, e.status, e.respBody = true, 200, []byte("backend")
	if err := h.OnResponse(e); err != nil || string(e.respBody) != "guest:backend" {
		t.Fatalf("OnResponse: %v, body %q, want %q", err, e.respBody, "guest:backend")
	}

	e = newEx("GET", "/")
	h.Handle(e)
	e.responding, e.isErr, e.status, e.respBody = true, true, 502, []byte("bad gateway")
	if err := h.OnResponse(e); err != nil || string(e.respBody) != "bad gateway" {
		t.Fatalf("error response: %v, body %q", err, e.respBody)
	}
	if r := roundTrip(h, newEx("GET", "/")); r.body != "guest:ok" {
		t.Fatalf("round trip body %q", r.body)
	}
}

// bufferGuest is a reactor whose _initialize enables buffer_response and
// whose handle_response replaces the response body with "rewritten".
//
//	(module
//	  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
//	  (import "http_handler" "write_body" (func $write_body (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "rewritten")
//	  (func (export "_initialize") (drop (call $enable_features (i32.const 2))))
//	  (func (export "handle_request") (result i64) (i64.const 1))
//	  (func (export "handle_response") (param i32 i32)
//	    (call $write_body (i32.const 1) (i32.const 0) (i32.const 9))))
func bufferGuest() *wasmModule {
	return &wasmModule{
		types: []wasmType{
			{[]byte{tI32}, []byte{tI32}},    // 0: enable_features
			{[]byte{tI32, tI32, tI32}, nil}, // 1: write_body
			{nil, nil},                      // 2: _initialize
			{nil, []byte{tI64}},             // 3: handle_request
			{[]byte{tI32, tI32}, nil},       // 4: handle_response
		},
		imports: []wasmImport{
			{"http_handler", "enable_features", 0},
			{"http_handler", "write_body", 1},
		},
		funcs: []wasmFunc{
			{typ: 2, body: code(i32c(2), call(0), []byte{0x1a})}, // drop
			{typ: 3, body: i64c(1)},
			{typ: 4, body: code(i32c(1), i32c(0), i32c(9), call(1))},
		},
		memMin: 1,
		memMax: -1,
		exports: []wasmExport{
			{"memory", 2, 0}, {"_initialize", 0, 2}, {"handle_request", 0, 3}, {"handle_response", 0, 4},
		},
		data: []wasmData{{0, "rewritten"}},
	}
}

// TestReactorBufferResponse: a reactor's _initialize still runs (here it
// enables buffer_response for every request), the handler asks the proxy
// for the whole body (NeedBody) and handle_response rewrites it.
func TestReactorBufferResponse(t *testing.T) {
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, writeGuest(t, bufferGuest()), false, nil)
	e := newEx("GET", "/")
	if reply := h.Handle(e); reply != nil {
		t.Fatalf("Handle answered %+v", reply)
	}
	if got := h.ResponseNeeds(e); got != NeedBody {
		t.Fatalf("ResponseNeeds = %v, want NeedBody", got)
	}
	e.responding, e.status, e.respBody = true, 200, []byte("backend")
	if err := h.OnResponse(e); err != nil || string(e.respBody) != "rewritten" {
		t.Fatalf("OnResponse: %v, body %q", err, e.respBody)
	}
}

func TestCheckInstantiates(t *testing.T) {
	if err := Check(writeGuest(t, commandGuest("exit0")), nil); err != nil {
		t.Errorf("a command guest whose main exits 0: %v", err)
	}
	noHandler := commandGuest("return")
	noHandler.exports = noHandler.exports[:2]
	err := Check(writeGuest(t, noHandler), nil)
	if !errors.Is(err, errNoHandleRequest) {
		t.Errorf("a guest without handle_request: %v", err)
	}
}
