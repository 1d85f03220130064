package observe

import (
	"math"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP/HTTP exporter writes the protobuf ExportTraceServiceRequest
// (opentelemetry/proto/collector/trace/v1) straight from the span records
// into one reused buffer, where the SDK's exporter builds a tree of
// generated messages per batch and then marshals it: the encoding is the
// same as the SDK's for the same spans (TestOTLPEncodingMatchesSDK), its
// cost a fraction.

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

// beginMsg appends the tag of an embedded message and one byte for its
// length; endMsg, given the offset beginMsg returned, writes the length
// once the message is written, moving it only when the length takes
// more than one byte (messages over 127 bytes).
func beginMsg(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0), len(b) + 1
}

func endMsg(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	sz := protowire.SizeVarint(uint64(n))
	for range sz - 1 {
		b = append(b, 0)
	}
	copy(b[start-1+sz:], b[start:start+n])
	protowire.AppendVarint(b[start-1:start-1], uint64(n))
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

// otlpEncoder writes the ExportTraceServiceRequest of span records: one
// ResourceSpans (the Tracer's resource) holding one ScopeSpans (its
// scope), as the SDK's exporter groups the same spans. The attributes
// of each span are derived from its record here, on the exporter's
// goroutine, and written as they come.
type otlpEncoder struct {
	origin *spanOrigin
	name   []byte
	out    []byte // the message being written, while attributes are
	// clients holds the encoded request attributes of attempt spans,
	// the same for every attempt on a backend from a route.
	clients map[clientAttrs][]byte
}

// clientAttrs is what the request attributes of an attempt span derive
// from.
type clientAttrs struct {
	backend, route, method string
	attempt                int
}

// maxClientAttrs bounds an encoder's cache of attempt attributes.
const maxClientAttrs = 256

// clientAttrBytes returns the encoded request attributes of attempt r.
func (e *otlpEncoder) clientAttrBytes(r *spanRecord) []byte {
	k := clientAttrs{r.backend, r.route, r.str(r.method, true), r.attempt}
	if b, ok := e.clients[k]; ok {
		return b
	}
	if len(e.clients) >= maxClientAttrs || e.clients == nil {
		e.clients = make(map[clientAttrs][]byte)
	}
	save := e.out
	e.out = nil
	r.clientAttrs(e, true)
	b := e.out
	e.out = save
	k.method = strings.Clone(k.method) // r's buffer is reused
	e.clients[k] = b
	return b
}

// str and int write an attribute of the span being written (attrWriter).
func (e *otlpEncoder) str(k attribute.Key, v string) {
	e.out = appendKeyString(e.out, fSpanAttributes, string(k), v)
}

func (e *otlpEncoder) int(k attribute.Key, v int64) {
	e.out = appendKeyInt(e.out, fSpanAttributes, string(k), v)
}

// appendRequest appends the request carrying recs.
func (e *otlpEncoder) appendRequest(b []byte, recs []*spanRecord) []byte {
	if len(recs) == 0 {
		return b
	}
	o := e.origin
	b, rs := beginMsg(b, fReqResourceSpans)
	if o.res != nil {
		var res int
		b, res = beginMsg(b, fRSResource)
		b = appendAttrIter(b, fResAttributes, o.res.Iter())
		b = endMsg(b, res)
	}
	b, ss := beginMsg(b, fRSScopeSpans)
	if o.scope != (instrumentation.Scope{}) {
		var m int
		b, m = beginMsg(b, fSSScope)
		b = appendString(b, fScopeName, o.scope.Name)
		b = appendString(b, fScopeVersion, o.scope.Version)
		b = appendAttrIter(b, fScopeAttributes, o.scope.Attributes.Iter())
		b = endMsg(b, m)
	}
	for _, r := range recs {
		b = e.appendSpan(b, r)
	}
	b = appendString(b, fSSSchemaURL, o.scope.SchemaURL)
	b = endMsg(b, ss)
	if o.res != nil {
		b = appendString(b, fRSSchemaURL, o.res.SchemaURL())
	}
	return endMsg(b, rs)
}

// appendSpan writes one Span message.
func (e *otlpEncoder) appendSpan(b []byte, r *spanRecord) []byte {
	b, m := beginMsg(b, fSSSpans)
	b = appendBytes(b, fSpanTraceID, r.traceID[:])
	b = appendBytes(b, fSpanSpanID, r.spanID[:])
	b = appendString(b, fSpanTraceState, r.traceState)
	if r.parentID != ([8]byte{}) {
		b = appendBytes(b, fSpanParentSpanID, r.parentID[:])
	}
	e.name = r.appendName(e.name[:0])
	b = appendBytes(b, fSpanName, e.name)
	b = appendUvarint(b, fSpanKind, uint64(r.kind()))
	b = appendFixed64(b, fSpanStart, uint64(max(0, r.start)))
	b = appendFixed64(b, fSpanEnd, uint64(max(0, r.end)))
	if r.client {
		b = append(b, e.clientAttrBytes(r)...)
	}
	e.out = b
	if !r.client {
		r.serverAttrs(e, true)
	}
	r.outcomeAttrs(e)
	b, e.out = e.out, nil
	b, st := beginMsg(b, fSpanStatus) // always present, as the SDK's exporter sends it
	if failed, _ := r.failed(); failed {
		b = appendString(b, fStatusMessage, r.errMsg)
		b = appendUvarint(b, fStatusCode, 2) // STATUS_CODE_ERROR
	}
	b = endMsg(b, st)
	flags := uint32(r.flags) | flagHasIsRemote
	if r.parentRemote {
		flags |= flagIsRemote
	}
	b = appendFixed32(b, fSpanFlags, flags)
	return endMsg(b, m)
}

func appendAttrIter(b []byte, num protowire.Number, it attribute.Iterator) []byte {
	for it.Next() {
		b = appendKeyValue(b, num, it.Attribute())
	}
	return b
}

func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	switch kv.Value.Type() {
	case attribute.STRING:
		return appendKeyString(b, num, string(kv.Key), kv.Value.AsString())
	case attribute.INT64:
		return appendKeyInt(b, num, string(kv.Key), kv.Value.AsInt64())
	}
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

// keySize is the size of a KeyValue's key field.
func keySize(k string) int {
	if k == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(k))
}

// appendKeyString writes a KeyValue of a string, its lengths computed
// beforehand (the common case: no length to insert afterwards).
func appendKeyString(b []byte, num protowire.Number, k, v string) []byte {
	anyLen := 1 + protowire.SizeBytes(len(v))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(keySize(k)+1+protowire.SizeBytes(anyLen)))
	b = appendString(b, fKVKey, k)
	b = protowire.AppendTag(b, fKVValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendKeyInt writes a KeyValue of an int64 as appendKeyString does.
func appendKeyInt(b []byte, num protowire.Number, k string, v int64) []byte {
	anyLen := 1 + protowire.SizeVarint(uint64(v))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(keySize(k)+1+protowire.SizeBytes(anyLen)))
	b = appendString(b, fKVKey, k)
	b = protowire.AppendTag(b, fKVValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}
