package plugins

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Handler is the policy of one `name: wasm` middleware entry of a route. It
// runs the current version of its plugin: a reload swaps it atomically, and
// calls in flight finish on the version they started with.
//
// Request phase: Handle (middleware.Handler) runs the guest's
// handle_request. Response phase: when Handle let the request go on, the
// proxy asks ResponseNeeds and, unless it is NeedNone, calls OnResponse once
// it has the response (see OnResponse).
type Handler struct {
	mgr      *Manager
	path     string
	route    string
	failOpen bool
	rep      middleware.Reporter
	log      *slog.Logger
	config   []byte
	key      string
	lim      *limiter

	cur    atomic.Pointer[module]
	closed atomic.Bool

	lastLog    atomic.Int64 // unix nanoseconds of the last failure logged
	suppressed atomic.Int64 // failures not logged since
}

var (
	_ middleware.Handler         = (*Handler)(nil)
	_ middleware.ResponseHandler = (*Handler)(nil)
)

var handlerSeq atomic.Uint64

// failureBody is the body of the reply of a failed plugin (fail closed).
const failureBody = `{"error":"plugin failed"}`

// FailureReply is the 500 answer of a failed plugin that fails closed. The
// proxy sends it when OnResponse returns an error.
func FailureReply() *middleware.Reply {
	return &middleware.Reply{
		Status:  500,
		Headers: [][2]string{{"Content-Type", "application/json"}},
		Body:    []byte(failureBody),
	}
}

// FailureReplyFor is the answer to a request whose plugin failed with
// reason (Error.Reason) and fails closed: 504 when the guest ran out of
// time, 503 (with Retry-After) when the entry was at its concurrency limit
// or had no instance free in time, FailureReply otherwise.
func FailureReplyFor(reason string) *middleware.Reply {
	switch reason {
	case "timeout":
		return &middleware.Reply{
			Status:  504,
			Headers: [][2]string{{"Content-Type", "application/json"}},
			Body:    []byte(`{"error":"plugin timed out"}`),
		}
	case "overloaded", "busy":
		return &middleware.Reply{
			Status:  503,
			Headers: [][2]string{{"Content-Type", "application/json"}, {"Retry-After", "1"}},
			Body:    []byte(`{"error":"plugin overloaded"}`),
		}
	}
	return FailureReply()
}

// Entry is what a `name: wasm` entry gives its handler.
type Entry struct {
	Path           string
	Config         map[string]any
	FailOpen       bool
	MaxConcurrency int
	MaxQueue       int
}

// policyName is the name under which the handler reports rejections.
const policyName = "wasm"

// New builds the policy of a `name: wasm` entry: cfg.Path is the
// .wasm file (relative to the working directory), cfg.Config is handed to
// the guest as JSON (get_config) and cfg.FailOpen decides what a failing
// plugin does to the request. The plugin is compiled (or taken from m's
// cache) and one instance started, so that a broken plugin fails the
// snapshot build rather than requests. cfg.MaxConcurrency bounds the
// guest calls running at once on the workers (default: the CPUs the
// process may use, at most 16; see workerPool) and
// cfg.MaxQueue the calls waiting for one of them (default 1024), each for
// at most the call deadline: others are refused (reason "overloaded").
func New(m *Manager, cfg Entry, route string, rep middleware.Reporter) (*Handler, error) {
	if m == nil {
		return nil, errors.New("wasm: no plugin manager")
	}
	if cfg.Path == "" {
		return nil, errors.New("wasm: path is required")
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("wasm: path: %w", err)
	}
	conf, err := encodeConfig(cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	conc, queue := cfg.MaxConcurrency, cfg.MaxQueue
	if conc <= 0 {
		conc = m.opts.MaxConcurrency
	}
	if queue <= 0 {
		queue = defaultMaxQueue
	}
	h := &Handler{
		mgr:      m,
		path:     abs,
		route:    route,
		failOpen: cfg.FailOpen,
		rep:      rep,
		log:      m.log,
		config:   conf,
		key:      fmt.Sprintf("rustygate.plugins.wasm#%d", handlerSeq.Add(1)),
		lim:      newLimiter(conc, queue, m.opts.Timeout),
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("wasm: %w", errManagerClosed)
	}
	m.startWorkersLocked()
	if m.current[abs] != nil {
		// A configuration reload picks up a changed file even without
		// Watch; if the file is now broken, the running version stays
		// (reloadLocked logs why).
		_ = m.reloadLocked(abs)
	}
	c, err := m.loadLocked(abs)
	if err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	mod := h.newModule(c)
	if err := mod.prewarm(); err != nil {
		mod.Close()
		return nil, fmt.Errorf("wasm: %s: %w", cfg.Path, startError(err, m.opts))
	}
	h.cur.Store(mod)
	if m.handlers[abs] == nil {
		m.handlers[abs] = map[*Handler]struct{}{}
	}
	m.handlers[abs][h] = struct{}{}
	return h, nil
}

// newModule makes a pool for c with h's configuration. It takes a
// reference on c, dropped when the pool is closed and drained.
func (h *Handler) newModule(c *compiled) *module {
	h.mgr.cacheMu.Lock()
	c.refs++
	h.mgr.cacheMu.Unlock()
	mod := newModule(c, h.mgr.rt, h.lim, h.mgr.pool, &h.mgr.opts, h.log, h.config, h.path, h.route, h.key)
	mod.created = &h.mgr.created
	mod.mem = h.mgr.mem
	return mod
}

// Path is the absolute path of the plugin file.
func (h *Handler) Path() string { return h.path }

// Running is the number of guest calls of the handler holding a
// concurrency slot: running, or past their deadline and not stopped yet.
func (h *Handler) Running() int { return h.lim.running() }

// Handle implements middleware.Handler. r must implement Exchange. It
// returns the guest's own answer (next=0), or nil to forward the request;
// when the guest fails it returns FailureReply, or nil with fail_open.
func (h *Handler) Handle(r middleware.Request) *middleware.Reply {
	ex, ok := r.(Exchange)
	if !ok {
		return h.fail(r, &Error{Reason: "unsupported", Err: fmt.Errorf("request type %T does not implement plugins.Exchange", r)})
	}
	reply, err := h.OnRequest(ex)
	if err != nil {
		return h.fail(r, err)
	}
	if reply != nil && reply.Status >= 400 {
		h.rep.Rejected(policyName, h.route, "denied", r.PeerIP())
	}
	return reply
}

// OnRequest runs the guest's handle_request on the current version of the
// plugin, without the fail_open policy (Handle applies it).
func (h *Handler) OnRequest(ex Exchange) (*middleware.Reply, error) {
	for {
		mod := h.cur.Load()
		reply, err := mod.OnRequest(ex)
		if err == errClosed && !h.closed.Load() && h.cur.Load() != mod {
			continue // swapped between Load and the call: use the new one
		}
		return reply, err
	}
}

// ResponseNeeds tells the proxy, after Handle returned nil, whether it must
// call OnResponse for this request (NeedResponse) and whether it must buffer
// the whole response body first (NeedBody: the guest enabled
// buffer_response). NeedNone when the guest does not export
// handle_response, answered itself, or failed.
func (h *Handler) ResponseNeeds(ex Exchange) ResponseNeeds {
	return responseNeeds(ex, h.key)
}

// OnResponse runs the guest's handle_response. The proxy calls it, for each
// wasm handler whose ResponseNeeds was not NeedNone, in the reverse order of
// the chain, once the response (the backend's, or the proxy's own error
// response, with ResponseIsError true) is known and before its head is sent
// to the client; with NeedBody, after the body was buffered. It must be
// called for every such request, even when the backend failed: a guest that
// returned a request context keeps its instance until then.
//
// On failure it reports and logs, and returns an error only when the
// handler fails closed: the proxy then sends FailureReply instead of the
// response. With fail_open it returns nil and the response goes on.
func (h *Handler) OnResponse(ex Exchange) error {
	for {
		mod := h.cur.Load()
		err := mod.OnResponse(ex)
		if err == errClosed && !h.closed.Load() && h.cur.Load() != mod {
			continue
		}
		if err == nil {
			return nil
		}
		ex.SetValue(h.key, nil)
		if h.fail(ex, err) == nil {
			return nil
		}
		return err
	}
}

// ResponseFailure is FailureReply: what the client gets when OnResponse
// fails closed.
func (h *Handler) ResponseFailure() *middleware.Reply { return FailureReply() }

// fail reports and logs a plugin failure and returns what Handle returns.
func (h *Handler) fail(r middleware.Request, err error) *middleware.Reply {
	reason := "error"
	var pe *Error
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	h.rep.Rejected(policyName, h.route, reason, r.PeerIP())
	h.logFailure(err)
	if h.failOpen {
		return nil
	}
	return FailureReplyFor(reason)
}

// logFailure logs at most one failure a second per handler, with the
// count of those it left out.
func (h *Handler) logFailure(err error) {
	now := time.Now().UnixNano()
	last := h.lastLog.Load()
	if now-last < int64(time.Second) || !h.lastLog.CompareAndSwap(last, now) {
		h.suppressed.Add(1)
		return
	}
	h.log.Warn("wasm plugin failed", "route", h.route, "plugin", h.path,
		"fail_open", h.failOpen, "error", err, "suppressed", h.suppressed.Swap(0))
}

// Close implements middleware.Closer: the snapshot closes the handler when
// no request uses it any more.
func (h *Handler) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	m := h.mgr
	m.mu.Lock()
	if hs := m.handlers[h.path]; hs != nil {
		delete(hs, h)
		if len(hs) == 0 {
			delete(m.handlers, h.path)
		}
	}
	mod := h.cur.Load()
	m.mu.Unlock()
	return mod.Close()
}

// shutdown closes the handler's pool when the Manager closes.
func (h *Handler) shutdown() {
	h.closed.Store(true)
	if mod := h.cur.Load(); mod != nil {
		mod.Close()
	}
}
