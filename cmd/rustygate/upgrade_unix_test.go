//go:build unix

package main

import (
	"net"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHandOverKeepsSocketsNonBlocking: handing a socket to a new process
// (exec with the copy as an extra file) leaves the original non-blocking,
// so that this process's readers still wake up when it closes it. A copy
// from net's File turned the shared description blocking.
func TestHandOverKeepsSocketsNonBlocking(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, c := range []syscall.Conn{pc.(*net.UDPConn), ln.(*net.TCPListener)} {
		f, err := handOver(c, "sock")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("true")
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rc, _ := c.SyscallConn()
		var flags int
		rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.O_NONBLOCK == 0 {
			t.Errorf("%T: blocking after the hand-over, want non-blocking", c)
		}
	}
}
