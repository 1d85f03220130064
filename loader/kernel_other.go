//go:build !linux

package loader

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/rustygate/rustygate/config"
)

// kernel is the kernel datapath, which only Linux has: on other systems
// loadKernel always fails and the userspace twin runs.
type kernel struct{}

func loadKernel(config.Datapath, *policy, *slog.Logger) (*kernel, error) {
	return nil, fmt.Errorf("the kernel datapath needs Linux (this is %s)", runtime.GOOS)
}

func fallbackReason(error) string { return ReasonNotLinux }

func (*kernel) describe() string                      { return "" }
func (*kernel) ban(netip.Addr, time.Duration) error   { return nil }
func (*kernel) unban(netip.Addr) error                { return nil }
func (*kernel) listBans() ([]Ban, error)              { return nil, nil }
func (*kernel) sweepBans() error                      { return nil }
func (*kernel) counters() (Counters, error)           { return Counters{}, nil }
func (*kernel) update(config.Datapath, *policy) error { return nil }
func (*kernel) check(config.Datapath) error           { return nil }
func (*kernel) close() error                          { return nil }
