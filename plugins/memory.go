package plugins

// heapMemory is a linear memory on the Go heap, what wazero does without
// an allocator: the fallback when a mapping fails.
type heapMemory struct {
	max uint64
	buf []byte
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		b := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(b, m.buf)
		m.buf = b
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
