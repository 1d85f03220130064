//go:build !linux

package plugins

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// guestMemory keeps guest memories on the Go heap here.
type guestMemory struct {
	closing atomic.Bool
}

func (g *guestMemory) Allocate(capacity, max uint64) experimental.LinearMemory {
	return &heapMemory{max: max}
}
