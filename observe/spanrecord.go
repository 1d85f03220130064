package observe

import (
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// spanRecord is a sampled span as the exporter needs it: ids, times, and
// the raw request fields its attributes are derived from, off the event
// loops, when the span is exported. Records are recycled (recordPool):
// a traced request allocates none once the pool is warm. The byte fields
// (method, target, host, user agent) are copied into buf, as the request
// buffers they come from are reused; the strings are immutable and kept.
type spanRecord struct {
	traceID      [16]byte
	spanID       [8]byte
	parentID     [8]byte // zero: a root span
	flags        byte    // W3C trace flags
	parentRemote bool
	client       bool
	start, end   int64 // Unix nanoseconds
	status       int   // 0: no response
	attempt      int   // client: resend count

	route, backend, clientIP, scheme, proto, errMsg, traceState string

	buf                      []byte
	method, target, host, ua span16 // in buf
}

// span16 is a part of spanRecord.buf.
type span16 struct{ off, n uint16 }

// maxRecordField bounds what a record keeps of one request field (a
// longer target or user agent is cut: attribute values are bounded
// anyway by collectors).
const maxRecordField = 4096

// maxRecordBuf is the capacity beyond which a recycled record's buffer
// is dropped rather than kept.
const maxRecordBuf = 16 << 10

var recordPool = sync.Pool{New: func() any { return &spanRecord{buf: make([]byte, 0, 256)} }}

// newRecord returns an empty record from the pool.
func newRecord() *spanRecord {
	return recordPool.Get().(*spanRecord)
}

// recycle returns r to the pool.
func (r *spanRecord) recycle() {
	buf := r.buf[:0]
	if cap(buf) > maxRecordBuf {
		buf = nil
	}
	*r = spanRecord{buf: buf}
	recordPool.Put(r)
}

// put copies b into the record's buffer.
func (r *spanRecord) put(b []byte) span16 {
	b = b[:min(len(b), maxRecordField)]
	s := span16{uint16(len(r.buf)), uint16(len(b))}
	if len(r.buf)+len(b) > 0xffff {
		return span16{}
	}
	r.buf = append(r.buf, b...)
	return s
}

// putString is put for a string.
func (r *spanRecord) putString(v string) span16 {
	v = v[:min(len(v), maxRecordField)]
	s := span16{uint16(len(r.buf)), uint16(len(v))}
	if len(r.buf)+len(v) > 0xffff {
		return span16{}
	}
	r.buf = append(r.buf, v...)
	return s
}

// str returns a part of the buffer as a string: without copying when
// borrow is set (then valid only while the record is not recycled).
func (r *spanRecord) str(s span16, borrow bool) string {
	if s.n == 0 {
		return ""
	}
	b := r.buf[s.off : s.off+s.n]
	if borrow {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

// failed reports whether the span ends in error, and its error.type: a
// server span is an error when status is 5xx or no response was sent
// after a failure; a client span when status is 4xx or 5xx or errMsg is
// set.
func (r *spanRecord) failed() (bool, string) {
	var failed bool
	if r.client {
		failed = r.status >= 400 || r.errMsg != ""
	} else {
		failed = r.status >= 500 || (r.status <= 0 && r.errMsg != "")
	}
	if !failed {
		return false, ""
	}
	if r.errMsg != "" {
		return true, r.errMsg
	}
	return true, codeLabels[codeSlot(r.status)]
}

// appendAttrs appends the span's attributes, in the order the exporter
// sends them; borrow as for str.
func (r *spanRecord) appendAttrs(a []attribute.KeyValue, borrow bool) []attribute.KeyValue {
	if r.client {
		a = r.clientAttrs(a, borrow)
	} else {
		a = r.serverAttrs(a, borrow)
	}
	if r.status > 0 {
		a = append(a, semconv.HTTPResponseStatusCode(r.status))
	}
	if failed, errType := r.failed(); failed {
		a = append(a, semconv.ErrorTypeKey.String(errType))
	}
	return a
}

// serverAttrs appends the request attributes of a server span.
func (r *spanRecord) serverAttrs(a []attribute.KeyValue, borrow bool) []attribute.KeyValue {
	a = appendMethod(a, r.str(r.method, borrow))
	if r.route != "" {
		a = append(a, semconv.HTTPRoute(r.route))
	}
	a = append(a, semconv.URLPath(targetPath(r.str(r.target, borrow))))
	if r.scheme != "" {
		a = append(a, semconv.URLScheme(r.scheme))
	}
	if h, port := splitHostPort(r.str(r.host, borrow), r.scheme); h != "" {
		a = append(a, semconv.ServerAddress(h))
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	if r.clientIP != "" {
		a = append(a, semconv.ClientAddress(r.clientIP))
	}
	if v := protocolVersion(r.proto); v != "" {
		a = append(a, semconv.NetworkProtocolVersion(v))
	}
	if r.ua.n > 0 {
		a = append(a, semconv.UserAgentOriginal(r.str(r.ua, borrow)))
	}
	return a
}

// clientAttrs appends the request attributes of an attempt span.
func (r *spanRecord) clientAttrs(a []attribute.KeyValue, borrow bool) []attribute.KeyValue {
	a = appendMethod(a, r.str(r.method, borrow))
	scheme, hostport := splitURL(r.backend)
	if h, port := splitHostPort(hostport, scheme); h != "" {
		a = append(a, semconv.ServerAddress(h))
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	a = append(a, semconv.URLFull(r.backend))
	if r.attempt > 0 {
		a = append(a, semconv.HTTPRequestResendCount(r.attempt))
	}
	a = append(a, attrBackend.String(r.backend))
	if r.route != "" {
		a = append(a, attrRoute.String(r.route))
	}
	return a
}

// appendName appends the span's name: "METHOD route" for a server span
// ("METHOD" without a route, "HTTP" for a method the conventions do not
// name), as the HTTP semantic conventions name them; AttemptSpanName for
// an attempt.
func (r *spanRecord) appendName(dst []byte) []byte {
	if r.client {
		return append(dst, AttemptSpanName...)
	}
	m := r.buf[r.method.off : r.method.off+r.method.n]
	if isKnownMethod(unsafe.String(unsafe.SliceData(m), len(m))) {
		dst = append(dst, m...)
	} else {
		dst = append(dst, "HTTP"...)
	}
	if r.route != "" {
		dst = append(dst, ' ')
		dst = append(dst, r.route...)
	}
	return dst
}

// kind is the span's kind.
func (r *spanRecord) kind() trace.SpanKind {
	if r.client {
		return trace.SpanKindClient
	}
	return trace.SpanKindServer
}

// spanOrigin is what every span of a Tracer shares: its resource and
// instrumentation scope.
type spanOrigin struct {
	res   *resource.Resource
	scope instrumentation.Scope
}

// readOnly returns the record as the SDK's ReadOnlySpan, for the SDK's
// exporters (OTLP/gRPC) and the tests; it copies what it keeps.
func (o *spanOrigin) readOnly(r *spanRecord) sdktrace.ReadOnlySpan {
	ts, _ := trace.ParseTraceState(r.traceState)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: r.traceID, SpanID: r.spanID, TraceFlags: trace.TraceFlags(r.flags), TraceState: ts,
	})
	var parent trace.SpanContext
	if r.parentID != ([8]byte{}) {
		parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: r.traceID, SpanID: r.parentID, Remote: r.parentRemote,
		})
	}
	stub := tracetest.SpanStub{
		Name:                 string(r.appendName(nil)),
		SpanContext:          sc,
		Parent:               parent,
		SpanKind:             r.kind(),
		StartTime:            time.Unix(0, r.start),
		EndTime:              time.Unix(0, r.end),
		Attributes:           r.appendAttrs(nil, false),
		Resource:             o.res,
		InstrumentationScope: o.scope,
	}
	if failed, _ := r.failed(); failed {
		stub.Status = sdktrace.Status{Code: codes.Error, Description: r.errMsg}
	}
	return stub.Snapshot()
}
