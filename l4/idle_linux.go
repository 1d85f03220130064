//go:build linux

package l4

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpActivity returns a number that grows whenever bytes move on c:
// bytes received plus bytes acknowledged by the peer (TCP_INFO). splice(2)
// moves bytes without passing through the proxy, so this is how idleness
// is seen.
func tcpActivity(c net.Conn) (uint64, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return info.Bytes_received + info.Bytes_acked, true
}
