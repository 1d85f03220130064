package plugins

import (
	"testing"
)

// TestCallsLeaveTheEventLoop: each phase of a guest moves its exchange
// off its event loop (Offload) before the call, whether the guest is on
// probation (the call goes to a worker) or trusted (it runs on the
// exchange's goroutine).
func TestCallsLeaveTheEventLoop(t *testing.T) {
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, example(t, "add_header"), false, nil)
	for i := range 2 * probation {
		e := newEx("GET", "/")
		r := roundTrip(h, e)
		if r.header("X-RustyGate-Plugin") != "executed" || e.offloads != 2 {
			t.Fatalf("round trip %d: %+v, %d offloads; want the header and 2 (one a phase)", i, r, e.offloads)
		}
	}
}

// TestInlineOverrunBarsTheGuest: a trusted guest whose call on its
// caller's goroutine runs until the deadline holds that caller once; its
// calls never run there again, even once it would be trusted again.
func TestInlineOverrunBarsTheGuest(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system")
	}
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	h := newWASMHandler(t, m, example(t, "loop"), 2, 64, &reporter{})
	mod := h.cur.Load()
	mod.good.Store(probation) // as if it had passed its probation
	if r := roundTrip(h, newEx("GET", "/")); r.status != 504 {
		t.Fatalf("trusted looping call: %d, want 504", r.status)
	}
	if !mod.barred.Load() || m.Stats().Demoted != 0 {
		t.Fatalf("barred %v, demoted workers %d: want the call inline, its guest barred", mod.barred.Load(), m.Stats().Demoted)
	}
	mod.suspect.Store(false)
	mod.good.Store(probation)
	if r := roundTrip(h, newEx("GET", "/")); r.status != 504 {
		t.Fatalf("second looping call: %d, want 504", r.status)
	}
	waitFor(t, "the second call to run, and be demoted, on a worker", func() bool { return m.Stats().Demoted == 1 })
	waitFor(t, "the looping guest to stop", func() bool { return h.Running() == 0 })
}
