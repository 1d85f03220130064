package loader

import (
	"errors"
	"fmt"
	"time"
)

// SpliceStats counts what a Splicer did since it was made.
type SpliceStats struct {
	// Connections is connections whose bytes the kernel moved.
	Connections uint64
	// Fallbacks is connections the kernel could not take (MPTCP, a
	// client that already sent FIN, ...): the caller relayed them with
	// splice(2).
	Fallbacks uint64
	// RedirectedBytes is bytes the verdict program redirected, both ways,
	// counted as each connection ends.
	RedirectedBytes uint64
	// DuplicateBytes is bytes the kernel handed the verdict a second time,
	// which it dropped instead of sending them twice.
	DuplicateBytes uint64
	// Overlaps is segments whose head repeated bytes already sent (the
	// kernel handed the verdict an skb it had seen, grown since): the
	// verdict trimmed the repeat off and sent the rest.
	Overlaps uint64
	// IntegrityFailures is connections reset because the verdict saw a
	// hole in the byte stream, or could not trim or redirect a segment.
	IntegrityFailures uint64
}

// Transfer is how one spliced connection ended.
type Transfer struct {
	// AtoB and BtoA are the bytes moved each way.
	AtoB, BtoA int64
	// AErr is why the a->b direction failed (a reset, a timeout, an
	// integrity failure), BErr the same for b->a; nil when it ended
	// with a FIN that was forwarded.
	AErr, BErr error
}

// SpliceError says why kernel splicing is unavailable; Reason is one of
// the Reason* values.
type SpliceError struct {
	Reason string
	Err    error
}

func (e *SpliceError) Error() string {
	return fmt.Sprintf("kernel splicing unavailable (%s): %v", e.Reason, e.Err)
}

func (e *SpliceError) Unwrap() error { return e.Err }

// ErrSpliceIntegrity is returned for a direction whose byte stream the
// verdict could not vouch for: the connection is reset instead.
var ErrSpliceIntegrity = errors.New("kernel splice: byte stream integrity check failed")

// DefaultHalfCloseTimeout is how long one side may keep sending after the
// other finished (as the splice(2) relay allows).
const DefaultHalfCloseTimeout = 30 * time.Second

// ErrSpliceAborted ends a direction because the other one failed.
var ErrSpliceAborted = errors.New("kernel splice: the other direction failed")
