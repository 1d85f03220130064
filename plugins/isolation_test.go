package plugins

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// isolationDeadline is the call deadline of the isolation tests, and
// deadlineSlack how late the median looping guest's caller may return: the
// target is 10 ms, the bound is generous for -race on a loaded machine.
// The slowest caller is held to 5 deadlines: a timer can fire late on a
// machine short of CPU, while the bugs these tests catch (callers held
// until their guests stop, Ps taken by guests so that the timers that stop
// them cannot run) overrun by seconds.
const (
	isolationDeadline = 100 * time.Millisecond
	deadlineSlack     = 50 * time.Millisecond
)

func newWASMHandler(t testing.TB, m *Manager, path string, conc, queue int, rep *reporter) *Handler {
	t.Helper()
	h, err := New(m, Entry{Path: path, MaxConcurrency: conc, MaxQueue: queue}, "r1", rep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLoopingCallersReturnAtTheDeadline: with more looping callers than
// the entry's concurrency, every caller returns by the deadline (504 when
// its guest ran, 503 when it waited for a slot the whole time), though
// guests past their deadline keep their slots until they have stopped.
func TestLoopingCallersReturnAtTheDeadline(t *testing.T) {
	if !workersSupported {
		t.Skip("guests run on the caller's goroutine on this system: it returns when the guest stops")
	}
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	rep := &reporter{}
	h := newWASMHandler(t, m, example(t, "loop"), 2, 64, rep)

	var mu sync.Mutex
	var took []time.Duration
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 3 {
				start := time.Now()
				r := roundTrip(h, newEx("GET", "/"))
				d := time.Since(start)
				mu.Lock()
				took = append(took, d)
				statuses[r.status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(took)
	t.Logf("%d calls: statuses %v; p50 %v, p90 %v, max %v", len(took), statuses, took[len(took)/2], took[len(took)*9/10], took[len(took)-1])
	if p50 := took[len(took)/2]; p50 > isolationDeadline+deadlineSlack {
		t.Errorf("half the callers returned after %v, want within %v", p50, isolationDeadline+deadlineSlack)
	}
	if worst := took[len(took)-1]; worst > 5*isolationDeadline {
		t.Errorf("slowest caller returned after %v, want within %v", worst, 5*isolationDeadline)
	}
	if statuses[504] == 0 || statuses[504]+statuses[503] != len(took) {
		t.Errorf("statuses %v, want 504 (and 503 for callers that found no slot)", statuses)
	}
	if running := h.Running(); running > 2 {
		t.Errorf("%d calls hold slots, want at most max_concurrency 2", running)
	}
	waitFor(t, "the looping guests to stop and free their slots", func() bool { return h.Running() == 0 })
	waitFor(t, "the looping instances to be discarded", func() bool { return h.cur.Load().live.Load() == 0 })
}

// TestConcurrencyLimitRefusesTheExcess: at max_concurrency with max_queue
// callers waiting, a further call is refused at once with 503.
func TestConcurrencyLimitRefusesTheExcess(t *testing.T) {
	m, _ := newManager(t, Options{Timeout: 2 * time.Second})
	rep := &reporter{}
	h := newWASMHandler(t, m, example(t, "loop"), 1, 1, rep)

	var wg sync.WaitGroup
	wg.Go(func() { roundTrip(h, newEx("GET", "/running")) })
	waitFor(t, "a call to hold the slot", func() bool { return h.Running() == 1 })
	wg.Go(func() { roundTrip(h, newEx("GET", "/queued")) })
	waitFor(t, "a call to wait for the slot", func() bool { return h.lim.waiting.Load() == 1 })

	start := time.Now()
	r := roundTrip(h, newEx("GET", "/excess"))
	if d := time.Since(start); d > time.Second {
		t.Errorf("the excess call was refused after %v, want at once", d)
	}
	if r.forwarded || r.status != 503 || r.header("Retry-After") == "" || r.body != `{"error":"plugin overloaded"}` {
		t.Errorf("excess call: %+v, want 503 with Retry-After", r)
	}
	_, err := h.OnRequest(newEx("GET", "/excess"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Reason != "overloaded" {
		t.Errorf("err = %v, want an overloaded *Error", err)
	}
	wg.Wait()
	if got := rep.got(); !slices.Contains(got, "wasm/r1/overloaded") {
		t.Errorf("reported %q, want wasm/r1/overloaded", got)
	}
}

// TestHealthyPluginBesideALoop: while a looping plugin's entry is at its
// limit, another plugin of the same manager keeps answering, and no call
// of it waits for the looping guests.
func TestHealthyPluginBesideALoop(t *testing.T) {
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	loop := newWASMHandler(t, m, example(t, "loop"), 2, 64, &reporter{})
	healthy := newWASMHandler(t, m, example(t, "add_header"), 0, 0, &reporter{})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					roundTrip(loop, newEx("GET", "/loop"))
				}
			}
		})
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	waitFor(t, "the looping entry at its limit", func() bool { return loop.Running() == 2 })
	var slowest time.Duration
	for i := range 200 {
		start := time.Now()
		r := roundTrip(healthy, newEx("GET", "/ok"))
		slowest = max(slowest, time.Since(start))
		if r.status != 200 || r.header("X-RustyGate-Plugin") != "executed" {
			t.Fatalf("call %d of the healthy plugin: %+v", i, r)
		}
	}
	t.Logf("slowest healthy call %v", slowest)
}

// TestCloseStopsWorkers: closing the manager while a guest loops on a
// worker returns promptly, ends every worker goroutine and gives
// GOMAXPROCS back.
func TestCloseStopsWorkers(t *testing.T) {
	if !workersSupported {
		t.Skip("no guest workers on this system")
	}
	procsBefore := runtime.GOMAXPROCS(0)
	ignore := goleak.IgnoreCurrent()
	m, err := NewManager(Options{Timeout: 30 * time.Second, CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(m, Entry{Path: example(t, "loop")}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Workers < 1 || runtime.GOMAXPROCS(0) <= procsBefore {
		t.Fatalf("workers %d, GOMAXPROCS %d (was %d): want workers and more Ps", st.Workers, runtime.GOMAXPROCS(0), procsBefore)
	}
	// As if a call had overrun before: the next ones go to the workers.
	h.cur.Load().suspect.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.OnRequest(newEx("GET", "/"))
	}()
	waitFor(t, "the guest to loop on a worker", func() bool { return h.Running() == 1 && m.pool.busy.Load() == 1 })
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("Close took %v", time.Since(start))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a looping guest", d)
	}
	h.Close()
	if got := runtime.GOMAXPROCS(0); got != procsBefore {
		t.Errorf("GOMAXPROCS %d after Close, want %d", got, procsBefore)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Error(err)
	}
}

// TestOverrunDemotesTheGuest: a call that overruns the normal-priority
// budget makes its guest a suspect and its worker thread is lowered and
// replaced; the pool keeps its size.
func TestOverrunDemotesTheGuest(t *testing.T) {
	if !workersSupported {
		t.Skip("no guest workers on this system")
	}
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	h := newWASMHandler(t, m, example(t, "loop"), 1, 1, &reporter{})
	h.OnRequest(newEx("GET", "/"))
	// The worker judges the call once the guest has stopped.
	waitFor(t, "the looping guest to be a suspect", func() bool { return h.cur.Load().suspect.Load() })
	waitFor(t, "a worker demoted", func() bool { return m.Stats().Demoted >= 1 })
	if st := m.Stats(); st.Workers < 1 {
		t.Fatalf("stats %+v, want workers", st)
	}
	// The main thread, whose priority tools show for the process, is
	// never a worker.
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if nice := fields[16]; nice != "0" {
		t.Errorf("main thread nice %s, want 0", nice)
	}
}

// TestLoopingGuestRestartsBackOff: once a guest's calls reached their
// deadline overrunsBeforeHold times in a row, its new instances start later
// and later: the callers in between get 503 at their deadline without a
// new instance burning a CPU until then.
func TestLoopingGuestRestartsBackOff(t *testing.T) {
	m, _ := newManager(t, Options{Timeout: isolationDeadline})
	h := newWASMHandler(t, m, example(t, "loop"), 1, 8, &reporter{})
	created := m.Stats().Instances
	statuses := map[int]int{}
	const calls = 12
	for range calls {
		start := time.Now()
		r := roundTrip(h, newEx("GET", "/"))
		if d := time.Since(start); d > isolationDeadline+deadlineSlack {
			t.Errorf("a call returned after %v, want within %v", d, isolationDeadline+deadlineSlack)
		}
		statuses[r.status]++
		waitFor(t, "the looping guest to stop", func() bool { return h.Running() == 0 })
	}
	started := m.Stats().Instances - created
	t.Logf("%d calls: statuses %v, %d instances started", calls, statuses, started)
	if statuses[504] < overrunsBeforeHold || statuses[503] == 0 || statuses[503]+statuses[504] != calls {
		t.Errorf("statuses %v, want at least %d 504 (the overruns before the backoff), then 503", statuses, overrunsBeforeHold)
	}
	if started >= calls {
		t.Errorf("%d instances started for %d calls, want fewer: the restarts back off", started, calls)
	}
}

// TestRestartHoldGrowsAndResets: the hold on new instances starts after
// overrunsBeforeHold overruns in a row, doubles with each further one up
// to holdMax, and ends with the first call in time.
func TestRestartHoldGrowsAndResets(t *testing.T) {
	m := &module{}
	hold := func() time.Duration {
		if h := m.holdNew.Load(); h != 0 {
			return time.Until(time.Unix(0, h))
		}
		return 0
	}
	for range overrunsBeforeHold - 1 {
		m.overran()
	}
	if h := hold(); h != 0 {
		t.Fatalf("held %v before %d overruns", h, overrunsBeforeHold)
	}
	var last time.Duration
	for i := range 10 {
		m.overran()
		h := hold()
		if h <= 0 || h > holdMax || (i > 0 && last < holdMax-10*time.Millisecond && h <= last) {
			t.Fatalf("overrun %d: hold %v after %v, want it growing up to %v", overrunsBeforeHold+i, h, last, holdMax)
		}
		last = h
	}
	if last < holdMax-10*time.Millisecond {
		t.Errorf("hold %v after many overruns, want %v", last, holdMax)
	}
	m.inTime()
	if h := hold(); h != 0 || m.overruns.Load() != 0 {
		t.Errorf("a call in time left a hold of %v and %d overruns", h, m.overruns.Load())
	}
}
