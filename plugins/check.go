package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tetratelabs/wazero"
)

// Check tells whether the file at path is a plugin a Manager with the
// default Options would load: a WebAssembly module within the size and
// memory limits that compiles and exports what the http-wasm ABI requires
// (see checkGuest). It starts no instance. `rustygate validate` runs it on
// every plugin of a configuration; its errors do not repeat the path.
func Check(path string) error {
	opts := Options{}.withDefaults()
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, opts.MaxFileBytes+1))
	switch {
	case err != nil:
		return err
	case int64(len(data)) > opts.MaxFileBytes:
		return fmt.Errorf("larger than %d bytes", opts.MaxFileBytes)
	case !bytes.HasPrefix(data, []byte("\x00asm")):
		return errors.New("not a WebAssembly binary")
	}
	// The interpreter decodes and validates the module as the compiler
	// does, without generating machine code: quick.
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(opts.MemoryLimitPages))
	defer rt.Close(ctx)
	mod, err := rt.CompileModule(ctx, data)
	if err != nil {
		return fmt.Errorf("invalid WebAssembly module: %w", err)
	}
	if _, err := checkGuest(mod); err != nil {
		return fmt.Errorf("not an http-wasm guest: %w", err)
	}
	return nil
}
