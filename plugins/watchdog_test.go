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
		return &watch{idx: -1, fn: func() {
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
