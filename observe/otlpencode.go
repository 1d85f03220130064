package observe

import (
	"math"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP/HTTP exporter writes the protobuf ExportTraceServiceRequest
// (opentelemetry/proto/collector/trace/v1) straight from the ended spans
// into one reused buffer, where the SDK's exporter builds a tree of
// generated messages per batch and then marshals it: the encoding is the
// same (TestOTLPEncodingMatchesSDK), its cost a fraction.

// Field numbers of the OTLP trace messages.
const (
	fReqResourceSpans = 1 // ExportTraceServiceRequest

	fRSResource   = 1 // ResourceSpans
	fRSScopeSpans = 2
	fRSSchemaURL  = 3

	fResAttributes = 1 // Resource

	fSSScope     = 1 // ScopeSpans
	fSSSpans     = 2
	fSSSchemaURL = 3

	fScopeName       = 1 // InstrumentationScope
	fScopeVersion    = 2
	fScopeAttributes = 3

	fSpanTraceID       = 1 // Span
	fSpanSpanID        = 2
	fSpanTraceState    = 3
	fSpanParentSpanID  = 4
	fSpanName          = 5
	fSpanKind          = 6
	fSpanStart         = 7
	fSpanEnd           = 8
	fSpanAttributes    = 9
	fSpanDroppedAttrs  = 10
	fSpanEvents        = 11
	fSpanDroppedEvents = 12
	fSpanLinks         = 13
	fSpanDroppedLinks  = 14
	fSpanStatus        = 15
	fSpanFlags         = 16

	fEventTime        = 1 // Span.Event
	fEventName        = 2
	fEventAttributes  = 3
	fEventDroppedAttr = 4

	fLinkTraceID     = 1 // Span.Link
	fLinkSpanID      = 2
	fLinkTraceState  = 3
	fLinkAttributes  = 4
	fLinkDroppedAttr = 5
	fLinkFlags       = 6

	fStatusMessage = 2 // Status
	fStatusCode    = 3

	fKVKey   = 1 // KeyValue
	fKVValue = 2

	fAnyString = 1 // AnyValue
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fAnyKVList = 6
	fAnyBytes  = 7

	fListValues = 1 // ArrayValue, KeyValueList

	// SpanFlags: the parent's remoteness is known, and is remote.
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// beginMsg appends the tag of an embedded message; endMsg, given the
// offset beginMsg returned, inserts its length once it is written.
func beginMsg(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return b, len(b)
}

func endMsg(b []byte, start int) []byte {
	n := len(b) - start
	sz := protowire.SizeVarint(uint64(n))
	for range sz {
		b = append(b, 0)
	}
	copy(b[start+sz:], b[start:start+n])
	protowire.AppendVarint(b[start:start], uint64(n))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendUvarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// clampCount is a dropped count as the uint32 of OTLP.
func clampCount(n int) uint64 { return uint64(min(max(n, 0), math.MaxUint32)) }

// appendTraceRequest appends the ExportTraceServiceRequest of spans,
// grouped by resource, then by instrumentation scope, in the order they
// first appear.
func appendTraceRequest(b []byte, spans []sdktrace.ReadOnlySpan) []byte {
	for i, s := range spans {
		if s == nil || firstOfResource(spans[:i], s.Resource()) {
			continue
		}
		b = appendResourceSpans(b, spans[i:], s.Resource())
	}
	return b
}

// firstOfResource reports whether a span of before has resource r (so
// that r's spans are already written).
func firstOfResource(before []sdktrace.ReadOnlySpan, r *resource.Resource) bool {
	for _, s := range before {
		if s != nil && sameResource(s.Resource(), r) {
			return true
		}
	}
	return false
}

func sameResource(a, b *resource.Resource) bool {
	return a == b || (a != nil && b != nil && a.Equivalent() == b.Equivalent())
}

// appendResourceSpans writes the spans of spans (the first one included)
// that have resource r.
func appendResourceSpans(b []byte, spans []sdktrace.ReadOnlySpan, r *resource.Resource) []byte {
	b, rs := beginMsg(b, fReqResourceSpans)
	if r != nil {
		var res int
		b, res = beginMsg(b, fRSResource)
		b = appendAttrIter(b, fResAttributes, r.Iter())
		b = endMsg(b, res)
	}
	for i, s := range spans {
		if s == nil || !sameResource(s.Resource(), r) || scopeSeen(spans[:i], r, s.InstrumentationScope()) {
			continue
		}
		b = appendScopeSpans(b, spans[i:], r, s.InstrumentationScope())
	}
	if r != nil {
		b = appendString(b, fRSSchemaURL, r.SchemaURL())
	}
	return endMsg(b, rs)
}

func scopeSeen(before []sdktrace.ReadOnlySpan, r *resource.Resource, sc instrumentation.Scope) bool {
	for _, s := range before {
		if s != nil && sameResource(s.Resource(), r) && s.InstrumentationScope() == sc {
			return true
		}
	}
	return false
}

func appendScopeSpans(b []byte, spans []sdktrace.ReadOnlySpan, r *resource.Resource, sc instrumentation.Scope) []byte {
	b, ss := beginMsg(b, fRSScopeSpans)
	if sc != (instrumentation.Scope{}) {
		var m int
		b, m = beginMsg(b, fSSScope)
		b = appendString(b, fScopeName, sc.Name)
		b = appendString(b, fScopeVersion, sc.Version)
		b = appendAttrIter(b, fScopeAttributes, sc.Attributes.Iter())
		b = endMsg(b, m)
	}
	for _, s := range spans {
		if s != nil && sameResource(s.Resource(), r) && s.InstrumentationScope() == sc {
			b = appendSpan(b, s)
		}
	}
	b = appendString(b, fSSSchemaURL, sc.SchemaURL)
	return endMsg(b, ss)
}

// appendSpan writes one Span message.
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	b, m := beginMsg(b, fSSSpans)
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	b = appendString(b, fSpanTraceState, sc.TraceState().String())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, fSpanParentSpanID, psid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	b = appendUvarint(b, fSpanKind, uint64(spanKind(s.SpanKind())))
	b = appendFixed64(b, fSpanStart, uint64(max(0, s.StartTime().UnixNano())))
	b = appendFixed64(b, fSpanEnd, uint64(max(0, s.EndTime().UnixNano())))
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	b = appendUvarint(b, fSpanDroppedAttrs, clampCount(s.DroppedAttributes()))
	for _, e := range s.Events() {
		var em int
		b, em = beginMsg(b, fSpanEvents)
		b = appendFixed64(b, fEventTime, uint64(max(0, e.Time.UnixNano())))
		b = appendString(b, fEventName, e.Name)
		for _, kv := range e.Attributes {
			b = appendKeyValue(b, fEventAttributes, kv)
		}
		b = appendUvarint(b, fEventDroppedAttr, clampCount(e.DroppedAttributeCount))
		b = endMsg(b, em)
	}
	b = appendUvarint(b, fSpanDroppedEvents, clampCount(s.DroppedEvents()))
	for _, l := range s.Links() {
		b = appendLink(b, l)
	}
	b = appendUvarint(b, fSpanDroppedLinks, clampCount(s.DroppedLinks()))
	b = appendStatus(b, s.Status())
	b = appendFixed32(b, fSpanFlags, spanFlags(sc.TraceFlags(), parent))
	return endMsg(b, m)
}

func appendLink(b []byte, l sdktrace.Link) []byte {
	b, m := beginMsg(b, fSpanLinks)
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	b = appendBytes(b, fLinkTraceID, tid[:])
	b = appendBytes(b, fLinkSpanID, sid[:])
	b = appendString(b, fLinkTraceState, l.SpanContext.TraceState().String())
	for _, kv := range l.Attributes {
		b = appendKeyValue(b, fLinkAttributes, kv)
	}
	b = appendUvarint(b, fLinkDroppedAttr, clampCount(l.DroppedAttributeCount))
	b = appendFixed32(b, fLinkFlags, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
	return endMsg(b, m)
}

// appendStatus writes the Status, always present (as the SDK's exporter
// sends it).
func appendStatus(b []byte, st sdktrace.Status) []byte {
	b, m := beginMsg(b, fSpanStatus)
	b = appendString(b, fStatusMessage, st.Description)
	var code uint64 // STATUS_CODE_UNSET
	switch st.Code {
	case codes.Ok:
		code = 1
	case codes.Error:
		code = 2
	}
	b = appendUvarint(b, fStatusCode, code)
	return endMsg(b, m)
}

// spanFlags are the W3C trace flags and whether the parent is remote.
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | flagHasIsRemote
	if parent.IsRemote() {
		f |= flagIsRemote
	}
	return f
}

// spanKind maps a span kind to OTLP's SpanKind (the same numbers; an
// unknown kind is unspecified).
func spanKind(k trace.SpanKind) trace.SpanKind {
	if k < trace.SpanKindInternal || k > trace.SpanKindConsumer {
		return trace.SpanKindUnspecified
	}
	return k
}

func appendAttrIter(b []byte, num protowire.Number, it attribute.Iterator) []byte {
	for it.Next() {
		b = appendKeyValue(b, num, it.Attribute())
	}
	return b
}

func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	b, m := beginMsg(b, num)
	b = appendString(b, fKVKey, string(kv.Key))
	b = appendAnyValue(b, fKVValue, kv.Value)
	return endMsg(b, m)
}

// appendAnyValue writes an AnyValue (always present, as the SDK's
// exporter sends it, even for an empty value).
func appendAnyValue(b []byte, num protowire.Number, v attribute.Value) []byte {
	b, m := beginMsg(b, num)
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
		b = protowire.AppendString(b, v.AsString())
	case attribute.BYTESLICE:
		b = appendBytes(b, fAnyBytes, v.AsByteSlice())
	case attribute.BOOLSLICE:
		b = appendArray(b, len(v.AsBoolSlice()), func(i int) attribute.Value { return attribute.BoolValue(v.AsBoolSlice()[i]) })
	case attribute.INT64SLICE:
		b = appendArray(b, len(v.AsInt64Slice()), func(i int) attribute.Value { return attribute.Int64Value(v.AsInt64Slice()[i]) })
	case attribute.FLOAT64SLICE:
		b = appendArray(b, len(v.AsFloat64Slice()), func(i int) attribute.Value { return attribute.Float64Value(v.AsFloat64Slice()[i]) })
	case attribute.STRINGSLICE:
		b = appendArray(b, len(v.AsStringSlice()), func(i int) attribute.Value { return attribute.StringValue(v.AsStringSlice()[i]) })
	case attribute.SLICE:
		vals := v.AsSlice()
		b = appendArray(b, len(vals), func(i int) attribute.Value { return vals[i] })
	case attribute.MAP:
		var l int
		b, l = beginMsg(b, fAnyKVList)
		for _, kv := range v.AsMap() {
			b = appendKeyValue(b, fListValues, kv)
		}
		b = endMsg(b, l)
	case attribute.EMPTY:
	default:
		b = appendString(b, fAnyString, "INVALID")
	}
	return endMsg(b, m)
}

// appendArray writes an ArrayValue of n values (slices are the rare
// case: a closure is fine).
func appendArray(b []byte, n int, at func(int) attribute.Value) []byte {
	b, m := beginMsg(b, fAnyArray)
	for i := range n {
		b = appendAnyValue(b, fListValues, at(i))
	}
	return endMsg(b, m)
}
