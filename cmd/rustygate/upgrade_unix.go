//go:build unix

package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// handOver returns a copy of a socket's descriptor for a new process. It
// is not File: the file net's File returns puts the descriptor into
// blocking mode when exec asks for it (os.File.Fd), and a copy shares its
// mode with the original, which this process still reads until it has
// drained. A reader that entered recvmmsg or accept then blocked in the
// kernel, where closing the socket does not wake it (an HTTP/3 listener of
// the old process kept it 5 s past its drain). A file made by os.NewFile
// from a non-blocking descriptor stays non-blocking.
func handOver(c syscall.Conn, name string) (*os.File, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	return os.NewFile(uintptr(fd), name), nil
}
