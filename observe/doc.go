// Package observe owns RustyGate's observability output.
//
// Today that is logging: the process log (log/slog, JSON or text) and the
// per-request access log, both written into one buffered output stream by a
// [Logger], plus [RequestIDs], the allocation-free request id generator.
// The access log sits on the proxy's request path, so [Logger.Access] builds
// each line with hand-written appenders into pooled buffers and allocates
// nothing.
//
// It also holds the Prometheus metrics ([Metrics]: per route, backends,
// reloads, the datapath, the l4 listeners, and the HTTPS listener's
// handshakes, client certificate failures and certificate expiry dates,
// see [Metrics.TLS] and [Metrics.RegisterCertificates]) and tracing
// ([Tracer]). An access line over TLS carries tls_version and sni, that of
// a gRPC call its grpc_status (also counted by
// rustygate_grpc_requests_total).
//
// [Metrics] holds the Prometheus metrics (per-route handles resolved once,
// recording without allocation), tracing.go the OpenTelemetry spans and
// spanqueue.go their export: a bounded queue the request path never waits
// on, emptied in batches by one goroutine, its exported and dropped spans
// counted ([Metrics.RegisterTracing]).
// The metrics know no middleware by name: each middleware declares the
// counter of the requests it rejects ([Metrics.DeclareRejections]) and
// [RouteMetrics.Rejected] counts into the family declared for the
// reporting policy.
package observe
