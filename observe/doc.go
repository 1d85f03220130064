// Package observe owns RustyGate's observability output.
//
// Today that is logging: the process log (log/slog, JSON or text) and the
// per-request access log, both written into one buffered output stream by a
// [Logger], plus [RequestIDs], the allocation-free request id generator.
// The access log sits on the proxy's request path, so [Logger.Access] builds
// each line with hand-written appenders into pooled buffers and allocates
// nothing.
//
// Metrics and tracing will live in this package too.
package observe
