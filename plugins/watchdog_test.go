package plugins

import (
	"sync"
	"testing"
	"time"
)

// TestWatchdogFiresInOrderAndRemoves: entries run once each, in the order
// of their times and not before them; a removed entry never runs, and
// remove reports false for one that ran.
func TestWatchdogFiresInOrderAndRemoves(t *testing.T) {
	d, err := newWatchdog()
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	var mu sync.Mutex
	var order []int
	ran := make(chan struct{}, 8)
	mk := func(i int) *watch {
		return &watch{fn: func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			ran <- struct{}{}
		}}
	}
	start := time.Now()
	w3, w1, w2, gone := mk(3), mk(1), mk(2), mk(0)
	// Added latest first: each wakes the watchdog to an earlier time.
	d.add(w3, start.Add(60*time.Millisecond))
	d.add(gone, start.Add(40*time.Millisecond))
	d.add(w2, start.Add(40*time.Millisecond))
	d.add(w1, start.Add(20*time.Millisecond))
	if !d.remove(gone) {
		t.Fatal("remove of an armed entry reported false")
	}
	for range 3 {
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v ran", order)
		}
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("the last entry ran after %v, before its time (60ms)", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[0] != 1 || order[1] != 2 || order[2] != 3 {
		t.Errorf("ran %v, want [1 2 3]", order)
	}
	if d.remove(w1) {
		t.Error("remove of an entry that ran reported true")
	}
	select {
	case <-ran:
		t.Error("the removed entry ran")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestWatchdogConcurrentArming: watches armed, removed and armed again
// from many goroutines at once, each reused for many armings: an arming
// that remove took back never runs, every other one runs once, not
// before its time.
func TestWatchdogConcurrentArming(t *testing.T) {
	d, err := newWatchdog()
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	const goroutines, armings = 8, 300
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			fired := make(chan time.Time, 1)
			w := &watch{fn: func() { fired <- time.Now() }}
			for i := range armings {
				when := time.Now().Add(time.Duration((g*7+i)%5) * 200 * time.Microsecond)
				d.add(w, when)
				if i%3 == 0 && d.remove(w) {
					// Past its time, with a margin: it must not run.
					select {
					case <-fired:
						t.Errorf("goroutine %d, arming %d: removed, and ran", g, i)
						return
					case <-time.After(time.Until(when) + 2*time.Millisecond):
					}
					continue
				}
				select {
				case at := <-fired:
					if at.Before(when) {
						t.Errorf("goroutine %d, arming %d: ran %v before its time", g, i, when.Sub(at))
						return
					}
				case <-time.After(5 * time.Second):
					t.Errorf("goroutine %d, arming %d: never ran", g, i)
					return
				}
				select {
				case <-fired:
					t.Errorf("goroutine %d, arming %d: ran twice", g, i)
					return
				default:
				}
			}
		})
	}
	wg.Wait()
}
