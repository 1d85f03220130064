//go:build !linux

package l4

import "net"

// tcpActivity is not available here: idle timeouts are not enforced.
func tcpActivity(net.Conn) (uint64, bool) { return 0, false }
