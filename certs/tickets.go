package certs

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// Session ticket keys.
const (
	// DefaultTicketKeyRotation is how often a new ticket key is made.
	DefaultTicketKeyRotation = 12 * time.Hour
	// ticketKeysKept is how many keys decrypt tickets: the current one,
	// which also encrypts, and the previous ones, so a ticket stays
	// usable for two rotations after it was issued.
	ticketKeysKept = 3
	// ticketExportMagic starts ExportTicketKeys' format, version 1.
	ticketExportMagic = "RGTK\x01"
)

// ticketKeys is the key ring: keys[0] encrypts, all decrypt.
type ticketKeys struct {
	mu      sync.Mutex
	keys    [][32]byte
	created time.Time // when keys[0] was made
}

func newTicketKeys(now time.Time) *ticketKeys {
	k := &ticketKeys{}
	k.rotate(now)
	return k
}

// current returns a copy of the ring.
func (k *ticketKeys) current() [][32]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][32]byte(nil), k.keys...)
}

// rotate puts a new random key first and drops the oldest beyond the
// kept count.
func (k *ticketKeys) rotate(now time.Time) {
	var key [32]byte
	rand.Read(key[:]) // never fails: crypto/rand aborts the process instead
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append([][32]byte{key}, k.keys...)
	if len(k.keys) > ticketKeysKept {
		k.keys = k.keys[:ticketKeysKept]
	}
	k.created = now
}

// nextRotation returns when the current key is due for replacement.
func (k *ticketKeys) nextRotation(every time.Duration) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created.Add(every)
}

// export encodes the ring: magic, the creation time of the current key
// (Unix nanoseconds, big endian), the key count, the keys.
func (k *ticketKeys) export() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := make([]byte, 0, len(ticketExportMagic)+9+32*len(k.keys))
	b = append(b, ticketExportMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.created.UnixNano()))
	b = append(b, byte(len(k.keys)))
	for _, key := range k.keys {
		b = append(b, key[:]...)
	}
	return b
}

var errTicketFormat = errors.New("certs: session ticket keys: not in the format ExportTicketKeys writes")

// decodeTicketKeys reads what export wrote.
func decodeTicketKeys(b []byte) ([][32]byte, time.Time, error) {
	rest, ok := cutPrefix(b, ticketExportMagic)
	if !ok || len(rest) < 9 {
		return nil, time.Time{}, errTicketFormat
	}
	created := time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
	n := int(rest[8])
	rest = rest[9:]
	if n == 0 || n > ticketKeysKept || len(rest) != 32*n {
		return nil, time.Time{}, errTicketFormat
	}
	keys := make([][32]byte, n)
	for i := range keys {
		copy(keys[i][:], rest[32*i:])
	}
	return keys, created, nil
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return nil, false
	}
	return b[len(prefix):], true
}

// ExportTicketKeys returns the session ticket keys and the age of the
// current one, for a binary upgrade to hand to the new process
// (ImportTicketKeys), so the clients of the old process resume their
// sessions with the new one. The bytes are secret: anyone holding them
// can decrypt recorded sessions; pass them over a pipe or an inherited
// file descriptor, never a file others can read.
func (m *Manager) ExportTicketKeys() []byte { return m.tickets.export() }

// ImportTicketKeys replaces the session ticket keys with those exported
// by another process; the rotation schedule goes on from the age of the
// imported current key.
func (m *Manager) ImportTicketKeys(b []byte) error {
	keys, created, err := decodeTicketKeys(b)
	if err != nil {
		return err
	}
	m.tickets.mu.Lock()
	m.tickets.keys, m.tickets.created = keys, created
	m.tickets.mu.Unlock()
	m.mu.Lock()
	m.setTicketKeys(keys)
	m.mu.Unlock()
	m.kick(m.ticketWake)
	return nil
}

// rotateTickets rotates the ticket keys on schedule until stop.
func (m *Manager) rotateTickets() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Until(m.tickets.nextRotation(time.Duration(m.rotation.Load()))))
	defer timer.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.ticketWake:
		case <-timer.C:
			if time.Until(m.tickets.nextRotation(time.Duration(m.rotation.Load()))) <= 0 {
				m.tickets.rotate(time.Now())
				m.mu.Lock()
				m.setTicketKeys(m.tickets.current())
				m.mu.Unlock()
			}
		}
		timer.Reset(max(time.Until(m.tickets.nextRotation(time.Duration(m.rotation.Load()))), time.Millisecond))
	}
}
