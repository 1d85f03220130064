package plugins

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// A guest's code must stop at its deadline, and the Go scheduler cannot
// preempt it: while it runs machine code, its goroutine holds its P (and
// keeps the runtime from stopping the world for the GC) until it calls
// back into Go. wazero's way to stop it (RuntimeConfig.
// WithCloseOnContextDone) costs twice on the hot path: every call starts
// a goroutine that waits for the call's context, and every iteration of
// every loop leaves the guest's machine code for Go to check whether the
// module was closed.
//
// So the guest is instrumented instead, before it is compiled: instrument
// adds a mutable i32 global, a countdown, and makes every function entry
// and every loop iteration decrement it; when it reaches zero, the guest
// calls the host's tick (tickModule.tickName, an import instrument adds)
// and the countdown starts again from tickEvery. tick checks the call's
// deadline (see callCtx.tick) and traps once it has passed. That is a
// few instructions inside the guest's code per iteration, and one call
// into Go every tickEvery: a looping guest stops within tickEvery
// iterations of its deadline, and reaches a point where the runtime can
// preempt it (or stop the world) as often. A guest cannot reach the
// countdown: its code does not name the new global, whose index comes
// after the guest's own, and nothing exports it.

// tickEvery is how many function entries and loop iterations a guest
// makes between two calls to tick.
const tickEvery = 1000

// tickModule and tickName name the host function instrument imports.
const (
	tickModule = "rustygate"
	tickName   = "tick"
)

// Section ids.
const (
	secCustom  = 0
	secType    = 1
	secImport  = 2
	secGlobal  = 6
	secExport  = 7
	secStart   = 8
	secElement = 9
	secCode    = 10
)

// sectionRank is the position of each known section in a module: they
// must come in this order (custom sections may be anywhere).
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type wasmSection struct {
	id   byte
	body []byte
	off  int // of body in the binary
}

// wasmReader reads a WebAssembly binary; the first error sticks, with the
// offset it happened at.
type wasmReader struct {
	b   []byte
	off int // offset of b[0] in the whole binary, for errors
	err error
}

func (r *wasmReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	r.off++
	return c
}

func (r *wasmReader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail("unexpected end (want %d bytes, have %d)", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	r.off += int(n)
	return v
}

// leb reads an unsigned (or, skipping it, a signed) LEB128 number of at
// most maxBits bits.
func (r *wasmReader) leb(maxBits int) uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		if shift >= maxBits+7 || shift >= 70 {
			r.fail("LEB128 number too long")
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *wasmReader) u32() uint32 { return uint32(r.leb(32)) }

func (r *wasmReader) name() string { return string(r.bytes(uint64(r.u32()))) }

// heapType reads a heap type (s33).
func (r *wasmReader) heapType() { r.leb(33) }

// valType reads a value type.
func (r *wasmReader) valType() {
	switch c := r.byte(); c {
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.heapType()
	default:
		if c&0x80 != 0 || c < 0x40 {
			r.fail("bad value type 0x%02x", c)
		}
	}
}

// blockType reads a block type: empty, a value type, or a type index.
func (r *wasmReader) blockType() {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return
	}
	c := r.b[0]
	switch {
	case c == 0x40:
		r.byte()
	case c == 0x63 || c == 0x64:
		r.valType()
	case c&0x80 == 0 && c >= 0x40: // a one-byte negative s33: a value type
		r.byte()
	default:
		r.leb(33) // a type index
	}
}

func (r *wasmReader) limits() {
	flags := r.byte()
	r.leb(64)
	if flags&1 != 0 {
		r.leb(64)
	}
}

func (r *wasmReader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(64)
}

// appendLEB appends v as an unsigned LEB128 number (binary.AppendUvarint
// writes that format).
var appendLEB = binary.AppendUvarint

func appendName(b []byte, s string) []byte {
	b = appendLEB(b, uint64(len(s)))
	return append(b, s...)
}

// instrument adds the countdown and its checks to the guest binary data
// (see the top of this file). It refuses what it cannot read: wazero
// refuses the same binary with a more precise error, which the caller
// prefers (see Manager.compileGuest).
func instrument(data []byte) ([]byte, error) {
	if len(data) < 8 || string(data[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary")
	}
	if v := binary.LittleEndian.Uint32(data[4:8]); v != 1 {
		return nil, fmt.Errorf("WebAssembly binary version %d, want 1", v)
	}
	r := &wasmReader{b: data[8:], off: 8}
	var secs []wasmSection
	for len(r.b) > 0 && r.err == nil {
		id := r.byte()
		size := r.u32()
		off := r.off
		body := r.bytes(uint64(size))
		if r.err != nil {
			break
		}
		if id != secCustom {
			if _, ok := sectionRank[id]; !ok {
				return nil, fmt.Errorf("unknown section id %d", id)
			}
		}
		secs = append(secs, wasmSection{id, body, off})
	}
	if r.err != nil {
		return nil, r.err
	}

	// The function and global index spaces: the tick import goes after
	// the guest's imported functions, which shifts its own functions by
	// one; the countdown goes after all the guest's globals.
	var x rewriter
	var types uint32
	for _, s := range secs {
		sr := &wasmReader{b: s.body, off: s.off}
		switch s.id {
		case secType:
			types = sr.u32()
		case secImport:
			for range sr.u32() {
				if mod, name := sr.name(), sr.name(); mod == tickModule && sr.err == nil {
					return nil, fmt.Errorf("guest imports %s.%s: the host keeps the module %q for itself", mod, name, tickModule)
				}
				switch kind := sr.byte(); kind {
				case 0x00: // function
					sr.u32()
					x.importedFuncs++
				case 0x01: // table
					sr.valType()
					sr.limits()
				case 0x02: // memory
					sr.limits()
				case 0x03: // global
					sr.valType()
					sr.byte()
					x.importedGlobals++
				case 0x04: // tag
					sr.byte()
					sr.u32()
				default:
					sr.fail("unknown import kind 0x%02x", kind)
				}
			}
		case secGlobal:
			x.definedGlobals = sr.u32()
		}
		if sr.err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, sr.err)
		}
	}
	counter := x.importedGlobals + x.definedGlobals
	tick := x.importedFuncs
	// The check, at each function entry and loop header:
	//   global.get $c; i32.const 1; i32.sub; global.set $c
	//   global.get $c; i32.eqz
	//   if; call $tick; i32.const tickEvery; global.set $c; end
	g := appendLEB(nil, uint64(counter))
	x.check = append(append([]byte{0x23}, g...), 0x41, 0x01, 0x6b, 0x24)
	x.check = append(append(x.check, g...), 0x23)
	x.check = append(append(x.check, g...), 0x45, 0x04, 0x40, 0x10)
	x.check = appendLEB(x.check, uint64(tick))
	x.check = append(x.check, 0x41)
	x.check = appendSLEB(x.check, tickEvery)
	x.check = append(append(x.check, 0x24), g...)
	x.check = append(x.check, 0x0b)

	out := make([]byte, 0, len(data)+len(data)/4+64)
	out = append(out, data[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendLEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	// The tick's type, () -> (), is added at the end of the type section.
	wrote := map[byte]bool{}
	need := []byte{secType, secImport, secGlobal}
	for _, s := range secs {
		if s.id != secCustom {
			for _, id := range need {
				if !wrote[id] && sectionRank[s.id] > sectionRank[id] {
					body, err := x.section(id, nil, 0, types)
					if err != nil {
						return nil, err
					}
					emit(id, body)
					wrote[id] = true
				}
			}
		}
		if s.id == secCustom {
			cr := &wasmReader{b: s.body}
			name := cr.name()
			switch {
			case cr.err != nil:
				emit(s.id, s.body)
			case strings.HasPrefix(name, ".debug_"):
				// DWARF: its code offsets no longer hold.
			case name == "name":
				if body, err := x.names(s.body, cr.off); err == nil {
					emit(s.id, body)
				} // else the names go: they are only for stack traces
			default:
				emit(s.id, s.body)
			}
			continue
		}
		body, err := x.section(s.id, s.body, s.off, types)
		if err != nil {
			return nil, err
		}
		wrote[s.id] = true
		emit(s.id, body)
	}
	for _, id := range need {
		if !wrote[id] {
			body, err := x.section(id, nil, 0, types)
			if err != nil {
				return nil, err
			}
			emit(id, body)
		}
	}
	return out, nil
}

// rewriter renumbers the guest's functions around the tick import and
// adds the checks.
type rewriter struct {
	importedFuncs, importedGlobals, definedGlobals uint32
	check                                          []byte
}

// fn is the new index of the guest's function i.
func (x *rewriter) fn(i uint32) uint32 {
	if i >= x.importedFuncs {
		return i + 1
	}
	return i
}

// section rewrites the body of a section (nil: the guest has none) with
// id; types is the number of types the guest declares.
func (x *rewriter) section(id byte, body []byte, off int, types uint32) ([]byte, error) {
	r := &wasmReader{b: body, off: off}
	var out []byte
	switch id {
	case secType:
		n := uint32(0)
		if body != nil {
			n = r.u32()
		}
		out = appendLEB(out, uint64(n)+1)
		out = append(out, r.b...)
		out = append(out, 0x60, 0x00, 0x00) // func () -> ()
		return out, nil
	case secImport:
		n := uint32(0)
		if body != nil {
			n = r.u32()
		}
		out = appendLEB(out, uint64(n)+1)
		// Imported functions keep their indices whatever the order of
		// the imports: the tick is the last one.
		out = append(out, r.b...)
		out = appendName(out, tickModule)
		out = appendName(out, tickName)
		out = append(out, 0x00)
		out = appendLEB(out, uint64(types))
		return out, nil
	case secGlobal:
		n := uint32(0)
		if body != nil {
			n = r.u32()
		}
		out = appendLEB(out, uint64(n)+1)
		for range n {
			start := r.b
			r.valType()
			r.byte()
			out = append(out, start[:len(start)-len(r.b)]...)
			out = x.expr(r, out, false)
		}
		out = append(out, 0x7f, 0x01, 0x41) // (mut i32) (i32.const tickEvery)
		out = appendSLEB(out, tickEvery)
		out = append(out, 0x0b)
	case secExport:
		n := r.u32()
		out = appendLEB(out, uint64(n))
		for range n {
			out = appendName(out, r.name())
			kind := r.byte()
			idx := r.u32()
			if kind == 0x00 {
				idx = x.fn(idx)
			}
			out = appendLEB(append(out, kind), uint64(idx))
		}
	case secStart:
		out = appendLEB(out, uint64(x.fn(r.u32())))
	case secElement:
		n := r.u32()
		out = appendLEB(out, uint64(n))
		for range n {
			flags := r.u32()
			out = appendLEB(out, uint64(flags))
			if flags > 7 {
				r.fail("unknown element segment kind %d", flags)
				break
			}
			if flags&2 != 0 && flags&1 == 0 { // an explicit table index
				out = appendLEB(out, uint64(r.u32()))
			}
			if flags&1 == 0 { // active: the offset
				out = x.expr(r, out, false)
			}
			if flags&3 != 0 { // an element kind or a reference type
				start := r.b
				if flags&4 != 0 {
					r.valType()
				} else {
					r.byte()
				}
				out = append(out, start[:len(start)-len(r.b)]...)
			}
			m := r.u32()
			out = appendLEB(out, uint64(m))
			for range m {
				if flags&4 != 0 {
					out = x.expr(r, out, false)
				} else {
					out = appendLEB(out, uint64(x.fn(r.u32())))
				}
			}
		}
	case secCode:
		n := r.u32()
		out = appendLEB(out, uint64(n))
		var fn []byte
		for i := range n {
			size := r.u32()
			fr := &wasmReader{off: r.off}
			fr.b = r.bytes(uint64(size))
			if r.err != nil {
				break
			}
			fn = fn[:0]
			start := fr.b
			for range fr.u32() { // locals
				fr.u32()
				fr.valType()
			}
			fn = append(fn, start[:len(start)-len(fr.b)]...)
			fn = append(fn, x.check...)
			fn = x.expr(fr, fn, true)
			if fr.err == nil && len(fr.b) != 0 {
				fr.fail("%d bytes after the end of the function", len(fr.b))
			}
			if fr.err != nil {
				return nil, fmt.Errorf("code section, function %d: %w", i, fr.err)
			}
			out = appendLEB(out, uint64(len(fn)))
			out = append(out, fn...)
		}
	default:
		return body, nil
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d unexpected bytes at the end of the section", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("section %d: %w", id, r.err)
	}
	return out, nil
}

// names rewrites the "name" custom section body (its name at offset
// off): the function names and the local and label names, which are by
// function.
func (x *rewriter) names(body []byte, off int) ([]byte, error) {
	r := &wasmReader{b: body}
	out := appendName(nil, r.name())
	for len(r.b) > 0 && r.err == nil {
		id := r.byte()
		sub := r.bytes(uint64(r.u32()))
		if r.err != nil {
			break
		}
		sr := &wasmReader{b: sub}
		var nb []byte
		switch id {
		case 1: // function names: a name map
			n := sr.u32()
			nb = appendLEB(nb, uint64(n))
			for range n {
				nb = appendLEB(nb, uint64(x.fn(sr.u32())))
				nb = appendName(nb, sr.name())
			}
		case 2, 3: // local and label names: by function, a name map each
			n := sr.u32()
			nb = appendLEB(nb, uint64(n))
			for range n {
				nb = appendLEB(nb, uint64(x.fn(sr.u32())))
				start := sr.b
				for range sr.u32() {
					sr.u32()
					sr.name()
				}
				nb = append(nb, start[:len(start)-len(sr.b)]...)
			}
		default:
			nb = sub
		}
		if sr.err != nil {
			return nil, sr.err
		}
		out = append(out, id)
		out = appendLEB(out, uint64(len(nb)))
		out = append(out, nb...)
	}
	if r.err != nil {
		return nil, fmt.Errorf("at byte %d: %w", off, r.err)
	}
	return out, nil
}

// expr copies one expression (a function body, or a constant expression)
// from r to out, up to and including its final end, renumbering the
// functions it names; with checks, it adds the check after each loop's
// block type.
func (x *rewriter) expr(r *wasmReader, out []byte, checks bool) []byte {
	depth := 0
	for r.err == nil {
		start := r.b
		op := r.byte()
		loop := false
		fnIdx := false
		switch {
		case op == 0x03: // loop
			r.blockType()
			loop = true
			depth++
		case op == 0x02 || op == 0x04 || op == 0x06: // block, if, try
			r.blockType()
			depth++
		case op == 0x1f: // try_table
			r.blockType()
			depth++
			for range r.u32() {
				switch kind := r.byte(); kind {
				case 0x00, 0x01: // catch, catch_ref: tag, label
					r.u32()
					r.u32()
				case 0x02, 0x03: // catch_all, catch_all_ref: label
					r.u32()
				default:
					r.fail("unknown catch kind 0x%02x", kind)
				}
			}
		case op == 0x0b: // end
			depth--
		case op == 0x18: // delegate: ends a try, like end
			r.u32()
			depth--
		case op == 0x10 || op == 0x12 || op == 0xd2: // call, return_call, ref.func
			fnIdx = true
		case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0c || op == 0x0d ||
			op == 0x14 || op == 0x15 ||
			(op >= 0x20 && op <= 0x26) || op == 0x3f || op == 0x40 ||
			op == 0xd5 || op == 0xd6:
			r.u32()
		case op == 0x0e: // br_table
			for range r.u32() + 1 {
				r.u32()
			}
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.u32()
			r.u32()
		case op == 0x1c: // select t*
			for range r.u32() {
				r.valType()
			}
		case op >= 0x28 && op <= 0x3e: // loads and stores
			r.memarg()
		case op == 0x41:
			r.leb(32)
		case op == 0x42:
			r.leb(64)
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xd0: // ref.null
			r.heapType()
		case op <= 0x01 || op == 0x05 || op == 0x0a || op == 0x0f ||
			op == 0x19 || op == 0x1a || op == 0x1b ||
			(op >= 0x45 && op <= 0xc4) || op == 0xd1 || op == 0xd3 || op == 0xd4:
			// no immediate
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7: // saturating truncations
			case sub == 8 || sub == 10 || sub == 12 || sub == 14:
				r.u32()
				r.u32()
			case sub == 9 || sub == 11 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
				r.u32()
			default:
				r.fail("unknown instruction 0xfc %d", sub)
			}
		case op == 0xfd:
			switch sub := r.u32(); {
			case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
				r.memarg()
			case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
				r.bytes(16)
			case sub >= 21 && sub <= 34: // extract and replace lane
				r.byte()
			case sub >= 84 && sub <= 91: // load and store lane
				r.memarg()
				r.byte()
			case sub <= 0x113:
				// no immediate (relaxed SIMD included)
			default:
				r.fail("unknown instruction 0xfd %d", sub)
			}
		case op == 0xfe:
			if sub := r.u32(); sub == 0x03 { // atomic.fence
				r.byte()
			} else {
				r.memarg()
			}
		default:
			r.fail("unknown opcode 0x%02x", op)
		}
		if r.err != nil {
			break
		}
		if fnIdx {
			out = append(out, op)
			out = appendLEB(out, uint64(x.fn(r.u32())))
		} else {
			out = append(out, start[:len(start)-len(r.b)]...)
		}
		if loop && checks {
			out = append(out, x.check...)
		}
		if depth < 0 {
			break
		}
	}
	return out
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
