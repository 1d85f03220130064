//go:build !linux

package loader

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"
)

// Splicer moves bytes between socket pairs in the kernel; only Linux has
// one, so NewSplicer always fails here and callers use splice(2).
type Splicer struct {
	HalfCloseTimeout time.Duration
}

// NewSplicer fails: kernel splicing needs Linux.
func NewSplicer(*slog.Logger) (*Splicer, error) {
	return nil, &SpliceError{Reason: ReasonNotLinux, Err: fmt.Errorf("kernel splicing needs Linux (this is %s)", runtime.GOOS)}
}

// SelfTest fails: there is no kernel splicing.
func (*Splicer) SelfTest() error { return fmt.Errorf("kernel splicing needs Linux") }

// SelfTestPassed is false.
func (*Splicer) SelfTestPassed() bool { return false }

// Splice never handles a connection.
func (*Splicer) Splice(a, b *net.TCPConn) (Transfer, bool, error) { return Transfer{}, false, nil }

// Stats is zero.
func (*Splicer) Stats() SpliceStats { return SpliceStats{} }

// Close does nothing.
func (*Splicer) Close() error { return nil }
