//go:build !linux

package plugins

import "time"

// waker: elsewhere there are no workers, and the watchdog sleeps on a
// channel.
type waker struct{ c chan struct{} }

func newWaker() (waker, error) { return waker{c: make(chan struct{}, 1)}, nil }

func (w waker) wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (w waker) wait(d time.Duration) {
	if d < 0 {
		<-w.c
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.c:
	case <-t.C:
	}
}

func (w waker) close() {}
