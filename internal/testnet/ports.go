// Package testnet holds helpers for tests that open real sockets.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
)

// FreePortRange returns the first of n consecutive ports nothing listens
// on at host, from a random start outside the ephemeral port range (where
// a test's own client connections, in TIME_WAIT, could hold a port).
func FreePortRange(t testing.TB, host string, n int) int {
	t.Helper()
	first, last := portWindow(n)
	for range 50 {
		lo := first + rand.IntN(last-first-n+2)
		var held []net.Listener
		for p := lo; p < lo+n; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err != nil {
				break
			}
			held = append(held, ln)
		}
		for _, ln := range held {
			ln.Close()
		}
		if len(held) == n {
			return lo
		}
	}
	t.Fatalf("no %d free consecutive ports on %s", n, host)
	return 0
}

// portWindow returns ports [first, last] outside the ephemeral port range
// (Linux: net.ipv4.ip_local_port_range), room for n at least.
func portWindow(n int) (first, last int) {
	ephLo, ephHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &ephLo, &ephHi)
	}
	if 65535-ephHi >= 4*n {
		return ephHi + 1, 65535
	}
	return 10000, ephLo - 1
}
