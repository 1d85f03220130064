// Package plugins runs request policies written as WebAssembly guests that
// follow the http-wasm HTTP handler ABI (https://http-wasm.io/http-handler-abi/).
//
// A Manager owns one wazero runtime: it compiles .wasm files off the request
// path (caching compiled code by path and content hash), and, when asked to
// Watch a directory, recompiles changed files and swaps them into the
// handlers that use them. A Handler is the middleware.Handler (and
// middleware.ResponseHandler) of one `name: wasm` entry of a route, built
// by the wasm module (l7/middleware/wasm): it runs the guest's handle_request on each
// request and, when the request was forwarded, its handle_response once the
// proxy has the response. Check validates a plugin file as a Manager loads
// and starts it, for `rustygate validate`.
//
// Guests are WASI commands (they export _start: their main registers the
// handler, as TinyGo guests do) or reactors (they export _initialize).
// Each instance runs its start function once, when it is created; a main
// ending with proc_exit(0) has started it.
//
// A guest instance is not safe for concurrent use, so each Handler keeps a
// bounded pool of instances, created on demand. Every instance has a memory
// cap; an instance that trapped, timed out or returned nonsense is closed and
// never reused. New instances of a guest whose calls keep reaching their
// deadline start with a growing delay (see module.overran).
//
// Guests are isolated from the rest of the process (see worker.go): each
// Handler bounds its guest calls running at once on workers (max_concurrency,
// a call past its deadline counting until its guest has stopped) and those
// waiting for a slot (max_queue); a request spends at most the call deadline in a
// call, waiting included, and returns at the deadline even if its guest still
// runs on a worker. Each guest is instrumented before it is compiled (see
// instrument): it comes back to the host every 1000 loop iterations or
// function entries, where the deadline is checked and the runtime may
// preempt it. New and misbehaving guests run on dedicated, deprioritised
// worker threads, with Ps added to GOMAXPROCS for them while they work, so
// that a looping guest cannot take the CPU or the Ps of other routes. The
// deadlines of calls on the workers, and the demotion of their threads, run
// on a watchdog that sleeps in the kernel, not on Go timers: a
// deprioritised guest's thread may hold the P a Go timer is on. A trusted
// guest's call on an idle instance runs on the proxy's event loop; before
// anything that may wait (a slot, an instance, a worker, a request body),
// the exchange leaves its loop (Exchange.Offload), and so does a trusted
// guest's call that runs past the demotion delay.
// The package must not hold a request past its deadline, nor let a guest
// touch a request it has left.
package plugins
