package plugins

import (
	"runtime"
	"testing"
	"time"
)

// TestTrustedCallsStayOnTheEventLoop: while the guest is on probation,
// each phase moves its exchange off its event loop (Offload) before the
// call, which goes to a worker; once the guest is trusted, a call on an
// idle instance runs inline, on the loop: no Offload at all.
func TestTrustedCallsStayOnTheEventLoop(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system, off the loops")
	}
	m, _ := newManager(t, Options{})
	h := newHandler(t, m, example(t, "add_header"), false, nil)
	trustedAt := -1
	for i := range 3 * probation {
		e := newEx("GET", "/")
		trusted := h.cur.Load().trusted()
		r := roundTrip(h, e)
		if r.header("X-RustyGate-Plugin") != "executed" {
			t.Fatalf("round trip %d: %+v, want the header", i, r)
		}
		switch {
		case !trusted && e.offloads < 2:
			t.Fatalf("round trip %d, on probation: %d offloads, want one a phase at least", i, e.offloads)
		case trusted && e.offloads != 0:
			t.Fatalf("round trip %d, trusted: %d offloads, want none", i, e.offloads)
		case trusted && trustedAt < 0:
			trustedAt = i
		}
	}
	// Two calls a round trip: trusted after half the probation.
	if trustedAt < 0 || trustedAt > probation {
		t.Fatalf("trusted from round trip %d, want by %d", trustedAt, probation)
	}
}

// TestInlineOverrunBarsTheGuest: a trusted guest whose call on its
// caller's goroutine runs until the deadline holds that caller once (its
// exchange leaves the event loop when the call passes the demotion
// delay); its calls never run there again, even once it would be trusted
// again.
func TestInlineOverrunBarsTheGuest(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system")
	}
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	h := newWASMHandler(t, m, example(t, "loop"), 2, 64, &reporter{})
	mod := h.cur.Load()
	mod.good.Store(probation) // as if it had passed its probation
	e := newEx("GET", "/")
	if r := roundTrip(h, e); r.status != 504 {
		t.Fatalf("trusted looping call: %d, want 504", r.status)
	}
	if e.offloads != 1 {
		t.Fatalf("the looping inline call moved its exchange off the loop %d times, want once (at the demotion delay)", e.offloads)
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

// TestWorkerProcsComeAndGo: the pool raises GOMAXPROCS by its workers when
// a guest's calls go to them (on probation), and gives the Ps back once
// the workers were idle for procsIdle (the trusted guest's calls run
// inline).
func TestWorkerProcsComeAndGo(t *testing.T) {
	if !workersSupported {
		t.Skip("no guest workers on this system")
	}
	defer func(d time.Duration) { procsIdle = d }(procsIdle)
	procsIdle = 300 * time.Millisecond
	base := runtime.GOMAXPROCS(0)
	m, _ := newManager(t, Options{Workers: 3})
	h := newHandler(t, m, example(t, "add_header"), false, nil)
	if got := runtime.GOMAXPROCS(0); got != base+3 {
		t.Fatalf("GOMAXPROCS %d with the new guest starting on the workers, want %d", got, base+3)
	}
	for range 2 * probation {
		roundTrip(h, newEx("GET", "/"))
	}
	if !h.cur.Load().trusted() {
		t.Fatal("the guest is not trusted after its probation")
	}
	waitFor(t, "the workers' Ps to go back", func() bool {
		roundTrip(h, newEx("GET", "/")) // inline: keeps no P
		return runtime.GOMAXPROCS(0) == base
	})
	h.cur.Load().suspect.Store(true) // its calls go to the workers again
	roundTrip(h, newEx("GET", "/"))
	if got := runtime.GOMAXPROCS(0); got != base+3 {
		t.Fatalf("GOMAXPROCS %d with a suspect's call on the workers, want %d", got, base+3)
	}
}
