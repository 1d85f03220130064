//go:build linux

package plugins

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// waker is an eventfd the watchdog sleeps on in ppoll, with the timeout of
// its next entry: the kernel wakes it, whatever the Go scheduler's threads
// are doing.
type waker struct{ fd int }

func newWaker() (waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return waker{}, err
	}
	return waker{fd: fd}, nil
}

func (w waker) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(w.fd, one[:])
}

// wait sleeps until wake or d (forever when d < 0), then drains the
// eventfd.
func (w waker) wait(d time.Duration) {
	fds := [1]unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	var ts *unix.Timespec
	if d >= 0 {
		t := unix.NsecToTimespec(int64(d))
		ts = &t
	}
	for {
		_, err := unix.Ppoll(fds[:], ts, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
		if ts != nil {
			break // woken early: the caller recomputes the wait
		}
	}
	var buf [8]byte
	_, _ = unix.Read(w.fd, buf[:])
}

func (w waker) close() { unix.Close(w.fd) }
