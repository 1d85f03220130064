package upstream

import (
	"testing"
	"time"
)

func outlierPool(t *testing.T, n int, o OutlierOptions) ([]*Backend, *Pool) {
	t.Helper()
	bs := backends(t, n)
	return bs, pool(t, bs, PoolOptions{Outlier: o})
}

// fail reports k failures of b at now and returns the last result.
func fail(b *Backend, k int, now time.Time) time.Duration {
	var d time.Duration
	for range k {
		d = b.ReportFailure("status 503", now)
	}
	return d
}

func TestOutlierEjects(t *testing.T) {
	bs, p := outlierPool(t, 4, OutlierOptions{Consecutive: 3, BaseEjection: time.Minute})
	now := time.Now()
	if d := fail(bs[0], 2, now); d != 0 || !bs[0].Available() {
		t.Fatalf("ejected after 2 of 3 failures (%s)", d)
	}
	if d := fail(bs[0], 1, now); d != time.Minute {
		t.Fatalf("third failure: ejected for %s, want 1m", d)
	}
	if bs[0].Available() || !bs[0].Up() {
		t.Errorf("Available, Up = %v, %v; want false, true", bs[0].Available(), bs[0].Up())
	}
	if got := bs[0].EjectedUntil(); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("EjectedUntil = %v, want %v", got, now.Add(time.Minute))
	}
	if k, reason := bs[0].Ejections(); k != 1 || reason != "status 503" {
		t.Errorf("Ejections = %d, %q", k, reason)
	}
	for range 100 {
		if p.Pick(0) == bs[0] {
			t.Fatal("picked the ejected backend")
		}
	}
	// Failures of requests in flight while ejected change nothing.
	if d := fail(bs[0], 10, now.Add(time.Second)); d != 0 {
		t.Errorf("failure while ejected: %s", d)
	}
	if k, _ := bs[0].Ejections(); k != 1 {
		t.Errorf("ejections = %d after failures while ejected", k)
	}
}

func TestOutlierSuccessResets(t *testing.T) {
	bs, _ := outlierPool(t, 4, OutlierOptions{Consecutive: 3})
	now := time.Now()
	fail(bs[0], 2, now)
	bs[0].ReportSuccess()
	if d := fail(bs[0], 2, now); d != 0 {
		t.Fatalf("ejected after a success broke the run (%s)", d)
	}
	if d := fail(bs[0], 1, now); d != DefaultBaseEjection {
		t.Fatalf("ejected for %s, want the default %s", d, DefaultBaseEjection)
	}
}

func TestOutlierBackoff(t *testing.T) {
	base, maxE := 10*time.Second, 45*time.Second
	bs, _ := outlierPool(t, 2, OutlierOptions{Consecutive: 2, BaseEjection: base, MaxEjection: maxE})
	now := time.Now()
	// Each ejection doubles, up to the maximum: 10s, 20s, 40s, 45s, 45s.
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, maxE, maxE} {
		d := fail(bs[0], 2, now)
		if d != want {
			t.Fatalf("ejection %d: %s, want %s", i+1, d, want)
		}
		// Back right after it ends, failing again at once.
		now = now.Add(d + time.Millisecond)
	}
	// Quiet for MaxEjection after the last ejection ended: the count
	// resets.
	now = now.Add(maxE)
	if d := fail(bs[0], 2, now); d != base {
		t.Errorf("after a quiet period: %s, want %s", d, base)
	}
	if k, _ := bs[0].Ejections(); k != 1 {
		t.Errorf("ejections = %d after decay, want 1", k)
	}
}

func TestOutlierExpires(t *testing.T) {
	bs, p := outlierPool(t, 2, OutlierOptions{Consecutive: 1, BaseEjection: 30 * time.Millisecond})
	if d := bs[0].ReportFailure("connect refused", time.Now()); d != 30*time.Millisecond {
		t.Fatalf("ejected for %s", d)
	}
	if p.Pick(0) != bs[1] || p.Pick(0) != bs[1] {
		t.Fatal("picked the ejected backend")
	}
	time.Sleep(40 * time.Millisecond)
	if !bs[0].Available() || !bs[0].EjectedUntil().IsZero() {
		t.Fatal("still ejected after the ejection time")
	}
	seen := map[*Backend]bool{p.Pick(0): true, p.Pick(0): true}
	if !seen[bs[0]] {
		t.Error("not picked again after the ejection ended")
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	now := time.Now()
	o := OutlierOptions{Consecutive: 1, BaseEjection: time.Minute}

	// One backend: never ejected.
	bs, p := outlierPool(t, 1, o)
	if d := fail(bs[0], 5, now); d != 0 || p.Pick(0) != bs[0] {
		t.Errorf("single backend ejected (%s)", d)
	}

	// Four backends, 50%: two may go, not a third.
	bs, p = outlierPool(t, 4, o)
	if fail(bs[0], 1, now) == 0 || fail(bs[1], 1, now) == 0 {
		t.Fatal("first two not ejected")
	}
	if d := fail(bs[2], 1, now); d != 0 {
		t.Fatalf("third of four ejected (%s)", d)
	}
	for range 100 {
		if b := p.Pick(0); b != bs[2] && b != bs[3] {
			t.Fatalf("picked %s", b.URL)
		}
	}
	// The third stays a candidate: once one returns, its next failure
	// ejects it.
	later := now.Add(time.Minute + time.Millisecond)
	if d := fail(bs[2], 1, later); d != time.Minute {
		t.Errorf("after a return: %s, want 1m", d)
	}

	// Backends down by health checks count against the percentage.
	bs, _ = outlierPool(t, 4, o)
	setDown(bs[0], true)
	setDown(bs[1], true)
	if d := fail(bs[2], 1, now); d != 0 {
		t.Errorf("ejected with half the pool down (%s)", d)
	}

	// A custom percentage.
	bs, _ = outlierPool(t, 4, OutlierOptions{Consecutive: 1, MaxEjectionPercent: 75})
	for i := range 3 {
		if fail(bs[i], 1, now) == 0 {
			t.Errorf("75%%: backend %d not ejected", i)
		}
	}
	if fail(bs[3], 1, now) != 0 {
		t.Error("75%: the last backend was ejected")
	}
}

func TestOutlierDisabled(t *testing.T) {
	bs, _ := outlierPool(t, 2, OutlierOptions{})
	if d := fail(bs[0], 100, time.Now()); d != 0 || !bs[0].Available() {
		t.Errorf("ejected with detection off (%s)", d)
	}
	// A backend outside any pool has no detection either.
	b := backends(t, 1)[0]
	if d := fail(b, 100, time.Now()); d != 0 {
		t.Errorf("backend without a pool ejected (%s)", d)
	}
	b.ReportSuccess()
}

func TestOutlierDefaults(t *testing.T) {
	o, err := OutlierOptions{Consecutive: 5, BaseEjection: time.Hour}.normalise()
	if err != nil {
		t.Fatal(err)
	}
	// MaxEjection is at least BaseEjection.
	if o.MaxEjection != time.Hour || o.MaxEjectionPercent != 50 {
		t.Errorf("normalised = %+v", o)
	}
}

func BenchmarkReport(b *testing.B) {
	bs := backends(b, 4)
	pool(b, bs, PoolOptions{Outlier: OutlierOptions{Consecutive: 5}})
	b.Run("success", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bs[0].ReportSuccess()
			}
		})
	})
	b.Run("failure-success", func(b *testing.B) {
		now := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			bs[1].ReportFailure("x", now)
			bs[1].ReportSuccess()
		}
	})
}
