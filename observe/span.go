package observe

import (
	"context"
	"encoding/hex"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
)

// Span is a span of a proxied request: the server span of the request, or
// the client span of one attempt on a backend. A nil *Span is valid and
// does nothing. A Span is used by one goroutine at a time.
//
// A Span is a handle: its ids and the incoming trace state stay readable
// after End, and it can be reused for the next request (StartServer
// takes the Span to fill), as can the storage of its attempt spans, so
// that a traced request allocates nothing. A sampled span fills a
// spanRecord, handed to the export queue at End.
type Span struct {
	t       *Tracer
	rec     *spanRecord // nil: not sampled, or ended
	traceID [16]byte
	spanID  [8]byte
	flags   byte
	live    bool // started, not ended

	// The caller's context, propagated: its canonical tracestate (that
	// of the parent, only with a valid traceparent) and baggage.
	traceState string
	baggage    string
	route      string

	child *Span // storage of the server span's attempt spans
}

// ServerRequest is what a server span records of the request it traces.
// The byte slices are copied when the span starts (they may alias reused
// buffers); the strings are kept until the span is exported.
type ServerRequest struct {
	// Method and Target are the request's, Target as received.
	Method, Target []byte
	// Route is the matched route ("" when none), ClientIP the client's
	// address, Scheme "http" or "https", Proto the protocol as in
	// "HTTP/1.1".
	Route, ClientIP, Scheme, Proto string
}

// StartServer starts the server span of a request in s and returns it,
// or starts it in a new Span when s is nil; a nil Tracer returns nil.
// header looks a request header up by its lower-case name
// (case-insensitively, nil when absent), during the call only:
// "traceparent", "tracestate" and "baggage" give the caller's trace
// context, which becomes the parent; "host" and "user-agent" give
// attributes. A nil header is a request without headers.
// The span is named "METHOD route" (just "METHOD" without a route), as
// the HTTP semantic conventions name server spans. s's previous span and
// its attempts must be done with: their ids are overwritten.
func (t *Tracer) StartServer(s *Span, r *ServerRequest, header func(name string) []byte) *Span {
	if t == nil {
		return nil // inlined: tracing off costs the caller a nil check
	}
	return t.startServer(s, r, header)
}

func (t *Tracer) startServer(s *Span, r *ServerRequest, header func(name string) []byte) *Span {
	if s == nil {
		s = new(Span)
	}
	*s = Span{t: t, route: r.Route, live: true, child: s.child}
	var p parentContext
	if header != nil {
		p = parseTraceparent(header("traceparent"))
		if p.valid {
			s.traceState = parseTraceState(header("tracestate"))
		}
		s.baggage = parseBaggage(header("baggage"))
	}
	if p.valid {
		s.traceID = p.traceID
	} else {
		s.traceID = newTraceID()
	}
	s.spanID = newSpanID()
	s.flags = p.flags &^ flagSampled
	if !t.sampler.sample(&p, &s.traceID) {
		return s
	}
	s.flags |= flagSampled
	rec := newRecord()
	rec.traceID, rec.spanID, rec.flags = s.traceID, s.spanID, s.flags
	if p.valid {
		rec.parentID, rec.parentRemote = p.spanID, true
	}
	rec.traceState, rec.route, rec.clientIP, rec.scheme, rec.proto = s.traceState, r.Route, r.ClientIP, r.Scheme, r.Proto
	rec.method, rec.target = rec.put(r.Method), rec.put(r.Target)
	if header != nil {
		rec.host, rec.ua = rec.put(header("host")), rec.put(header("user-agent"))
	}
	rec.start = time.Now().UnixNano()
	s.rec = rec
	return s
}

// parseTraceState returns the canonical form of a tracestate header,
// "" when absent or invalid (the SDK's propagator ignores an invalid
// one). It allocates, but only for the requests that carry one.
func parseTraceState(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	ts, err := trace.ParseTraceState(string(h))
	if err != nil {
		return ""
	}
	return ts.String()
}

// parseBaggage returns the canonical form of a baggage header, "" when
// absent or without a valid member, as the SDK's propagator keeps it.
func parseBaggage(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	b, _ := baggage.Parse(string(h))
	return b.String()
}

// StartAttempt starts the client span of one attempt of the request on a
// backend, a child of s. backendURL is the backend as configured
// (http://host:port[/base]); attempt counts from 0, and a resend (attempt
// > 0) is recorded as http.request.resend_count. Inject the returned
// span into the request sent to the backend. The returned span lives in
// storage of s, reused by the next attempt once this one has ended.
func (s *Span) StartAttempt(backendURL string, attempt int, method []byte) *Span {
	if s == nil {
		return nil
	}
	return s.startAttempt(backendURL, attempt, method)
}

func (s *Span) startAttempt(backendURL string, attempt int, method []byte) *Span {
	c := s.child
	if c == nil || c.live {
		c = new(Span)
		s.child = c
	}
	*c = Span{
		t: s.t, traceID: s.traceID, spanID: newSpanID(), flags: s.flags, live: true,
		traceState: s.traceState, baggage: s.baggage, route: s.route,
	}
	// Every sampler decides an attempt as it decided its server span: the
	// parent-based ones follow it, the others decide on the same trace id.
	if s.flags&flagSampled == 0 {
		return c
	}
	rec := newRecord()
	rec.traceID, rec.spanID, rec.parentID, rec.flags = c.traceID, c.spanID, s.spanID, c.flags
	rec.client, rec.traceState, rec.route, rec.backend, rec.attempt = true, s.traceState, s.route, backendURL, attempt
	rec.method = rec.put(method)
	rec.start = time.Now().UnixNano()
	c.rec = rec
	return c
}

// AppendHeaders appends the span's trace context as HTTP/1.1 header
// lines: traceparent, and tracestate and baggage when there are any
// (baggage is the one the request came with). Inject the attempt span,
// so the backend's spans are its children. An unsampled span still
// propagates its trace id, flagged as not sampled.
func (s *Span) AppendHeaders(dst []byte) []byte {
	if s == nil {
		return dst
	}
	dst = append(dst, "traceparent: "...)
	dst = s.appendTraceparent(dst)
	dst = append(dst, '\r', '\n')
	if s.traceState != "" {
		dst = append(dst, "tracestate: "...)
		dst = append(dst, s.traceState...)
		dst = append(dst, '\r', '\n')
	}
	if s.baggage != "" {
		dst = append(dst, "baggage: "...)
		dst = append(dst, s.baggage...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// appendTraceparent appends the traceparent value of the span.
func (s *Span) appendTraceparent(dst []byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, s.traceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, s.spanID[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{s.flags})
}

// Inject writes the span's trace context through set, as AppendHeaders
// does (for a carrier other than an HTTP/1.1 head; it allocates the
// traceparent string).
func (s *Span) Inject(set func(name, value string)) {
	if s == nil || set == nil {
		return
	}
	var buf [55]byte
	set("traceparent", string(s.appendTraceparent(buf[:0])))
	if s.traceState != "" {
		set("tracestate", s.traceState)
	}
	if s.baggage != "" {
		set("baggage", s.baggage)
	}
}

// End ends the span with the response status (0 when none was received
// or sent) and errMsg, a short reason of a failure ("" when none). A
// server span is an error when status is 5xx or no response was sent
// after a failure; a client span when status is 4xx or 5xx or errMsg is
// set. An error sets error.type to errMsg, else to the status code, as
// the HTTP conventions have it, so errMsg should come from a small set.
// Ending a span twice does nothing the second time.
func (s *Span) End(status int, errMsg string) {
	if s != nil {
		s.end(status, errMsg)
	}
}

func (s *Span) end(status int, errMsg string) {
	s.live = false
	rec := s.rec
	if rec == nil {
		return
	}
	s.rec = nil
	rec.end = time.Now().UnixNano()
	rec.status, rec.errMsg = status, errMsg
	s.t.sink.push(rec)
}

// TraceID returns the span's trace id; ok is false when the span is not
// sampled (it is then not exported, so the id leads nowhere).
func (s *Span) TraceID() (id [16]byte, ok bool) {
	if s == nil || s.flags&flagSampled == 0 {
		return id, false
	}
	return s.traceID, true
}

// SpanID returns the span's id; ok is false when the span is not sampled.
func (s *Span) SpanID() (id [8]byte, ok bool) {
	if s == nil || s.flags&flagSampled == 0 {
		return id, false
	}
	return s.spanID, true
}

// AppendTraceID appends the trace id in lower-case hex (32 digits) to
// dst, or nothing when TraceID's ok is false. It allocates nothing when
// dst has room.
func (s *Span) AppendTraceID(dst []byte) []byte {
	if s == nil || s.flags&flagSampled == 0 {
		return dst
	}
	return hex.AppendEncode(dst, s.traceID[:])
}

// AppendSpanID appends the span id in lower-case hex (16 digits) to dst,
// or nothing when SpanID's ok is false.
func (s *Span) AppendSpanID(dst []byte) []byte {
	if s == nil || s.flags&flagSampled == 0 {
		return dst
	}
	return hex.AppendEncode(dst, s.spanID[:])
}

// Context returns a context holding the span's context and the incoming
// baggage, for code that starts spans of its own under it (with the
// OpenTelemetry API). It allocates.
func (s *Span) Context() context.Context {
	ctx := context.Background()
	if s == nil {
		return ctx
	}
	ts, _ := trace.ParseTraceState(s.traceState)
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: s.traceID, SpanID: s.spanID, TraceFlags: trace.TraceFlags(s.flags), TraceState: ts,
	}))
	if b, err := baggage.Parse(s.baggage); err == nil && b.Len() > 0 {
		ctx = baggage.ContextWithBaggage(ctx, b)
	}
	return ctx
}
