package observe

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/rustygate/rustygate/config"
)

// sampler decides which traces are recorded, as the SDK's samplers of
// the same names do (sdktrace.ParentBased, TraceIDRatioBased,
// AlwaysSample, NeverSample).
type sampler struct {
	// parentBased follows a valid parent's sampled flag.
	parentBased bool
	// bound: a trace is sampled when the last 8 bytes of its id, shifted
	// right by one, are below it; all: every trace (ratio >= 1).
	bound uint64
	all   bool
}

// newSampler returns the sampler named as in config.Tracing.Sampler ("" is
// the default, parentbased_traceidratio).
func newSampler(name string, ratio float64) (sampler, error) {
	switch name {
	case config.SamplerParentBasedRatio, "":
		s := ratioSampler(ratio)
		s.parentBased = true
		return s, nil
	case config.SamplerRatio:
		return ratioSampler(ratio), nil
	case config.SamplerAlwaysOn:
		return sampler{all: true}, nil
	case config.SamplerAlwaysOff:
		return sampler{}, nil
	}
	return sampler{}, fmt.Errorf("tracing: unknown sampler %q", name)
}

// ratioSampler samples the share ratio of the trace ids, as
// sdktrace.TraceIDRatioBased does.
func ratioSampler(ratio float64) sampler {
	switch {
	case ratio >= 1:
		return sampler{all: true}
	case ratio <= 0:
		return sampler{}
	}
	return sampler{bound: uint64(ratio * (1 << 63))}
}

// sample decides for a span of trace tid whose parent is p (remote or
// local: both follow the parent's flag).
func (s sampler) sample(p *parentContext, tid *[16]byte) bool {
	if s.parentBased && p.valid {
		return p.flags&flagSampled != 0
	}
	return s.all || binary.BigEndian.Uint64(tid[8:])>>1 < s.bound
}

// W3C trace flags.
const (
	flagSampled = 0x01
	flagRandom  = 0x02
)

// parentContext is the trace context of a span's parent.
type parentContext struct {
	traceID [16]byte
	spanID  [8]byte
	flags   byte
	valid   bool
}

// newTraceID returns a random, non-zero trace id. math/rand/v2's
// top-level source is the runtime's per-thread ChaCha8, seeded from the
// system's entropy: no lock and no system call per id (the SDK's id
// generator uses the same source).
func newTraceID() (id [16]byte) {
	for id == ([16]byte{}) {
		binary.NativeEndian.PutUint64(id[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

// newSpanID returns a random, non-zero span id.
func newSpanID() (id [8]byte) {
	for id == ([8]byte{}) {
		binary.NativeEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// parseTraceparent reads a traceparent header value as the SDK's
// propagation.TraceContext does: version (not ff), a non-zero trace id
// and span id in lower-case hex, the flags (version 00: nothing after
// them, no reserved bit); only the sampled and random flags are kept.
func parseTraceparent(h []byte) (p parentContext) {
	if len(h) == 0 {
		return p
	}
	var ver, opts [1]byte
	if !cutHex(ver[:], &h, 2) || ver[0] > 254 {
		return parentContext{}
	}
	if !cutHex(p.traceID[:], &h, 32) || !cutHex(p.spanID[:], &h, 16) || !cutHex(opts[:], &h, 2) {
		return parentContext{}
	}
	if ver[0] == 0 && (len(h) != 0 || opts[0] > 3) {
		return parentContext{}
	}
	if p.traceID == ([16]byte{}) || p.spanID == ([8]byte{}) {
		return parentContext{}
	}
	p.flags = opts[0] & (flagSampled | flagRandom)
	p.valid = true
	return p
}

// cutHex decodes the part of *h before the next '-' (n lower-case hex
// digits) into dst and leaves the rest in *h.
func cutHex(dst []byte, h *[]byte, n int) bool {
	part := *h
	*h = nil
	for i, c := range part {
		if c == '-' {
			part, *h = part[:i], part[i+1:]
			break
		}
	}
	if len(part) != n {
		return false
	}
	for i := 0; i < n; i += 2 {
		hi, lo := unhex(part[i]), unhex(part[i+1])
		if hi > 15 || lo > 15 {
			return false
		}
		dst[i/2] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}
