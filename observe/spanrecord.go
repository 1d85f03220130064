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

// attrWriter takes the attributes of a span, one at a time: the OTLP
// encoder writes them straight into its buffer, kvList collects them
// for the SDK.
type attrWriter interface {
	str(k attribute.Key, v string)
	int(k attribute.Key, v int64)
}

// kvList collects attributes.
type kvList struct{ a []attribute.KeyValue }

func (l *kvList) str(k attribute.Key, v string) { l.a = append(l.a, k.String(v)) }
func (l *kvList) int(k attribute.Key, v int64)  { l.a = append(l.a, k.Int64(v)) }

// writeAttrs gives w the span's attributes, in the order the exporter
// sends them; borrow as for str.
func (r *spanRecord) writeAttrs(w attrWriter, borrow bool) {
	if r.client {
		r.clientAttrs(w, borrow)
	} else {
		r.serverAttrs(w, borrow)
	}
	r.outcomeAttrs(w)
}

// outcomeAttrs gives w the attributes of the span's outcome, the last
// ones.
func (r *spanRecord) outcomeAttrs(w attrWriter) {
	if r.status > 0 {
		w.int(semconv.HTTPResponseStatusCodeKey, int64(r.status))
	}
	if failed, errType := r.failed(); failed {
		w.str(semconv.ErrorTypeKey, errType)
	}
}

// serverAttrs gives w the request attributes of a server span.
func (r *spanRecord) serverAttrs(w attrWriter, borrow bool) {
	writeMethod(w, r.str(r.method, borrow))
	if r.route != "" {
		w.str(semconv.HTTPRouteKey, r.route)
	}
	w.str(semconv.URLPathKey, targetPath(r.str(r.target, borrow)))
	if r.scheme != "" {
		w.str(semconv.URLSchemeKey, r.scheme)
	}
	writeServer(w, r.str(r.host, borrow), r.scheme)
	if r.clientIP != "" {
		w.str(semconv.ClientAddressKey, r.clientIP)
	}
	if v := protocolVersion(r.proto); v != "" {
		w.str(semconv.NetworkProtocolVersionKey, v)
	}
	if r.ua.n > 0 {
		w.str(semconv.UserAgentOriginalKey, r.str(r.ua, borrow))
	}
}

// clientAttrs gives w the request attributes of an attempt span.
func (r *spanRecord) clientAttrs(w attrWriter, borrow bool) {
	writeMethod(w, r.str(r.method, borrow))
	scheme, hostport := splitURL(r.backend)
	writeServer(w, hostport, scheme)
	w.str(semconv.URLFullKey, r.backend)
	if r.attempt > 0 {
		w.int(semconv.HTTPRequestResendCountKey, int64(r.attempt))
	}
	w.str(attrBackend, r.backend)
	if r.route != "" {
		w.str(attrRoute, r.route)
	}
}

// writeMethod gives w http.request.method, and the original method when
// it is not a known one.
func writeMethod(w attrWriter, m string) {
	if isKnownMethod(m) {
		w.str(semconv.HTTPRequestMethodKey, m)
		return
	}
	w.str(semconv.HTTPRequestMethodKey, "_OTHER")
	w.str(semconv.HTTPRequestMethodOriginalKey, m)
}

// writeServer gives w server.address and server.port of a Host header
// or URL authority.
func writeServer(w attrWriter, hostport, scheme string) {
	if h, port := splitHostPort(hostport, scheme); h != "" {
		w.str(semconv.ServerAddressKey, h)
		if port > 0 {
			w.int(semconv.ServerPortKey, int64(port))
		}
	}
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
	var attrs kvList
	r.writeAttrs(&attrs, false)
	stub := tracetest.SpanStub{
		Name:                 string(r.appendName(nil)),
		SpanContext:          sc,
		Parent:               parent,
		SpanKind:             r.kind(),
		StartTime:            time.Unix(0, r.start),
		EndTime:              time.Unix(0, r.end),
		Attributes:           attrs.a,
		Resource:             o.res,
		InstrumentationScope: o.scope,
	}
	if failed, _ := r.failed(); failed {
		stub.Status = sdktrace.Status{Code: codes.Error, Description: r.errMsg}
	}
	return stub.Snapshot()
}
