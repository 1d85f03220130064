package plugins

// A minimal WebAssembly binary encoder, for guests written in the tests
// directly against the published http-wasm ABI (imports from
// "http_handler", exports "memory", "handle_request" and
// "handle_response"), with no helper code of RustyGate in the guest. Each
// guest is given in WebAssembly text format in a comment next to its
// encoding, instruction by instruction.

const (
	tI32 = 0x7f
	tI64 = 0x7e
)

type wasmType struct{ params, results []byte }

type wasmImport struct {
	module, name string
	typ          int
}

type wasmFunc struct {
	typ    int
	locals []byte // valtypes of the locals, one each
	body   []byte // instructions, without the final end
}

type wasmExport struct {
	name string
	kind byte // 0 function, 2 memory
	idx  int
}

type wasmData struct {
	offset int32
	bytes  string
}

type wasmModule struct {
	types   []wasmType
	imports []wasmImport
	funcs   []wasmFunc
	memMin  uint32
	memMax  int64 // -1: none
	exports []wasmExport
	data    []wasmData
}

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wname(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func section(id byte, count int, items []byte) []byte {
	content := append(uleb(uint64(count)), items...)
	return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
}

func (m *wasmModule) encode() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	var b []byte
	for _, t := range m.types {
		b = append(b, 0x60)
		b = append(append(b, uleb(uint64(len(t.params)))...), t.params...)
		b = append(append(b, uleb(uint64(len(t.results)))...), t.results...)
	}
	out = append(out, section(1, len(m.types), b)...)
	if len(m.imports) > 0 {
		b = nil
		for _, im := range m.imports {
			b = append(append(append(b, wname(im.module)...), wname(im.name)...), 0x00)
			b = append(b, uleb(uint64(im.typ))...)
		}
		out = append(out, section(2, len(m.imports), b)...)
	}
	b = nil
	for _, f := range m.funcs {
		b = append(b, uleb(uint64(f.typ))...)
	}
	out = append(out, section(3, len(m.funcs), b)...)
	if m.memMax < 0 {
		out = append(out, section(5, 1, append([]byte{0x00}, uleb(uint64(m.memMin))...))...)
	} else {
		lim := append([]byte{0x01}, uleb(uint64(m.memMin))...)
		out = append(out, section(5, 1, append(lim, uleb(uint64(m.memMax))...))...)
	}
	b = nil
	for _, e := range m.exports {
		b = append(append(append(b, wname(e.name)...), e.kind), uleb(uint64(e.idx))...)
	}
	out = append(out, section(7, len(m.exports), b)...)
	b = nil
	for _, f := range m.funcs {
		var fb []byte
		fb = append(fb, uleb(uint64(len(f.locals)))...)
		for _, l := range f.locals {
			fb = append(fb, 0x01, l)
		}
		fb = append(append(fb, f.body...), 0x0b)
		b = append(append(b, uleb(uint64(len(fb)))...), fb...)
	}
	out = append(out, section(10, len(m.funcs), b)...)
	if len(m.data) > 0 {
		b = nil
		for _, d := range m.data {
			b = append(b, 0x00, 0x41)
			b = append(append(b, sleb(int64(d.offset))...), 0x0b)
			b = append(b, wname(d.bytes)...)
		}
		out = append(out, section(11, len(m.data), b)...)
	}
	return out
}

// Instructions.
func i32c(v int32) []byte   { return append([]byte{0x41}, sleb(int64(v))...) }
func i64c(v int64) []byte   { return append([]byte{0x42}, sleb(v)...) }
func call(idx int) []byte   { return append([]byte{0x10}, uleb(uint64(idx))...) }
func localGet(i int) []byte { return append([]byte{0x20}, uleb(uint64(i))...) }
func localSet(i int) []byte { return append([]byte{0x21}, uleb(uint64(i))...) }
func localTee(i int) []byte { return append([]byte{0x22}, uleb(uint64(i))...) }
func code(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var (
	opUnreachable = []byte{0x00}
	opIfVoid      = []byte{0x04, 0x40}
	opEnd         = []byte{0x0b}
	opI32Eq       = []byte{0x46}
	opI32Ne       = []byte{0x47}
	opI32Sub      = []byte{0x6b}
	opI32WrapI64  = []byte{0xa7}
	opI64ShrU     = []byte{0x88}
	opMemoryGrow  = []byte{0x40, 0x00}
)
