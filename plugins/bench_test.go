package plugins

import "testing"

// benchRoundTrip is roundTrip without the test's own allocations: the
// exchange is reused, only the plugin's work is measured.
func benchRoundTrip(b *testing.B, h *Handler, e *testEx) {
	e.added = e.added[:0]
	e.responding = false
	if reply := h.Handle(e); reply != nil {
		b.Fatalf("reply %+v", reply)
	}
	e.responding, e.status = true, 200
	e.respH = e.respH[:0]
	if h.ResponseNeeds(e) != NeedNone {
		if err := h.OnResponse(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddHeader is the per-request cost of the add_header example
// (a Go guest): handle_request, then handle_response adding the header.
func BenchmarkAddHeader(b *testing.B) {
	m, _ := newManager(b, Options{})
	h := newHandler(b, m, example(b, "add_header"), false, nil)
	e := newEx("GET", "/bench", "Host", "example.test")
	b.ReportAllocs()
	for b.Loop() {
		benchRoundTrip(b, h, e)
	}
	if e.respHeader("X-RustyGate-Plugin") != "executed" {
		b.Fatalf("headers %q", e.respH)
	}
}

// BenchmarkAddHeaderParallel is BenchmarkAddHeader from GOMAXPROCS
// goroutines, through the instance pool.
func BenchmarkAddHeaderParallel(b *testing.B) {
	m, _ := newManager(b, Options{})
	h := newHandler(b, m, example(b, "add_header"), false, nil)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e := newEx("GET", "/bench", "Host", "example.test")
		for pb.Next() {
			benchRoundTrip(b, h, e)
		}
	})
}

// BenchmarkABIGuest is the hand-written guest (no language runtime): it
// reads the URI and a request header, sets a request header and adds four
// response headers over both phases.
func BenchmarkABIGuest(b *testing.B) {
	m, _ := newManager(b, Options{})
	h := newHandler(b, m, writeGuest(b, abiGuest()), false, map[string]any{"k": "v"})
	e := newEx("GET", "/bench?x=1", "X-Echo", "e")
	b.ReportAllocs()
	for b.Loop() {
		e.reqH = e.reqH[:1]
		benchRoundTrip(b, h, e)
	}
}

// BenchmarkDenyForward is the cost of the deny example for a request it
// lets through.
func BenchmarkDenyForward(b *testing.B) {
	m, _ := newManager(b, Options{})
	h := newHandler(b, m, example(b, "deny"), false, nil)
	e := newEx("GET", "/bench")
	b.ReportAllocs()
	for b.Loop() {
		benchRoundTrip(b, h, e)
	}
}
