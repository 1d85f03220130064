package plugins

import (
	"bytes"
	"testing"
)

// TestGuestMemory: a linear memory grows up to its maximum, zeroed, keeps
// its content when it grows, refuses to grow past the maximum, and, once
// the runtime is closing, stays readable after Free.
func TestGuestMemory(t *testing.T) {
	g := &guestMemory{}
	const page = 64 << 10
	mem := g.Allocate(page, 4*page)
	b := mem.Reallocate(page)
	if len(b) != page || !bytes.Equal(b, make([]byte, page)) {
		t.Fatalf("first page: %d bytes, want %d zeroed", len(b), page)
	}
	copy(b, "guest data")
	b = mem.Reallocate(3 * page)
	if len(b) != 3*page || string(b[:10]) != "guest data" || !bytes.Equal(b[page:], make([]byte, 2*page)) {
		t.Fatalf("grown memory: %d bytes, content %q", len(b), b[:10])
	}
	if mem.Reallocate(5*page) != nil {
		t.Fatal("grew past the maximum")
	}
	g.closing.Store(true)
	mem.Free()
	_ = b[0] // still mapped: a guest still running cannot fault
}
