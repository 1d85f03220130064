//go:build linux

package plugins

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// guestMemory allocates the linear memories of guests outside the Go heap,
// in anonymous mappings of their maximum size (pages are committed as the
// guest touches them). A plugin that is restarted often (one that loops
// is, after each deadline) then does not drive the garbage collector,
// whose cycles cost every route.
type guestMemory struct {
	// closing: the runtime is being closed, possibly under running
	// guests: Free releases the pages but keeps the mapping (reads as
	// zeros), so that a guest still running cannot fault.
	closing atomic.Bool
}

func (g *guestMemory) Allocate(capacity, max uint64) experimental.LinearMemory {
	b, err := unix.Mmap(-1, 0, int(max), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil || max == 0 {
		return &heapMemory{max: max}
	}
	return &mappedMemory{owner: g, buf: b}
}

// mappedMemory is one guest's mapping.
type mappedMemory struct {
	owner *guestMemory
	buf   []byte
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

// Free unmaps the memory. wazero frees it when the instance is closed: by
// its owner once the guest has stopped, or, after a deadline, when the
// interrupted call returns; only closing the whole runtime may free it
// under a running guest.
func (m *mappedMemory) Free() {
	if m.buf == nil {
		return
	}
	if m.owner.closing.Load() {
		_ = unix.Madvise(m.buf, unix.MADV_DONTNEED)
		return
	}
	_ = unix.Munmap(m.buf)
	m.buf = nil
}
