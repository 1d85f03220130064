package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Options are the limits and settings of a Manager, shared by every plugin
// it runs. Zero fields take the defaults.
type Options struct {
	// Timeout bounds each call into a guest (handle_request,
	// handle_response). Default 100ms.
	Timeout time.Duration
	// InitTimeout bounds the instantiation of a guest (its _initialize,
	// e.g. the Go runtime start). Default 2s.
	InitTimeout time.Duration
	// QueueTimeout bounds the wait for a free instance when a handler's
	// pool is at MaxInstances. Default 1s.
	QueueTimeout time.Duration
	// MemoryLimitPages caps the linear memory of every instance, in 64 KiB
	// pages. Default 1024 (64 MiB). A guest that declares more fails to
	// load; one that grows past it sees memory.grow fail.
	MemoryLimitPages uint32
	// MaxInstances bounds the instances of one handler (concurrent calls,
	// plus requests whose guest keeps its instance until handle_response).
	// Default max(16, 4*GOMAXPROCS).
	MaxInstances int
	// MaxConcurrency is the default of a wasm entry's max_concurrency: the
	// guest calls of one entry running at once on the workers. Default:
	// GOMAXPROCS (as it was before the workers raised it), at most 16.
	MaxConcurrency int
	// Workers is the number of dedicated guest threads (see workerPool)
	// started with the first handler. Default 2*GOMAXPROCS (at most 32),
	// so that one suspect entry at its default max_concurrency leaves
	// workers to the others. A negative
	// value runs every guest on the requests' goroutines. Only on Linux;
	// elsewhere guests always run on the requests' goroutines.
	Workers int
	// MaxBodyBytes bounds a body a guest writes in one call. Default 8 MiB.
	MaxBodyBytes int
	// MaxFileBytes bounds a .wasm file. Default 64 MiB.
	MaxFileBytes int64
	// CacheDir, if set, keeps compiled code on disk across restarts
	// (wazero's file cache). Otherwise the cache is in memory.
	CacheDir string
	// Debounce is how long Watch waits after the last change of a file
	// before it recompiles it. Default 100ms.
	Debounce time.Duration
	// Logger receives load, reload and plugin failures and guest logs.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = 2 * time.Second
	}
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = time.Second
	}
	if o.MemoryLimitPages == 0 {
		o.MemoryLimitPages = 1024
	}
	procs := baseProcs()
	if o.MaxInstances <= 0 {
		o.MaxInstances = max(16, 4*procs)
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = min(procs, maxWorkers/2)
	}
	switch {
	case !workersSupported || o.Workers < 0:
		o.Workers = 0
	case o.Workers == 0:
		o.Workers = min(2*procs, maxWorkers)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 8 << 20
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 64 << 20
	}
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// maxWorkers bounds the default number of guest threads, and maxInline
// the calls of trusted guests on requests' goroutines (see workerPool):
// each is a P added to GOMAXPROCS, and many idle Ps cost the scheduler.
const (
	maxWorkers = 32
	maxInline  = 8
)

// defaultMaxQueue is the default of max_queue: enough for a burst of
// requests on a healthy plugin, whose calls take microseconds.
const defaultMaxQueue = 1024

// demoteAfter is how long a guest call runs at normal priority before its
// thread is deprioritised: far above a well-behaved call (microseconds),
// far below the deadline.
func demoteAfter(timeout time.Duration) time.Duration {
	return min(5*time.Millisecond, timeout/4)
}

// baseProcs is GOMAXPROCS without what the worker pools added.
func baseProcs() int {
	procs.Lock()
	defer procs.Unlock()
	if procs.added > 0 {
		return procs.base
	}
	return runtime.GOMAXPROCS(0)
}

// compiled is the compiled code of one content (a version of a file),
// shared by the handlers (and their instances) that run it.
type compiled struct {
	mgr         *Manager
	hash        string // hex SHA-256 of the file
	mod         wazero.CompiledModule
	hasResponse bool
	// start is the function that sets an instance up: "_start" (a WASI
	// command: its main registers the handler), "_initialize" (a WASI
	// reactor), or "" (neither).
	start string
	refs  int // guarded by mgr.cacheMu
}

// release drops one reference; the last closes the compiled code.
func (c *compiled) release() {
	m := c.mgr
	m.cacheMu.Lock()
	c.refs--
	last := c.refs == 0
	if last {
		delete(m.cache, c.hash)
	}
	m.cacheMu.Unlock()
	if last {
		_ = c.mod.Close(context.Background())
	}
}

// Manager loads, compiles and hot-swaps plugins. One Manager (one wazero
// runtime) serves every snapshot of the proxy; Close it at shutdown.
type Manager struct {
	opts   Options
	log    *slog.Logger
	rt     wazero.Runtime
	wcache wazero.CompilationCache

	// mu serialises loads, reloads and handler registration.
	mu       sync.Mutex
	current  map[string]*compiled // by absolute path; each holds a reference
	handlers map[string]map[*Handler]struct{}
	closed   bool
	watcher  *fsnotify.Watcher
	watched  map[string]bool

	// cacheMu guards cache and the reference counts. cache holds the
	// compiled code in use by content hash: the same bytes under another
	// path, or a file reverted to a version still running, are not
	// compiled again.
	cacheMu sync.Mutex
	cache   map[string]*compiled

	// pool runs the guests (nil until the first handler, or without
	// workers).
	pool *workerPool
	// mem allocates guests' linear memories.
	mem *guestMemory

	stop    chan struct{}
	wg      sync.WaitGroup
	created atomic.Int64
	swaps   atomic.Int64
}

// NewManager creates the wazero runtime (with a compilation cache, the
// memory cap) and the "http_handler"
// and WASI host modules.
func NewManager(opts Options) (*Manager, error) {
	opts = opts.withDefaults()
	var cache wazero.CompilationCache
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", opts.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(opts.MemoryLimitPages))
	m := &Manager{
		opts:     opts,
		log:      opts.Logger,
		rt:       rt,
		wcache:   cache,
		cache:    map[string]*compiled{},
		current:  map[string]*compiled{},
		handlers: map[string]map[*Handler]struct{}{},
		watched:  map[string]bool{},
		stop:     make(chan struct{}),
		mem:      &guestMemory{},
	}
	if err := instantiateHost(ctx, rt); err != nil {
		m.closeRuntime()
		return nil, fmt.Errorf("wasm host module: %w", err)
	}
	if err := instantiateWASI(ctx, rt); err != nil {
		m.closeRuntime()
		return nil, fmt.Errorf("wasm WASI module: %w", err)
	}
	return m, nil
}

func (m *Manager) closeRuntime() {
	ctx := context.Background()
	_ = m.rt.Close(ctx)
	_ = m.wcache.Close(ctx)
}

// Load compiles the plugin at path, if it is not compiled already at its
// current content, so that building a handler for it later is quick. It
// is what Watch does for a new file.
func (m *Manager) Load(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errManagerClosed
	}
	_, err = m.loadLocked(abs)
	return err
}

var errManagerClosed = errors.New("wasm plugin manager closed")

// loadLocked returns the current compiled code of abs, compiling it on
// first use. It holds a reference for m.current.
func (m *Manager) loadLocked(abs string) (*compiled, error) {
	if c := m.current[abs]; c != nil {
		return c, nil
	}
	c, err := m.compileLocked(abs)
	if err != nil {
		return nil, err
	}
	m.current[abs] = c
	return c, nil
}

// compileLocked reads and compiles abs, or takes the compiled code of the
// same content from the cache (wazero's compilation cache also spares the
// compilation of content compiled before, even by an earlier process when
// CacheDir is set). The result holds one reference for the caller.
func (m *Manager) compileLocked(abs string) (*compiled, error) {
	data, err := readFile(abs, m.opts.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	m.cacheMu.Lock()
	if c := m.cache[hash]; c != nil {
		c.refs++
		m.cacheMu.Unlock()
		return c, nil
	}
	m.cacheMu.Unlock()

	ctx := context.Background()
	mod, err := m.compileGuest(data)
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", abs, err)
	}
	g, err := checkGuest(mod)
	if err != nil {
		_ = mod.Close(ctx)
		return nil, fmt.Errorf("%s: %w", abs, err)
	}
	c := &compiled{mgr: m, hash: hash, mod: mod, hasResponse: g.hasResponse, start: g.start, refs: 1}
	m.cacheMu.Lock()
	m.cache[hash] = c
	m.cacheMu.Unlock()
	return c, nil
}

// compileGuest compiles a guest with its deadline checks (see
// instrument).
func (m *Manager) compileGuest(data []byte) (wazero.CompiledModule, error) {
	ctx := context.Background()
	in, ierr := instrument(data)
	if ierr != nil {
		// wazero's error on the binary as it came, if it has one, is the
		// more precise.
		plain, err := m.rt.CompileModule(ctx, data)
		if err != nil {
			return nil, err
		}
		_ = plain.Close(ctx)
		return nil, fmt.Errorf("adding the deadline checks: %w", ierr)
	}
	return m.rt.CompileModule(ctx, in)
}

func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	if !bytes.HasPrefix(data, []byte("\x00asm")) {
		return nil, fmt.Errorf("%s: not a WebAssembly binary", path)
	}
	return data, nil
}

// guestInfo is what checkGuest learnt of a guest.
type guestInfo struct {
	hasResponse bool
	start       string // see compiled.start
}

// WASI start functions: a command exports _start (main, run once), a
// reactor _initialize (its runtime set up, then the exports called).
const (
	startCommand = "_start"
	startReactor = "_initialize"
)

// checkGuest checks the exports the ABI requires: memory and
// handle_request () -> i64; handle_response (i32, i32) -> () is optional
// here (when absent it is simply not called). A start function, if any,
// is either _start or _initialize, () -> (): a module cannot be both a
// WASI command and a reactor.
func checkGuest(mod wazero.CompiledModule) (g guestInfo, err error) {
	fns := mod.ExportedFunctions()
	hr, ok := fns["handle_request"]
	if !ok || len(hr.ParamTypes()) != 0 || !bytes.Equal(hr.ResultTypes(), []api.ValueType{api.ValueTypeI64}) {
		return g, errNoHandleRequest
	}
	if _, ok := mod.ExportedMemories()["memory"]; !ok {
		return g, errors.New(`guest does not export "memory"`)
	}
	if rs, ok := fns["handle_response"]; ok {
		if !bytes.Equal(rs.ParamTypes(), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}) || len(rs.ResultTypes()) != 0 {
			return g, errors.New(`guest exports "handle_response" with a signature other than (i32, i32) -> ()`)
		}
		g.hasResponse = true
	}
	for _, name := range []string{startCommand, startReactor} {
		f, ok := fns[name]
		if !ok {
			continue
		}
		if g.start != "" {
			return g, fmt.Errorf("guest exports both %q (a WASI command) and %q (a WASI reactor)", startCommand, startReactor)
		}
		if len(f.ParamTypes()) != 0 || len(f.ResultTypes()) != 0 {
			return g, fmt.Errorf("guest exports %q with a signature other than () -> ()", name)
		}
		g.start = name
	}
	for _, f := range mod.ImportedFunctions() {
		modName, name, _ := f.Import()
		if modName == tickModule && name == tickName {
			continue // the deadline checks' (see instrument)
		}
		if modName != hostModule && modName != wasi_snapshot_preview1.ModuleName {
			return g, fmt.Errorf("guest imports %s.%s: only %q and %q are provided", modName, name, hostModule, wasi_snapshot_preview1.ModuleName)
		}
	}
	return g, nil
}

// Reload recompiles the plugin at path if its content changed, and swaps
// the new code into every handler using it, each with a fresh pool. A file
// that does not compile, or whose guest fails to start, is reported and
// the handlers keep running the previous code.
func (m *Manager) Reload(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errManagerClosed
	}
	return m.reloadLocked(abs)
}

func (m *Manager) reloadLocked(abs string) error {
	old := m.current[abs]
	c, err := m.compileLocked(abs)
	if err != nil {
		if old != nil {
			m.log.Error("wasm plugin: reload failed; keeping the previous version", "plugin", abs, "error", err)
		} else {
			m.log.Error("wasm plugin: load failed", "plugin", abs, "error", err)
		}
		return err
	}
	if c == old {
		c.release() // unchanged content
		return nil
	}
	// Start every handler's new module before swapping any, so that a
	// guest failing to start leaves all of them on the previous version.
	hs := m.handlers[abs]
	mods := make(map[*Handler]*module, len(hs))
	for h := range hs {
		nm := h.newModule(c)
		if err := nm.prewarm(); err != nil {
			nm.Close()
			for _, built := range mods {
				built.Close()
			}
			c.release()
			m.log.Error("wasm plugin: reload failed; keeping the previous version", "plugin", abs, "route", h.route, "error", err)
			return err
		}
		mods[h] = nm
	}
	for h, nm := range mods {
		if prev := h.cur.Swap(nm); prev != nil {
			prev.Close()
		}
	}
	m.current[abs] = c
	if old != nil {
		old.release()
	}
	m.swaps.Add(1)
	m.log.Info("wasm plugin: loaded", "plugin", abs, "sha256", c.hash[:12], "handlers", len(mods))
	return nil
}

// Close stops the watcher, closes every plugin instance and the runtime.
// Handlers built by m fail their calls afterwards (per their fail_open).
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	w := m.watcher
	handlers := m.handlers
	m.handlers = map[string]map[*Handler]struct{}{}
	m.mu.Unlock()

	close(m.stop)
	var err error
	if w != nil {
		err = w.Close()
	}
	m.wg.Wait()
	for _, hs := range handlers {
		for h := range hs {
			h.shutdown()
		}
	}
	// Closing the runtime closes every module, which stops the guests
	// still running (their memories stay mapped); then the workers can
	// end.
	m.mem.closing.Store(true)
	m.closeRuntime()
	if m.pool != nil {
		m.pool.stop()
	}
	return err
}

// startWorkersLocked starts the guest threads on first use, so that a
// process without plugins keeps its GOMAXPROCS.
func (m *Manager) startWorkersLocked() {
	if m.pool == nil && m.opts.Workers > 0 {
		m.pool = startWorkers(m.opts.Workers, min(baseProcs(), maxInline), demoteAfter(m.opts.Timeout))
	}
}

// Stats are counters for tests and metrics.
type Stats struct {
	// Instances is the number of guest instances created so far.
	Instances int64
	// Swaps is the number of successful reloads that changed a file.
	Swaps int64
	// Compiled is the number of compiled modules held.
	Compiled int
	// Workers is the number of guest threads (0 before the first handler,
	// or when guests run on the requests' goroutines).
	Workers int
	// Demoted is the number of guest calls that overran the normal
	// priority budget, after which their threads were deprioritised.
	Demoted int64
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.cacheMu.Lock()
	n := len(m.cache)
	m.cacheMu.Unlock()
	st := Stats{Instances: m.created.Load(), Swaps: m.swaps.Load(), Compiled: n}
	m.mu.Lock()
	if p := m.pool; p != nil {
		st.Workers, st.Demoted = p.size, p.demoted.Load()
	}
	m.mu.Unlock()
	return st
}

// logWriter turns a guest's stdout/stderr (e.g. a Go panic message) into
// log records.
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	path   string
	route  string
	stream string
}

func (w *logWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimRight(p, "\n")
	if len(msg) > maxLogMessage {
		msg = msg[:maxLogMessage]
	}
	if len(msg) > 0 {
		w.log.Log(context.Background(), w.level, "wasm plugin output: "+string(msg),
			"plugin", w.path, "route", w.route, "stream", w.stream)
	}
	return len(p), nil
}
