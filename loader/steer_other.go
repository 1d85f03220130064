//go:build !linux

package loader

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
)

// Steering sends new connections for a range of addresses and ports to
// one listening socket; only Linux has it (sk_lookup).
type Steering struct{}

// NewSteering fails: sk_lookup needs Linux.
func NewSteering(bpffs string, prefix netip.Prefix, portLo, portHi uint16, log *slog.Logger) (*Steering, error) {
	if err := steerRange(prefix, portLo, portHi); err != nil {
		return nil, err
	}
	return nil, &SpliceError{Reason: ReasonNotLinux, Err: fmt.Errorf("connection steering needs Linux (this is %s)", runtime.GOOS)}
}

// SetListener fails.
func (*Steering) SetListener(*net.TCPListener) error {
	return fmt.Errorf("connection steering needs Linux")
}

// Close does nothing.
func (*Steering) Close() error { return nil }

// Unpin does nothing.
func (*Steering) Unpin() error { return nil }
