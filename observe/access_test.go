package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2026, 11, 26, 7, 30, 0, 123456789, time.FixedZone("CET", 3600))

func sampleEntry() *AccessEntry {
	return &AccessEntry{
		Time:      testTime,
		Method:    []byte("GET"),
		Path:      []byte("/api/test?q=1&r=<x>"),
		Proto:     "HTTP/1.1",
		Host:      []byte("example.com:8080"),
		Route:     "/api/test",
		Backend:   "http://localhost:8001",
		Status:    200,
		Latency:   412 * time.Microsecond,
		BytesIn:   0,
		BytesOut:  64,
		RequestID: []byte("0123456789abcdef0123456789abcdef"),
		ClientIP:  "127.0.0.1",
		UserAgent: []byte("curl/8"),
	}
}

// trickyEntry has fields that need escaping or quoting in both formats.
func trickyEntry() *AccessEntry {
	e := sampleEntry()
	e.Method = []byte("PO\"ST")
	e.Path = []byte("/a b/\xff/\"q\"?x=\\y\n\x01\u2028")
	e.Host = []byte("héllo.example")
	e.Route = ""
	e.Backend = ""
	e.Status = 502
	e.Latency = 1500*time.Millisecond + 7*time.Microsecond
	e.BytesIn = 12345
	e.BytesOut = -1
	e.RequestID = nil
	e.ClientIP = "::1"
	e.UserAgent = []byte("Mozilla/5.0 (X11; Linux x86_64) 世界 🎉 \t=")
	e.Error = "backend timeout"
	return e
}

// slogReference renders e through slog's own handler, as the slog record
// an access line is meant to look like.
func slogReference(t testing.TB, text bool, e *AccessEntry) string {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler
	if text {
		h = slog.NewTextHandler(&buf, nil)
	} else {
		h = slog.NewJSONHandler(&buf, nil)
	}
	r := slog.NewRecord(e.Time.UTC(), slog.LevelInfo, "access", 0)
	r.AddAttrs(
		slog.String("method", string(e.Method)),
		slog.String("path", string(e.Path)),
		slog.String("proto", e.Proto),
		slog.String("host", string(e.Host)),
		slog.String("route", e.Route),
		slog.String("backend", e.Backend),
		slog.Int("status", e.Status),
		slog.Float64("latency_ms", float64(e.Latency.Microseconds())/1000),
		slog.Int64("bytes_in", e.BytesIn),
		slog.Int64("bytes_out", e.BytesOut),
		slog.String("request_id", string(e.RequestID)),
		slog.String("client_ip", e.ClientIP),
		slog.String("user_agent", string(e.UserAgent)),
	)
	if e.Error != "" {
		r.AddAttrs(slog.String("error", e.Error))
	}
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestAccessLineMatchesSlog(t *testing.T) {
	for _, text := range []bool{false, true} {
		for i, e := range []*AccessEntry{sampleEntry(), trickyEntry()} {
			var got []byte
			if text {
				got = appendAccessText(nil, e)
			} else {
				got = appendAccessJSON(nil, e)
			}
			if want := slogReference(t, text, e); string(got) != want {
				t.Errorf("text=%v entry %d:\n got %s\nwant %s", text, i, got, want)
			}
		}
	}
}

var accessKeys = []string{
	"time", "level", "msg", "method", "path", "proto", "host", "route", "backend",
	"status", "latency_ms", "bytes_in", "bytes_out", "request_id", "client_ip", "user_agent",
}

// jsonKeys returns the top-level keys of a JSON object in order.
func jsonKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestAccessJSONFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogOptions{Format: "json", Level: "info", Access: true})
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEntry()
	l.Access(e)
	te := trickyEntry()
	l.Access(te)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.Bytes())
	}

	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatalf("line does not parse: %v\n%s", err, lines[0])
	}
	want := map[string]any{
		"time":       "2026-11-26T06:30:00.123456789Z",
		"level":      "INFO",
		"msg":        "access",
		"method":     "GET",
		"path":       "/api/test?q=1&r=<x>",
		"proto":      "HTTP/1.1",
		"host":       "example.com:8080",
		"route":      "/api/test",
		"backend":    "http://localhost:8001",
		"status":     float64(200),
		"latency_ms": 0.412,
		"bytes_in":   float64(0),
		"bytes_out":  float64(64),
		"request_id": "0123456789abcdef0123456789abcdef",
		"client_ip":  "127.0.0.1",
		"user_agent": "curl/8",
	}
	if len(m) != len(want) {
		t.Errorf("got %d keys, want %d: %s", len(m), len(want), lines[0])
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, m[k], m[k], v, v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if keys := jsonKeys(t, lines[0]); strings.Join(keys, ",") != strings.Join(accessKeys, ",") {
		t.Errorf("key order %v, want %v", keys, accessKeys)
	}

	// The second entry: escaped strings round-trip, error present and last.
	m = nil
	if err := json.Unmarshal(lines[1], &m); err != nil {
		t.Fatalf("line does not parse: %v\n%s", err, lines[1])
	}
	for k, v := range map[string]any{
		"method":     string(te.Method),
		"path":       strings.ToValidUTF8(string(te.Path), "\ufffd"),
		"host":       string(te.Host),
		"route":      "",
		"backend":    "",
		"status":     float64(502),
		"latency_ms": 1500.007,
		"bytes_in":   float64(12345),
		"bytes_out":  float64(-1),
		"request_id": "",
		"user_agent": string(te.UserAgent),
		"error":      "backend timeout",
	} {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	keys := jsonKeys(t, lines[1])
	if want := append(append([]string{}, accessKeys...), "error"); strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("key order %v, want %v", keys, want)
	}
}

func TestAccessText(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogOptions{Format: "text", Access: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Access(sampleEntry())
	l.Slog().Info("started", "listen", ":8080")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	want := "time=2026-11-26T06:30:00.123Z level=INFO msg=access method=GET path=\"/api/test?q=1&r=<x>\" " +
		"proto=HTTP/1.1 host=example.com:8080 route=/api/test backend=http://localhost:8001 status=200 " +
		"latency_ms=0.412 bytes_in=0 bytes_out=64 request_id=0123456789abcdef0123456789abcdef " +
		"client_ip=127.0.0.1 user_agent=curl/8"
	if lines[0] != want {
		t.Errorf("access line\n got %s\nwant %s", lines[0], want)
	}
	if !strings.HasPrefix(lines[1], "time=") || !strings.HasSuffix(lines[1], " level=INFO msg=started listen=:8080") {
		t.Errorf("slog line %q", lines[1])
	}
	if !strings.Contains(lines[1], "Z level=") {
		t.Errorf("slog line time not UTC: %q", lines[1])
	}
}

func TestAccessZeroTimeUsesNow(t *testing.T) {
	e := sampleEntry()
	e.Time = time.Time{}
	before := time.Now().Add(-time.Second)
	var m map[string]any
	if err := json.Unmarshal(appendAccessJSON(nil, e), &m); err != nil {
		t.Fatal(err)
	}
	tm, err := time.Parse(time.RFC3339Nano, m["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if tm.Before(before) || tm.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v is not now", tm)
	}
}

func TestAccessDisabled(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogOptions{Access: false})
	if err != nil {
		t.Fatal(err)
	}
	if l.AccessEnabled() {
		t.Error("AccessEnabled() = true")
	}
	for range 100 {
		l.Access(sampleEntry())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("access lines written while off: %q", buf.String())
	}

	var nilLogger *Logger
	nilLogger.Access(sampleEntry()) // must not panic
	if nilLogger.AccessEnabled() {
		t.Error("nil Logger: AccessEnabled() = true")
	}
}

func TestAccessIgnoresLevel(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogOptions{Level: "error", Access: true})
	if err != nil {
		t.Fatal(err)
	}
	if !l.AccessEnabled() {
		t.Fatal("AccessEnabled() = false")
	}
	l.Access(sampleEntry())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"msg":"access"`)) {
		t.Errorf("access line missing at level error: %q", buf.String())
	}
}

func TestAccessAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	for _, format := range []string{"json", "text"} {
		l, err := NewLogger(io.Discard, LogOptions{Format: format, Access: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []*AccessEntry{sampleEntry(), trickyEntry()} {
			l.Access(e) // warm the pool
			if n := testing.AllocsPerRun(1000, func() { l.Access(e) }); n != 0 {
				t.Errorf("%s: Access allocates %v times per line", format, n)
			}
		}
		// A zero Time reads the clock, still without allocating.
		e := sampleEntry()
		e.Time = time.Time{}
		if n := testing.AllocsPerRun(1000, func() { l.Access(e) }); n != 0 {
			t.Errorf("%s: Access with zero Time allocates %v times", format, n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkAccess(b *testing.B) {
	l, err := NewLogger(io.Discard, LogOptions{Format: "json", Access: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := sampleEntry()
		for pb.Next() {
			l.Access(e)
		}
	})
}

func BenchmarkAccessSerial(b *testing.B) {
	l, err := NewLogger(io.Discard, LogOptions{Format: "json", Access: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := sampleEntry()
	b.ReportAllocs()
	for b.Loop() {
		l.Access(e)
	}
}

func BenchmarkAccessText(b *testing.B) {
	l, err := NewLogger(io.Discard, LogOptions{Format: "text", Access: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := sampleEntry()
		for pb.Next() {
			l.Access(e)
		}
	})
}

func BenchmarkAppendAccessJSON(b *testing.B) {
	e := sampleEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccessJSON(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSlogInfo is the slog equivalent of an access line, for
// comparison.
func BenchmarkSlogInfo(b *testing.B) {
	l, err := NewLogger(io.Discard, LogOptions{Format: "json", Access: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := sampleEntry()
	log := l.Slog()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "access",
				slog.String("method", string(e.Method)),
				slog.String("path", string(e.Path)),
				slog.String("proto", e.Proto),
				slog.String("host", string(e.Host)),
				slog.String("route", e.Route),
				slog.String("backend", e.Backend),
				slog.Int("status", e.Status),
				slog.Float64("latency_ms", float64(e.Latency.Microseconds())/1000),
				slog.Int64("bytes_in", e.BytesIn),
				slog.Int64("bytes_out", e.BytesOut),
				slog.String("request_id", string(e.RequestID)),
				slog.String("client_ip", e.ClientIP),
				slog.String("user_agent", string(e.UserAgent)),
			)
		}
	})
}
