package observe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// bufferSize is the size of the shared output buffer. A full buffer
	// is written by the goroutine whose line did not fit (an event loop,
	// often) in a system call during which the runtime counts its P as
	// busy in the kernel; the Go scheduler's monitor, finding it there,
	// goes back to polling every 20 us. Fewer, larger writes keep it
	// asleep: at 40,000 access lines a second, 256 KiB is written about
	// every 20 ms.
	bufferSize = 256 << 10
	// flushInterval bounds how long a line may sit in the buffer.
	flushInterval = 100 * time.Millisecond
)

// LogOptions configures a [Logger].
type LogOptions struct {
	Format string // "json" or "text"
	Level  string // "debug" | "info" | "warn" | "error"
	Access bool   // access log on/off
}

// Logger owns one output stream shared by slog records and access lines,
// buffered (bufio, 256 KiB) behind a mutex, flushed at least every 100ms by a background goroutine,
// and fully flushed by Close so no line is lost at exit.
//
// Every line reaches the buffer in a single write under the mutex, so slog
// records and access lines never interleave. When the underlying writer
// fails, the lines that could not be written are dropped and counted
// (see [Logger.Dropped]); logging callers keep going. Close does not close
// the underlying writer: the caller owns it.
type Logger struct {
	text   bool // access lines in slog TextHandler style rather than JSON
	access bool
	level  slog.LevelVar
	slog   *slog.Logger

	mu      sync.Mutex
	out     sink          // guarded by mu
	bw      *bufio.Writer // guarded by mu; writes into &out
	pending uint64        // guarded by mu; lines buffered since the last flush
	closed  bool          // guarded by mu; after Close every write is flushed at once
	sep     bool          // guarded by mu; the buffer starts with a fragment terminator

	dropped atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewLogger returns a Logger writing to w and starts its background flusher.
// An empty Format or Level selects the default ("json", "info"); any other
// unknown value is an error naming it. Call Close to stop the flusher and
// flush the buffer.
func NewLogger(w io.Writer, opt LogOptions) (*Logger, error) {
	return newLogger(w, opt, flushInterval)
}

// newLogger is NewLogger with the flusher period as a parameter.
func newLogger(w io.Writer, opt LogOptions, every time.Duration) (*Logger, error) {
	if w == nil {
		return nil, errors.New("observe: nil log writer")
	}
	var text bool
	switch strings.ToLower(strings.TrimSpace(opt.Format)) {
	case "", "json":
	case "text":
		text = true
	default:
		return nil, fmt.Errorf("observe: unknown log format %q (want \"json\" or \"text\")", opt.Format)
	}
	lv, err := parseLevel(opt.Level)
	if err != nil {
		return nil, err
	}

	l := &Logger{
		text:   text,
		access: opt.Access,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.level.Set(lv)
	l.out.w = w
	l.bw = bufio.NewWriterSize(&l.out, bufferSize)

	hopt := &slog.HandlerOptions{
		AddSource:   false,
		Level:       &l.level,
		ReplaceAttr: utcTime,
	}
	var h slog.Handler
	if text {
		h = slog.NewTextHandler(slogWriter{l}, hopt)
	} else {
		h = slog.NewJSONHandler(slogWriter{l}, hopt)
	}
	l.slog = slog.New(h)

	go l.flushLoop(every)
	return l, nil
}

// utcTime writes the record time in UTC, as the access lines do, so the
// whole stream uses one time zone.
func utcTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}

// parseLevel maps a configured level name to a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("observe: unknown log level %q (want \"debug\", \"info\", \"warn\" or \"error\")", s)
}

// Slog returns the process logger. Its handler (JSON or text, per the
// options) writes into the same buffered stream as the access log, and its
// level follows [Logger.SetLevel].
func (l *Logger) Slog() *slog.Logger { return l.slog }

// SetLevel changes the slog level at runtime. It does not affect the access
// log, which is switched by LogOptions.Access alone.
func (l *Logger) SetLevel(level string) error {
	lv, err := parseLevel(level)
	if err != nil {
		return err
	}
	l.level.Set(lv)
	return nil
}

// AccessEnabled reports whether access lines are written. It is false for a
// nil Logger.
func (l *Logger) AccessEnabled() bool { return l != nil && l.access }

// Dropped returns the number of lines lost because the underlying writer
// failed.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Flush writes the buffered lines to the underlying writer. On error the
// buffered lines are dropped and counted.
func (l *Logger) Flush() error {
	l.mu.Lock()
	err := l.flushLocked()
	l.mu.Unlock()
	return err
}

// Close stops the background flusher and flushes the buffer. It is
// idempotent: later calls return the first call's result. Lines written
// after Close are still delivered, each flushed as it is written.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		l.closed = true
		l.closeErr = l.flushLocked()
		l.mu.Unlock()
	})
	return l.closeErr
}

// flushLoop flushes the buffer at the given period until Close.
func (l *Logger) flushLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			_ = l.flushLocked() // failures are counted in dropped
			l.mu.Unlock()
		}
	}
}

// write appends one complete line (newline included) to the stream.
func (l *Logger) write(p []byte) {
	l.mu.Lock()
	// Flush before a line that does not fit, so a line is either wholly
	// buffered or written in one piece: a failed flush then drops whole lines.
	if len(p) > l.bw.Available() && l.bw.Buffered() > 0 {
		_ = l.flushLocked()
	}
	if _, err := l.bw.Write(p); err != nil {
		// Only a line larger than the buffer goes straight to the writer;
		// it failed. Clear bufio's sticky error and carry on.
		l.dropped.Add(1)
		l.resetLocked()
	} else {
		l.pending++
		if l.closed {
			_ = l.flushLocked()
		}
	}
	l.mu.Unlock()
}

// flushLocked flushes the buffer. On failure it drops the buffered lines,
// counts them and clears the writer's error so later lines are accepted.
func (l *Logger) flushLocked() error {
	if l.bw.Buffered() == 0 {
		return nil
	}
	err := l.bw.Flush()
	if err != nil {
		// Lines wholly written before the failure were delivered.
		done := uint64(l.out.lines)
		if l.sep && done > 0 {
			done-- // the fragment terminator is not a line
		}
		l.dropped.Add(l.pending - min(l.pending, done))
		l.resetLocked()
	} else {
		l.sep = false
	}
	l.pending = 0
	return err
}

// resetLocked discards buffered data and bufio's sticky error. When the
// last write stopped in the middle of a line, a newline is buffered first
// so the next line does not continue the fragment.
func (l *Logger) resetLocked() {
	l.bw.Reset(&l.out)
	l.sep = l.out.torn
	if l.out.torn {
		l.out.torn = false
		_ = l.bw.WriteByte('\n')
	}
}

// sink is the bufio.Writer's destination: it shields the Logger from an
// underlying writer that panics or misreports its count, and records how
// far a failed write got.
type sink struct {
	w     io.Writer
	torn  bool // a failed write stopped in the middle of a line
	lines int  // newlines a failed write got through
}

func (s *sink) Write(p []byte) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("observe: log writer panicked: %v", r)
		}
		// bufio.Writer corrupts its state on a count outside [0, len(p)].
		if n < 0 || n > len(p) {
			n, err = 0, fmt.Errorf("observe: log writer returned invalid count %d for %d bytes", n, len(p))
		}
		if n < len(p) && err == nil {
			err = io.ErrShortWrite
		}
		if err != nil {
			s.lines = bytes.Count(p[:n], newline)
			s.torn = n > 0 && p[n-1] != '\n'
		}
	}()
	return s.w.Write(p)
}

var newline = []byte{'\n'}

// slogWriter feeds slog handler output (one complete record per Write)
// into the shared stream.
type slogWriter struct{ l *Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.write(p)
	return len(p), nil
}
