package compress

import (
	"bufio"
	"io"

	"github.com/rustygate/rustygate/l7/middleware"
)

// outBuffer is the size of the buffer between an encoder and the client:
// encoders write in small pieces, the client gets them in big ones.
const outBuffer = 8 << 10

// filter compresses one response body. It is pooled by its handler; a
// body of unknown length is held (up to min_length) until the filter
// knows whether to compress it.
type filter struct {
	h   *handler
	ex  middleware.Exchange
	dst middleware.BodyWriter
	alg *algorithm
	// enc is the encoder once compression started (nil before, and when
	// the body goes out as it is).
	enc encoder
	out *bufio.Writer
	// held is the start of a body of unknown length, while it is shorter
	// than min_length.
	held []byte
	// decided: compressing (enc set) or passing through.
	decided bool
	// streamed: the body has no length, the backend's flushes are a
	// stream's and are passed on.
	streamed bool
	scratch  [4][]byte
}

// begin readies a pooled filter for a response.
func (f *filter) begin(ex middleware.Exchange, dst middleware.BodyWriter, alg *algorithm) {
	f.ex, f.dst, f.alg = ex, dst, alg
	f.decided, f.streamed = false, true
	if cap(f.held) < f.h.minLength {
		f.held = make([]byte, 0, f.h.minLength)
	}
	f.held = f.held[:0]
}

// start decides to compress: the head says so, the encoder is ready.
func (f *filter) start() {
	f.decided = true
	ex := f.ex
	ex.AddResponseHeader("Content-Encoding", f.alg.token)
	// A byte range of the identity body is not one of the encoded body.
	ex.DelResponseHeader("Accept-Ranges")
	if et := ex.ResponseHeaderValues("etag", f.scratch[:0]); len(et) == 1 && !isWeak(et[0]) {
		// The encoded bytes differ: a strong validator would lie (nginx
		// weakens it the same way).
		ex.SetResponseHeader("ETag", "W/"+string(et[0]))
	}
	clear(f.scratch[:])
	if f.out == nil {
		f.out = bufio.NewWriterSize(f.dst, outBuffer)
	} else {
		f.out.Reset(f.dst)
	}
	f.enc = f.alg.get(f.h.levels[f.alg.id], f.out)
}

func isWeak(etag []byte) bool { return len(etag) >= 2 && etag[0] == 'W' && etag[1] == '/' }

// Write compresses p, or holds it while the body is shorter than
// min_length.
func (f *filter) Write(p []byte) (int, error) {
	if f.decided {
		if f.enc == nil {
			return f.dst.Write(p)
		}
		return f.enc.Write(p)
	}
	if len(f.held)+len(p) < f.h.minLength {
		f.held = append(f.held, p...)
		return len(p), nil
	}
	f.start()
	if err := f.writeHeld(); err != nil {
		return 0, err
	}
	return f.enc.Write(p)
}

// writeHeld compresses what was held.
func (f *filter) writeHeld() error {
	if len(f.held) == 0 {
		return nil
	}
	_, err := f.enc.Write(f.held)
	f.held = f.held[:0]
	return err
}

// Flush passes a stream's flush on: what the encoder holds goes to the
// client now. A flush before min_length bytes came starts compression
// (the body is a stream, its size unknown), as Traefik and gzhttp do. A
// body of known length is not a stream: its flushes are the backend's
// reads, and the encoder emits as its blocks fill.
func (f *filter) Flush() error {
	if !f.streamed {
		return nil
	}
	if !f.decided {
		if len(f.held) == 0 {
			return nil
		}
		f.start()
		if err := f.writeHeld(); err != nil {
			return err
		}
	}
	if f.enc != nil {
		if err := f.enc.Flush(); err != nil {
			return err
		}
		if err := f.out.Flush(); err != nil {
			return err
		}
	}
	return f.dst.Flush()
}

// Close ends the body: a body that stayed shorter than min_length goes
// out as it is; a compressed one gets the end of its stream.
func (f *filter) Close(complete bool) error {
	var err error
	switch {
	case !complete:
	case !f.decided:
		if len(f.held) > 0 {
			_, err = f.dst.Write(f.held)
		}
	case f.enc != nil:
		err = f.enc.Close()
		if err == nil {
			err = f.out.Flush()
		}
	}
	f.release()
	return err
}

// release returns the encoder and the filter to their pools.
func (f *filter) release() {
	if f.enc != nil {
		f.alg.put(f.h.levels[f.alg.id], f.enc)
		f.enc = nil
	}
	if f.out != nil {
		f.out.Reset(io.Discard)
	}
	f.ex, f.dst, f.alg = nil, nil, nil
	f.held = f.held[:0]
	f.h.filters.Put(f)
}
