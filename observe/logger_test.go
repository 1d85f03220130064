package observe

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// syncBuffer is a bytes.Buffer safe to read while the flusher writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int // Write calls
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) writes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// splitLines returns the lines of s without their newlines.
func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newTestLogger(t *testing.T, w *syncBuffer, opt LogOptions) *Logger {
	t.Helper()
	l, err := NewLogger(w, opt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewLoggerOptions(t *testing.T) {
	for _, opt := range []LogOptions{
		{},
		{Format: "json", Level: "debug"},
		{Format: "text", Level: "info"},
		{Format: "JSON", Level: "WARN"},
		{Format: "json", Level: "error"},
	} {
		l, err := NewLogger(&bytes.Buffer{}, opt)
		if err != nil {
			t.Errorf("%+v: %v", opt, err)
			continue
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []struct {
		opt  LogOptions
		name string
	}{
		{LogOptions{Format: "yaml"}, `"yaml"`},
		{LogOptions{Level: "verbose"}, `"verbose"`},
		{LogOptions{Format: "json", Level: "trace"}, `"trace"`},
	} {
		l, err := NewLogger(&bytes.Buffer{}, c.opt)
		if err == nil {
			l.Close()
			t.Errorf("%+v: no error", c.opt)
			continue
		}
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("%+v: error %q does not name %s", c.opt, err, c.name)
		}
	}
	if _, err := NewLogger(nil, LogOptions{}); err == nil {
		t.Error("nil writer: no error")
	}
}

func TestSlogJSON(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Format: "json", Level: "info"})
	l.Slog().Info("listening", "addr", ":8080", "h2c", true)
	l.Slog().With("component", "pool").Warn("backend down", "backend", "http://b:1")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := splitLines(w.String())
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), w.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["msg"] != "listening" || m["level"] != "INFO" || m["addr"] != ":8080" || m["h2c"] != true {
		t.Errorf("line 0: %v", m)
	}
	if _, ok := m["source"]; ok {
		t.Error("source present")
	}
	ts, _ := m["time"].(string)
	if !strings.HasSuffix(ts, "Z") {
		t.Errorf("time %q not UTC", ts)
	}
	m = nil
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatal(err)
	}
	if m["level"] != "WARN" || m["component"] != "pool" {
		t.Errorf("line 1: %v", m)
	}
}

func TestLevelFiltering(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Level: "warn"})
	log := l.Slog()
	log.Debug("d1")
	log.Info("i1")
	log.Warn("w1")
	log.Error("e1")
	if err := l.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	log.Debug("d2")
	log.Info("i2")
	if err := l.SetLevel("error"); err != nil {
		t.Fatal(err)
	}
	log.Warn("w2")
	log.Error("e2")
	if err := l.SetLevel("chatty"); err == nil || !strings.Contains(err.Error(), `"chatty"`) {
		t.Errorf("SetLevel(chatty) = %v", err)
	}
	log.Warn("w3") // level still error
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range splitLines(w.String()) {
		var m struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		got = append(got, m.Msg)
	}
	if want := "w1,e1,d2,i2,e2"; strings.Join(got, ",") != want {
		t.Errorf("got %s, want %s", strings.Join(got, ","), want)
	}
}

func TestNoInterleaving(t *testing.T) {
	const writers, perWriter = 8, 2000
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			log := l.Slog().With("writer", g)
			e := trickyEntry()
			for i := range perWriter {
				if i%2 == 0 {
					l.Access(e)
				} else {
					log.Info("tick", "i", i, "pad", strings.Repeat("x", i%300))
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := splitLines(w.String())
	if len(lines) != writers*perWriter {
		t.Fatalf("got %d lines, want %d", len(lines), writers*perWriter)
	}
	var access, ticks int
	for _, line := range lines {
		var m struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("invalid line (%v): %q", err, line)
		}
		switch m.Msg {
		case "access":
			access++
		case "tick":
			ticks++
		}
	}
	if access != writers*perWriter/2 || ticks != writers*perWriter/2 {
		t.Errorf("access=%d ticks=%d", access, ticks)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped() = %d", l.Dropped())
	}
}

func TestCloseFlushesEverything(t *testing.T) {
	const n = 10000 // several buffers' worth
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	e := sampleEntry()
	for i := range n {
		if i%10 == 0 {
			l.Slog().Info("x")
		} else {
			l.Access(e)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(splitLines(w.String())); got != n {
		t.Errorf("got %d lines after Close, want %d", got, n)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestWriteAfterClose(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Access(sampleEntry())
	l.Slog().Info("late")
	if got := len(splitLines(w.String())); got != 2 {
		t.Errorf("got %d lines written after Close, want 2", got)
	}
}

func TestBackgroundFlush(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	defer l.Close()
	start := time.Now()
	l.Access(sampleEntry())
	for w.String() == "" {
		if time.Since(start) > 5*time.Second {
			t.Fatal("line not flushed by the background flusher")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// An idle Logger does not write.
	n := w.writes()
	time.Sleep(3 * flushInterval)
	if w.writes() != n {
		t.Errorf("idle flusher wrote %d times", w.writes()-n)
	}
}

func TestFlush(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	defer l.Close()
	l.Access(sampleEntry())
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := len(splitLines(w.String())); got != 1 {
		t.Errorf("got %d lines after Flush", got)
	}
	if err := l.Flush(); err != nil {
		t.Errorf("empty Flush: %v", err)
	}
}

var errBroken = errors.New("broken pipe")

// failWriter fails every write.
type failWriter struct{ calls atomic.Int64 }

func (w *failWriter) Write([]byte) (int, error) {
	w.calls.Add(1)
	return 0, errBroken
}

func TestFailingWriterDropsAndCounts(t *testing.T) {
	const n = 5000 // several buffers' worth
	var w failWriter
	l, err := NewLogger(&w, LogOptions{Access: true})
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEntry()
	for i := range n {
		if i%5 == 0 {
			l.Slog().Info("x")
		} else {
			l.Access(e)
		}
	}
	huge := sampleEntry()
	huge.UserAgent = bytes.Repeat([]byte("u"), 2*bufferSize) // larger than the buffer
	l.Access(huge)
	l.Access(e)
	if err := l.Flush(); !errors.Is(err, errBroken) {
		t.Errorf("Flush() = %v, want %v", err, errBroken)
	}
	l.Access(e)
	if err := l.Close(); !errors.Is(err, errBroken) {
		t.Errorf("Close() = %v, want %v", err, errBroken)
	}
	if got, want := l.Dropped(), uint64(n+3); got != want {
		t.Errorf("Dropped() = %d, want %d", got, want)
	}
	if w.calls.Load() == 0 {
		t.Error("writer never called")
	}
}

// scriptWriter runs each write through the next step of a script, then
// behaves like a plain buffer.
type scriptWriter struct {
	buf   bytes.Buffer
	steps []func(p []byte) (int, error)
}

func (w *scriptWriter) Write(p []byte) (int, error) {
	if len(w.steps) > 0 {
		step := w.steps[0]
		w.steps = w.steps[1:]
		return step(p)
	}
	return w.buf.Write(p)
}

func TestMisbehavingWriters(t *testing.T) {
	for _, c := range []struct {
		name string
		step func(w *scriptWriter) func(p []byte) (int, error)
	}{
		{"error", func(*scriptWriter) func([]byte) (int, error) {
			return func([]byte) (int, error) { return 0, errBroken }
		}},
		{"panic", func(*scriptWriter) func([]byte) (int, error) {
			return func([]byte) (int, error) { panic("boom") }
		}},
		{"short write without error", func(w *scriptWriter) func([]byte) (int, error) {
			return func(p []byte) (int, error) { return w.buf.Write(p[:len(p)/2]) }
		}},
		{"torn write", func(w *scriptWriter) func([]byte) (int, error) {
			return func(p []byte) (int, error) {
				n, _ := w.buf.Write(p[:len(p)/2+7])
				return n, errBroken
			}
		}},
		{"count too large", func(w *scriptWriter) func([]byte) (int, error) {
			return func(p []byte) (int, error) { return len(p) + 10, nil }
		}},
		{"negative count", func(w *scriptWriter) func([]byte) (int, error) {
			return func(p []byte) (int, error) { return -1, nil }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const before, after = 10, 10
			w := &scriptWriter{}
			w.steps = append(w.steps, c.step(w))
			// No background flush: the script's first step must meet the
			// explicit Flush.
			l, err := newLogger(w, LogOptions{Access: true}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e := sampleEntry()
			for range before {
				l.Access(e)
			}
			if err := l.Flush(); err == nil {
				t.Error("Flush() = nil on a failing write")
			}
			dropped := l.Dropped()
			if dropped == 0 {
				t.Error("nothing counted as dropped")
			}
			for range after {
				l.Access(e)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close() after recovery = %v", err)
			}
			if l.Dropped() != dropped {
				t.Errorf("Dropped() grew after recovery: %d -> %d", dropped, l.Dropped())
			}
			// Every line is whole except at most one fragment left by a
			// write that failed midway; each line is either delivered or
			// counted as dropped.
			lines := splitLines(w.buf.String())
			valid, fragments := 0, 0
			for _, line := range lines {
				if json.Valid([]byte(line)) {
					valid++
				} else {
					fragments++
				}
			}
			if fragments > 1 {
				t.Errorf("%d fragments:\n%s", fragments, w.buf.String())
			}
			if uint64(valid)+dropped != before+after {
				t.Errorf("%d delivered + %d dropped != %d written:\n%s", valid, dropped, before+after, w.buf.String())
			}
			if len(lines) > 0 && !json.Valid([]byte(lines[len(lines)-1])) {
				t.Errorf("last line is a fragment: %q", lines[len(lines)-1])
			}
		})
	}
}

func TestHugeLine(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	e := sampleEntry()
	huge := sampleEntry()
	huge.UserAgent = bytes.Repeat([]byte("u"), 3*bufferSize)
	l.Access(e)
	l.Access(huge)
	l.Access(e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := splitLines(w.String())
	if len(lines) != 3 {
		t.Fatalf("got %d lines", len(lines))
	}
	var m struct {
		UserAgent string `json:"user_agent"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m.UserAgent != string(huge.UserAgent) {
		t.Errorf("huge line mangled (err %v, %d bytes)", err, len(m.UserAgent))
	}
}

func TestConcurrentCloseAndWrites(t *testing.T) {
	var w syncBuffer
	l := newTestLogger(t, &w, LogOptions{Access: true})
	var wg sync.WaitGroup
	const writers, perWriter = 4, 500
	for range writers {
		wg.Go(func() {
			e := sampleEntry()
			for range perWriter {
				l.Access(e)
			}
		})
	}
	for range 3 {
		wg.Go(func() { _ = l.Close() })
	}
	wg.Wait()
	if got := len(splitLines(w.String())); got != writers*perWriter {
		t.Errorf("got %d lines, want %d", got, writers*perWriter)
	}
}
