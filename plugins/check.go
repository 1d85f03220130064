package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Check tells whether the file at path is a plugin a Manager with the
// default Options runs, with guestConfig as the configuration of its
// entry: a WebAssembly module within the size and memory limits that
// compiles and exports what the http-wasm ABI requires (see checkGuest),
// and whose instance starts as run starts it (its _start or _initialize,
// within the start deadline, with the guest configuration). `rustygate
// validate` runs it on every plugin of a configuration; its errors do not
// repeat the path.
func Check(path string, guestConfig map[string]any) error {
	data, err := readGuest(path)
	if err != nil {
		return err
	}
	conf, err := encodeConfig(guestConfig)
	if err != nil {
		return err
	}
	// No workers: the check leaves GOMAXPROCS alone.
	m, err := NewManager(Options{Workers: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer m.Close()
	mod, err := m.compileGuest(data)
	if err != nil {
		return fmt.Errorf("invalid WebAssembly module: %w", err)
	}
	g, err := checkGuest(mod)
	if err != nil {
		_ = mod.Close(context.Background())
		return fmt.Errorf("not an http-wasm guest: %w", err)
	}
	c := &compiled{mgr: m, mod: mod, hasResponse: g.hasResponse, start: g.start, refs: 1}
	pool := newModule(c, m.rt, newLimiter(1, 1, m.opts.Timeout), nil, &m.opts, m.log, conf, path, "", "")
	defer pool.Close() // and releases c
	if err := pool.prewarm(); err != nil {
		return startError(err, m.opts)
	}
	return nil
}

// readGuest reads a plugin file within the size limit, checking that it
// is WebAssembly; its errors do not repeat the path.
func readGuest(path string) ([]byte, error) {
	limit := Options{}.withDefaults().MaxFileBytes
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	switch {
	case err != nil:
		return nil, err
	case int64(len(data)) > limit:
		return nil, fmt.Errorf("larger than %d bytes", limit)
	case !bytes.HasPrefix(data, []byte("\x00asm")):
		return nil, errors.New("not a WebAssembly binary")
	}
	return data, nil
}

// encodeConfig is what get_config returns for an entry's config: its
// JSON, or nothing.
func encodeConfig(guestConfig map[string]any) ([]byte, error) {
	if guestConfig == nil {
		return nil, nil
	}
	conf, err := json.Marshal(guestConfig)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return conf, nil
}

// startError describes why a guest failed to start, on one line (without
// wazero's guest stack trace). It wraps err.
func startError(err error, opts Options) error {
	var pe *Error
	if !errors.As(err, &pe) {
		return err
	}
	if pe.Reason == "timeout" {
		return &startErr{fmt.Sprintf("the guest did not start within %s", opts.InitTimeout), err}
	}
	cause := pe.Err
	if inner := errors.Unwrap(cause); inner != nil {
		cause = inner // without "instantiating PATH"
	}
	msg, _, _ := strings.Cut(cause.Error(), "\n")
	return &startErr{"the guest fails to start: " + msg, err}
}

// startErr is a start failure described on one line.
type startErr struct {
	msg string
	err error
}

func (e *startErr) Error() string { return e.msg }
func (e *startErr) Unwrap() error { return e.err }
