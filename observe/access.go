package observe

import (
	"strconv"
	"sync"
	"time"
)

// AccessEntry is one proxied request as the access log records it. The
// []byte fields may alias connection buffers: Access reads them only
// during the call.
type AccessEntry struct {
	Time   time.Time // request start
	Method []byte
	Path   []byte // request target as received (path + query)
	// UpstreamTarget is the target forwarded to the backend when a
	// middleware rewrote it (empty otherwise).
	UpstreamTarget []byte
	Proto          string
	Host           []byte
	Route          string // "" when no route matched
	Backend        string // "" when none was contacted
	Status         int
	Latency        time.Duration
	BytesIn        int64 // request body bytes read
	BytesOut       int64 // response body bytes written
	RequestID      []byte
	TraceID        []byte // hex trace id of the request's sampled server span, else empty
	SpanID         []byte // hex id of that server span, else empty
	ClientIP       string
	UserAgent      []byte
	Error          string // short reason when the proxy produced the status (e.g. "backend timeout"), else ""
	// TLSVersion ("1.2", "1.3") and SNI (the server name the client
	// sent, possibly empty) are set for requests over TLS only.
	TLSVersion string
	SNI        string
	// GRPCStatus is the grpc-status of a gRPC call ("0", "14"...): the
	// backend's, or the one the proxy answered with; "" for other
	// requests.
	GRPCStatus string
}

const (
	// lineBufSize is the initial capacity of a pooled line buffer.
	lineBufSize = 1 << 10
	// maxPooledLine bounds the buffers returned to the pool, so one huge
	// line does not pin its buffer forever.
	maxPooledLine = 64 << 10
)

var linePool = sync.Pool{
	New: func() any {
		b := make([]byte, 0, lineBufSize)
		return &b
	},
}

// Access writes one access line for e. It is a no-op when the access log
// is off (or l is nil) and allocates nothing. A zero e.Time stands for
// the current time.
func (l *Logger) Access(e *AccessEntry) {
	if l == nil || !l.access || e == nil {
		return
	}
	bp := linePool.Get().(*[]byte)
	b := (*bp)[:0]
	if l.text {
		b = appendAccessText(b, e)
	} else {
		b = appendAccessJSON(b, e)
	}
	l.write(b)
	if cap(b) <= maxPooledLine {
		*bp = b
		linePool.Put(bp)
	}
}

// accessTime is the time an access line reports, in UTC.
func accessTime(e *AccessEntry) time.Time {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC()
}

// appendAccessJSON appends e as one JSON line in the shape slog's
// JSONHandler gives an Info record with these attributes.
func appendAccessJSON(b []byte, e *AccessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Nano(b, accessTime(e))
	b = append(b, `","level":"INFO","msg":"access","method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	if len(e.UpstreamTarget) > 0 {
		b = append(b, `,"upstream_target":`...)
		b = appendJSONString(b, e.UpstreamTarget)
	}
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, e.Proto)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, e.Route)
	b = append(b, `,"backend":`...)
	b = appendJSONString(b, e.Backend)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"latency_ms":`...)
	b = appendMillis(b, e.Latency)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.RequestID)
	if len(e.TraceID) > 0 {
		b = append(b, `,"trace_id":`...)
		b = appendJSONString(b, e.TraceID)
	}
	if len(e.SpanID) > 0 {
		b = append(b, `,"span_id":`...)
		b = appendJSONString(b, e.SpanID)
	}
	b = append(b, `,"client_ip":`...)
	b = appendJSONString(b, e.ClientIP)
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, e.UserAgent)
	if e.TLSVersion != "" {
		b = append(b, `,"tls_version":`...)
		b = appendJSONString(b, e.TLSVersion)
		b = append(b, `,"sni":`...)
		b = appendJSONString(b, e.SNI)
	}
	if e.GRPCStatus != "" {
		b = append(b, `,"grpc_status":`...)
		b = append(b, e.GRPCStatus...)
	}
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, e.Error)
	}
	return append(b, "}\n"...)
}

// appendAccessText appends e as one line in slog TextHandler style.
func appendAccessText(b []byte, e *AccessEntry) []byte {
	b = append(b, "time="...)
	b = appendRFC3339Millis(b, accessTime(e))
	b = append(b, " level=INFO msg=access method="...)
	b = appendTextValue(b, e.Method)
	b = append(b, " path="...)
	b = appendTextValue(b, e.Path)
	if len(e.UpstreamTarget) > 0 {
		b = append(b, " upstream_target="...)
		b = appendTextValue(b, e.UpstreamTarget)
	}
	b = append(b, " proto="...)
	b = appendTextValue(b, e.Proto)
	b = append(b, " host="...)
	b = appendTextValue(b, e.Host)
	b = append(b, " route="...)
	b = appendTextValue(b, e.Route)
	b = append(b, " backend="...)
	b = appendTextValue(b, e.Backend)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " latency_ms="...)
	b = appendMillis(b, e.Latency)
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, " request_id="...)
	b = appendTextValue(b, e.RequestID)
	if len(e.TraceID) > 0 {
		b = append(b, " trace_id="...)
		b = appendTextValue(b, e.TraceID)
	}
	if len(e.SpanID) > 0 {
		b = append(b, " span_id="...)
		b = appendTextValue(b, e.SpanID)
	}
	b = append(b, " client_ip="...)
	b = appendTextValue(b, e.ClientIP)
	b = append(b, " user_agent="...)
	b = appendTextValue(b, e.UserAgent)
	if e.TLSVersion != "" {
		b = append(b, " tls_version="...)
		b = appendTextValue(b, e.TLSVersion)
		b = append(b, " sni="...)
		b = appendTextValue(b, e.SNI)
	}
	if e.GRPCStatus != "" {
		b = append(b, " grpc_status="...)
		b = append(b, e.GRPCStatus...)
	}
	if e.Error != "" {
		b = append(b, " error="...)
		b = appendTextValue(b, e.Error)
	}
	return append(b, '\n')
}

// appendMillis appends d in milliseconds with exactly three decimals
// (d rounded to the microsecond), e.g. 412µs as "0.412".
func appendMillis(b []byte, d time.Duration) []byte {
	us := int64(d.Round(time.Microsecond) / time.Microsecond)
	var u uint64
	if us < 0 {
		b = append(b, '-')
		u = uint64(-us)
	} else {
		u = uint64(us)
	}
	b = strconv.AppendUint(b, u/1000, 10)
	f := u % 1000
	return append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

// appendRFC3339Nano appends t, in UTC, as t.AppendFormat(b,
// time.RFC3339Nano) does (trailing zeros of the fraction trimmed), with
// the digits written directly instead of through the layout interpreter.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 || t.Location() != time.UTC {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	hour, minute, sec := t.Clock()
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10))
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// appendRFC3339Millis appends t as slog's TextHandler does: RFC 3339 with
// exactly three fractional digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// RFC3339Nano trims trailing zeros; adding 1/10 ms guarantees four
	// fractional digits, and the fourth is then cut.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b) > n+prefixLen {
		b = append(b[:n+prefixLen], b[n+prefixLen+1:]...)
	}
	return b
}
