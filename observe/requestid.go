package observe

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
)

// RequestIDs generates unique request ids without allocation: 32 lowercase hex chars,
// a per-process random 64-bit prefix plus an atomic counter.
//
// Ids are unique within a generator; the random prefix makes a collision
// between two generators (or two processes) improbable. The counter part
// is sequential, so ids are not secrets.
type RequestIDs struct {
	prefix [16]byte // hex of the random 64-bit prefix
	n      atomic.Uint64
}

// NewRequestIDs returns a generator with a fresh random prefix.
func NewRequestIDs() *RequestIDs {
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails
	g := &RequestIDs{}
	appendHex64(g.prefix[:0], binary.BigEndian.Uint64(r[:]))
	return g
}

// Append appends a new id to dst and returns the extended slice. It
// allocates only when dst lacks 32 bytes of spare capacity.
func (g *RequestIDs) Append(dst []byte) []byte {
	dst = append(dst, g.prefix[:]...)
	return appendHex64(dst, g.n.Add(1))
}

// appendHex64 appends v as 16 lowercase hex digits.
func appendHex64(dst []byte, v uint64) []byte {
	var h [16]byte
	for i := len(h) - 1; i >= 0; i-- {
		h[i] = lowerHex[v&0xF]
		v >>= 4
	}
	return append(dst, h[:]...)
}
