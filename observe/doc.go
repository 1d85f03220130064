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
// recording without allocation). Tracing is the gateway's own, not the
// OpenTelemetry SDK's span objects: tracing.go builds the [Tracer] (its
// resource and exporter), span.go the [Span] handles the proxy reuses
// from request to request and sampling.go the SDK's samplers and W3C
// traceparent parsing without allocation; a sampled span fills a pooled
// spanRecord (spanrecord.go), which spanqueue.go exports: a bounded queue
// the request path never waits on, cut into batches by one goroutine and
// sent by four workers, its exported and dropped spans counted
// ([Metrics.RegisterTracing]). otlpencode.go writes OTLP/HTTP protobuf
// straight from the records (the SDK's exporter's bytes); OTLP/gRPC goes
// through the SDK's exporter. The attributes are derived from the records
// on the exporter's goroutines, never on the event loops.
// The metrics know no middleware by name: each middleware declares the
// counter of the requests it rejects ([Metrics.DeclareRejections]) and
// [RouteMetrics.Rejected] counts into the family declared for the
// reporting policy.
package observe
