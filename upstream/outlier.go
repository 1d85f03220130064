package upstream

import (
	"fmt"
	"time"
)

// Outlier detection (passive health).
//
// The proxy reports the outcome of every exchange with ReportSuccess or
// ReportFailure; which outcomes are failures (connect errors, timeouts,
// configured statuses) is its decision. After Consecutive failures in a
// row the backend is ejected: Pick skips it for BaseEjection × 2^(k-1),
// where k counts its ejections, capped at MaxEjection. A success resets the
// run of failures. The count of ejections decays: when a backend gets
// through MaxEjection after its last ejection ended without being ejected
// again, the next ejection is treated as the first.
//
// Ejection never takes the pool below half of its backends available:
// a backend is only ejected if, afterwards, no more than
// MaxEjectionPercent (default 50) of the pool would be unavailable,
// counting backends that active health checks marked down. So a pool of
// one backend never ejects it, and of two, at most one. Failures reported
// while a backend is ejected (requests that were already in flight) are
// ignored.

// Outlier defaults, used when a field is zero.
const (
	DefaultBaseEjection       = 30 * time.Second
	DefaultMaxEjection        = 300 * time.Second
	DefaultMaxEjectionPercent = 50
)

// OutlierOptions configures outlier detection for a pool.
type OutlierOptions struct {
	// Consecutive failures before ejection; 0 disables detection.
	Consecutive int
	// BaseEjection is the first ejection time (default 30s).
	BaseEjection time.Duration
	// MaxEjection caps the ejection time (default 300s, at least
	// BaseEjection) and is the quiet period after which the count of
	// ejections resets.
	MaxEjection time.Duration
	// MaxEjectionPercent bounds the share of the pool that may be
	// unavailable after an ejection (default 50).
	MaxEjectionPercent int
}

func (o OutlierOptions) normalise() (OutlierOptions, error) {
	switch {
	case o.Consecutive < 0:
		return o, fmt.Errorf("outlier consecutive failures must not be negative (got %d)", o.Consecutive)
	case o.BaseEjection < 0 || o.MaxEjection < 0:
		return o, fmt.Errorf("outlier ejection times must not be negative")
	case o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100:
		return o, fmt.Errorf("outlier max ejection percent must be between 0 and 100 (got %d)", o.MaxEjectionPercent)
	}
	if o.BaseEjection == 0 {
		o.BaseEjection = DefaultBaseEjection
	}
	if o.MaxEjection == 0 {
		o.MaxEjection = DefaultMaxEjection
	}
	o.MaxEjection = max(o.MaxEjection, o.BaseEjection)
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	return o, nil
}

// ReportSuccess records a successful exchange with b: the run of failures
// ends. It writes shared memory only when a run was in progress.
func (b *Backend) ReportSuccess() {
	if b.st.consecutive.Load() != 0 {
		b.st.consecutive.Store(0)
	}
}

// ReportFailure records a failed exchange with b at now; reason (e.g.
// "connect refused", "status 503") is kept as the cause of an ejection.
// It returns how long b is ejected for when this failure ejects it, else
// 0. Without outlier detection it does nothing.
func (b *Backend) ReportFailure(reason string, now time.Time) time.Duration {
	p := b.pool
	if p == nil || p.outlier.Consecutive <= 0 {
		return 0
	}
	s := b.st
	ns := now.UnixNano()
	if s.ejectedUntil.Load() > ns {
		return 0
	}
	if s.consecutive.Add(1) < int64(p.outlier.Consecutive) {
		return 0
	}
	return p.eject(b, reason, ns)
}

// eject ejects b if the run of failures still stands and the pool can
// spare it.
func (p *Pool) eject(b *Backend, reason string, now int64) time.Duration {
	o := &p.outlier
	s := b.st
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	if s.ejectedUntil.Load() > now || s.consecutive.Load() < int64(o.Consecutive) {
		return 0 // ejected or reset meanwhile
	}
	unavailable := 1
	for _, other := range p.backends {
		if other != b && !other.st.availableAt(now) {
			unavailable++
		}
	}
	if unavailable*100 > o.MaxEjectionPercent*len(p.backends) {
		// Kept: the run of failures stands, so b is ejected as soon as
		// the pool can spare it.
		return 0
	}
	k := s.ejections.Load()
	if k > 0 && now-s.lastEjectionEnd.Load() >= int64(o.MaxEjection) {
		k = 0
	}
	k++
	d := o.MaxEjection
	if k <= 32 {
		d = min(o.BaseEjection<<(k-1), o.MaxEjection)
		if d <= 0 { // overflow
			d = o.MaxEjection
		}
	}
	s.ejections.Store(k)
	s.lastEjectionEnd.Store(now + int64(d))
	s.consecutive.Store(0)
	s.lastReason.Store(&reason)
	s.ejectedUntil.Store(now + int64(d))
	return d
}

// Ejections returns b's ejection count (the exponent of the ejection
// time; its decay is applied at the next ejection) and the cause of the
// last ejection.
func (b *Backend) Ejections() (count int, reason string) {
	if r := b.st.lastReason.Load(); r != nil {
		reason = *r
	}
	return int(b.st.ejections.Load()), reason
}
