package plugins

import (
	"testing"
	"time"
)

// untilInline runs round trips on exchanges made by mk until n in a row
// made no Offload (the guest's calls ran on the caller's goroutine).
func untilInline(t *testing.T, h *Handler, n int, mk func() *testEx) {
	t.Helper()
	streak := 0
	for i := 0; streak < n; i++ {
		if i == 2000 {
			t.Fatalf("after %d round trips, still no %d in a row without Offload", i, n)
		}
		e := mk()
		if r := roundTrip(h, e); !r.forwarded || r.status != 200 {
			t.Fatalf("round trip %d: %+v", i, r)
		}
		if e.offloads == 0 {
			streak++
		} else {
			streak = 0
		}
	}
}

// TestInlineOnlyWhenTrusted: the calls of a guest on probation go to the
// workers, each phase moving its exchange off its event loop first
// (Offload); once trusted, its calls run on the caller's goroutine without
// Offload, unless every inline slot is taken; a suspect goes back to the
// workers.
func TestInlineOnlyWhenTrusted(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system")
	}
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, example(t, "add_header"), false, nil)
	e := newEx("GET", "/")
	if r := roundTrip(h, e); r.header("X-RustyGate-Plugin") != "executed" || e.offloads != 2 {
		t.Fatalf("first round trip: %+v, %d offloads; want the header and 2 (both phases on the workers)", r, e.offloads)
	}
	untilInline(t, h, 20, func() *testEx { return newEx("GET", "/") })

	m.pool.inline.Store(m.pool.inlineMax)
	e = newEx("GET", "/")
	r := roundTrip(h, e)
	m.pool.inline.Store(0)
	if r.header("X-RustyGate-Plugin") != "executed" || e.offloads != 2 {
		t.Errorf("inline slots taken: %+v, %d offloads, want 2", r, e.offloads)
	}

	h.cur.Load().suspect.Store(true)
	e = newEx("GET", "/")
	if roundTrip(h, e); e.offloads != 2 {
		t.Errorf("suspect guest: %d offloads, want 2", e.offloads)
	}
}

// readBodyGuest reads the request body in handle_request.
//
//	(module
//	  (import "http_handler" "read_body" (func $read_body (param i32 i32 i32) (result i64)))
//	  (memory (export "memory") 1)
//	  (func (export "handle_request") (result i64)
//	    (drop (call $read_body (i32.const 0) (i32.const 0) (i32.const 1024)))
//	    (i64.const 1)))
func readBodyGuest() *wasmModule {
	return &wasmModule{
		types:   []wasmType{{[]byte{tI32, tI32, tI32}, []byte{tI64}}, {nil, []byte{tI64}}},
		imports: []wasmImport{{"http_handler", "read_body", 0}},
		funcs: []wasmFunc{{typ: 1, body: code(
			i32c(0), i32c(0), i32c(1024), call(0), []byte{0x1a}, // drop
			i64c(1),
		)}},
		memMin:  1,
		memMax:  -1,
		exports: []wasmExport{{"memory", 2, 0}, {"handle_request", 0, 1}},
	}
}

// TestInlineBodyReadOffloads: a trusted guest's call that reads a request
// body still to come from the client moves its exchange off the event loop
// before the read (which waits for the client); a buffered body is read in
// place.
func TestInlineBodyReadOffloads(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system")
	}
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, writeGuest(t, readBodyGuest()), false, nil)
	withBody := func() *testEx {
		e := newEx("POST", "/")
		e.reqBody = []byte("body")
		return e
	}
	untilInline(t, h, 20, withBody)
	e := withBody()
	e.streamed = true
	if r := roundTrip(h, e); !r.forwarded || e.offloads != 1 {
		t.Errorf("streamed body: %+v, %d offloads, want forwarded after 1", r, e.offloads)
	}
}

// TestInlineOverrunBarsTheGuest: a trusted guest whose inline call runs
// until the deadline holds its caller that once; its calls never run
// inline again, even once it would be trusted again.
func TestInlineOverrunBarsTheGuest(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system")
	}
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	h := newWASMHandler(t, m, example(t, "loop"), 2, 64, &reporter{})
	mod := h.cur.Load()
	mod.good.Store(probation) // as if it had passed its probation
	e := newEx("GET", "/")
	start := time.Now()
	r := roundTrip(h, e)
	took := time.Since(start)
	if r.status != 504 || e.offloads != 0 || took < isolationDeadline {
		t.Fatalf("trusted looping call: %d after %v, %d offloads; want 504 at the deadline, inline", r.status, took, e.offloads)
	}
	if !mod.barred.Load() {
		t.Fatal("the guest is not barred from running inline")
	}
	mod.suspect.Store(false)
	mod.good.Store(probation)
	e = newEx("GET", "/")
	if roundTrip(h, e); e.offloads != 1 {
		t.Errorf("next call: %d offloads, want 1 (off to the workers)", e.offloads)
	}
	waitFor(t, "the looping guests to stop", func() bool { return h.Running() == 0 })
}
