package plugins

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// indexGuest is a module whose functions, table, element segment, global,
// exports and start function all name functions by index, after an
// imported function: the tick import shifts them all by one.
//
//	(module
//	  (type $t0 (func (param i32) (result i32)))
//	  (type $t1 (func))
//	  (import "env" "f" (func $f (type $t1)))
//	  (table 1 funcref)
//	  (global $g (mut i32) (i32.const 0))
//	  (export "add1" (func $add1)) (export "viaTable" (func $viaTable))
//	  (export "sum" (func $sum)) (export "spin" (func $spin))
//	  (export "g" (global $g))
//	  (start $init)
//	  (elem (i32.const 0) $add1)
//	  (func $add1 (type $t0) (i32.add (local.get 0) (i32.const 1)))
//	  (func $viaTable (type $t0) (call_indirect (type $t0) (local.get 0) (i32.const 0)))
//	  (func $sum (type $t0) (local $i i32) (local $acc i32)
//	    (block (loop
//	      (br_if 1 (i32.ge_s (local.get $i) (local.get 0)))
//	      (local.set $acc (i32.add (local.get $acc) (local.get $i)))
//	      (local.set $i (call $add1 (local.get $i)))
//	      (br 0)))
//	    (local.get $acc))
//	  (func $spin (type $t1) (loop (br 0)))
//	  (func $init (type $t1) (call $f) (global.set $g (i32.const 42))))
func indexGuest() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = append(out, section(1, 2, []byte{0x60, 1, tI32, 1, tI32, 0x60, 0, 0})...)
	out = append(out, section(2, 1, code(wname("env"), wname("f"), []byte{0x00, 1}))...)
	out = append(out, section(3, 5, []byte{0, 0, 0, 1, 1})...)
	out = append(out, section(4, 1, []byte{0x70, 0x00, 1})...)
	out = append(out, section(6, 1, []byte{tI32, 1, 0x41, 0, 0x0b})...)
	out = append(out, section(7, 5, code(
		wname("add1"), []byte{0, 1}, wname("viaTable"), []byte{0, 2},
		wname("sum"), []byte{0, 3}, wname("spin"), []byte{0, 4}, wname("g"), []byte{3, 0}))...)
	out = append(out, 8, 1, 5) // start: $init
	out = append(out, section(9, 1, []byte{0x00, 0x41, 0, 0x0b, 1, 1})...)
	fn := func(locals []byte, body ...[]byte) []byte {
		b := append(locals, code(body...)...)
		b = append(b, 0x0b)
		return append(uleb(uint64(len(b))), b...)
	}
	out = append(out, section(10, 5, code(
		fn([]byte{0}, localGet(0), i32c(1), []byte{0x6a}),
		fn([]byte{0}, localGet(0), i32c(0), []byte{0x11, 0, 0}),
		fn([]byte{1, 2, tI32},
			[]byte{0x02, 0x40, 0x03, 0x40},
			localGet(1), localGet(0), []byte{0x4e, 0x0d, 1},
			localGet(2), localGet(1), []byte{0x6a}, localSet(2),
			localGet(1), call(1), localSet(1),
			[]byte{0x0c, 0}, opEnd, opEnd, localGet(2)),
		fn([]byte{0}, []byte{0x03, 0x40, 0x0c, 0, 0x0b}),
		fn([]byte{0}, call(0), i32c(42), []byte{0x24, 0}),
	))...)
	return out
}

// tickRuntime is a runtime with the host modules indexGuest needs, whose
// tick counts the calls in ticks and traps at the *stopAfter-th (when
// positive).
func tickRuntime(t *testing.T, ticks, stopAfter *int) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func() {}).Export("f").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.NewHostModuleBuilder(tickModule).NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(context.Context, []uint64) {
			*ticks++
			if *stopAfter > 0 && *ticks >= *stopAfter {
				panic(errDeadline)
			}
		}), nil, nil).Export(tickName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestInstrumentKeepsTheGuestsMeaning: the instrumented guest computes what
// the guest does (calls, indirect calls through its table, its start
// function, its exports, all renumbered), calls tick once per tickEvery
// function entries and loop iterations, and stops at the first tick that
// traps, even in a loop that calls nothing.
func TestInstrumentKeepsTheGuestsMeaning(t *testing.T) {
	ctx := context.Background()
	orig := indexGuest()
	inst, err := instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bin  []byte
	}{{"as given", orig}, {"instrumented", inst}} {
		t.Run(tc.name, func(t *testing.T) {
			ticks, never := 0, 0
			rt := tickRuntime(t, &ticks, &never)
			mod, err := rt.Instantiate(ctx, tc.bin)
			if err != nil {
				t.Fatal(err)
			}
			if g := mod.ExportedGlobal("g").Get(); g != 42 {
				t.Errorf("the start function set g to %d, want 42", g)
			}
			for _, c := range []struct {
				fn       string
				arg, res uint64
			}{{"add1", 5, 6}, {"viaTable", 7, 8}, {"sum", 5000, 12497500}} {
				got, err := mod.ExportedFunction(c.fn).Call(ctx, c.arg)
				if err != nil || got[0] != c.res {
					t.Errorf("%s(%d) = %v, %v; want %d", c.fn, c.arg, got, err, c.res)
				}
			}
			// sum(5000): 5000 add1 calls and 5001 loop iterations, plus
			// the other entries: about ten ticks.
			if tc.name == "instrumented" && (ticks < 9 || ticks > 11) {
				t.Errorf("%d ticks, want about 10", ticks)
			}
			if tc.name == "as given" && ticks != 0 {
				t.Errorf("%d ticks without instrumenting", ticks)
			}
		})
	}

	ticks, stopAfter := 0, 3
	rt := tickRuntime(t, &ticks, &stopAfter)
	mod, err := rt.Instantiate(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mod.ExportedFunction("spin").Call(ctx)
	if !errors.Is(err, errDeadline) || ticks != 3 {
		t.Fatalf("spin: %v after %d ticks, want the tick's trap at the third", err, ticks)
	}
}

// TestInstrumentRealGuests: the example guests (built by the Go compiler) instrument into modules wazero accepts that import the tick;
// the function names of a stack trace survive the renumbering.
func TestInstrumentRealGuests(t *testing.T) {
	ctx := context.Background()
	for _, n := range exampleNames {
		p := example(t, n)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := instrument(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rt := wazero.NewRuntime(ctx)
		cm, err := rt.CompileModule(ctx, inst)
		if err != nil {
			t.Fatalf("%s instrumented: %v", p, err)
		}
		found := false
		for _, f := range cm.ImportedFunctions() {
			if m, n, _ := f.Import(); m == tickModule && n == tickName {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s.%s import", p, tickModule, tickName)
		}
		rt.Close(ctx)
	}

	data, err := os.ReadFile(example(t, "loop"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := instrument(data)
	if err != nil {
		t.Fatal(err)
	}
	ticks, stopAfter := 0, 0
	rt := tickRuntime(t, &ticks, &stopAfter)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	mod, err := rt.InstantiateWithConfig(ctx, inst, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	ticks, stopAfter = 0, 5
	_, err = mod.ExportedFunction("handle_request").Call(ctx)
	if err == nil || !strings.Contains(err.Error(), "main.handleRequest") {
		t.Fatalf("the looping guest stopped with %v, want a trap in main.handleRequest", err)
	}
}

// TestInstrumentRefuses: a guest that imports from the host's own module,
// and binaries it cannot read, are refused with the reason.
func TestInstrumentRefuses(t *testing.T) {
	own := []byte("\x00asm\x01\x00\x00\x00")
	own = append(own, section(1, 1, []byte{0x60, 0, 0})...)
	own = append(own, section(2, 1, code(wname(tickModule), wname(tickName), []byte{0x00, 0}))...)
	for _, tc := range []struct {
		name string
		bin  []byte
		want string
	}{
		{"host module", own, `the host keeps the module "rustygate"`},
		{"version", []byte("\x00asm\x0d\x00\x01\x00"), "version"},
		{"truncated", indexGuest()[:60], "unexpected end"},
		{"opcode", append(append([]byte("\x00asm\x01\x00\x00\x00"), section(1, 1, []byte{0x60, 0, 0})...),
			append(section(3, 1, []byte{0}), section(10, 1, []byte{3, 0, 0xff, 0x0b})...)...), "unknown opcode 0xff"},
	} {
		if _, err := instrument(tc.bin); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
