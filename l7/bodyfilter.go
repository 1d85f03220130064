package l7

import (
	"errors"
	"io"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Response body filters (middleware.ResponseBodyFilter) are run here, once
// for both engines: the relay writes the backend's body into the last
// filter of the chain, the first one writes into bodyOut, which writes the
// response head when the first byte (or flush, or end) reaches it and then
// the body to the engine's sink.

// bodyOut is the middleware.BodyWriter of the first filter: the client.
type bodyOut struct {
	x        *exchange
	resp     *response
	headDone bool
	// err is the first write error: the client is gone, every later
	// write fails at once.
	err error
}

var errHeadFailed = errors.New("response head not written")

// writeHead writes the response head once, with what the filters made of
// it by then.
func (o *bodyOut) writeHead() error {
	if o.headDone {
		return o.err
	}
	o.headDone = true
	if err := o.x.sink.head(o.x, o.resp); err != nil {
		o.err = errHeadFailed
	}
	return o.err
}

func (o *bodyOut) Write(p []byte) (int, error) {
	if err := o.writeHead(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := o.x.sink.body(p); err != nil {
		o.err = err
		return 0, err
	}
	o.x.bytesOut += int64(len(p))
	return len(p), nil
}

func (o *bodyOut) Flush() error {
	if err := o.writeHead(); err != nil {
		return err
	}
	if err := o.x.sink.flush(); err != nil {
		o.err = err
	}
	return o.err
}

// noteBodyFilter records a handler that may filter the body of the
// response, once its ResponseNeeds asked for the response.
func (x *exchange) noteBodyFilter(h middleware.ResponseHandler) {
	// buildChain checked that a handler declaring the phase has it.
	x.phase.filterers = append(x.phase.filterers, h.(middleware.ResponseBodyFilter))
}

// installFilters asks the handlers that may filter the body for their
// filters, after the response phase ran and before the head is written.
// When one returns a filter, the body streams through them and its length
// is no longer known: Content-Length goes, the body is chunked (or
// delimited by the close on HTTP/1.0), and the head waits for bodyOut.
func (x *exchange) installFilters(resp *response) {
	fs := x.phase.filterers
	x.phase.out = bodyOut{x: x, resp: resp}
	var dst middleware.BodyWriter = &x.phase.out
	for _, h := range fs {
		if f := h.FilterResponseBody(x, dst); f != nil {
			x.phase.filter = f
			dst = f
		}
	}
	clear(fs)
	x.phase.filterers = fs[:0]
	if x.phase.filter == nil {
		return
	}
	// The head is written after body bytes were read: it must not point
	// into the backend connection's buffer any more.
	x.pinResponseHead(resp)
	for i := range resp.fields {
		if classify(resp.fields[i].name) == hContentLength {
			resp.fields[i].skip = true
		}
	}
	resp.kind = bodyChunked
	resp.contentLength = -1
}

// relayFiltered is relayBody through the filters: it copies the body
// (held: the buffered one) into the last filter, flushing it whenever the
// backend has nothing more buffered. It reports whether the response
// completed cleanly; the filters are closed either way.
func (x *exchange) relayFiltered(held bool) bool {
	f := x.phase.filter
	x.phase.filter = nil
	if held {
		if _, err := f.Write(x.phase.respBody); err != nil {
			return x.filterFailed(f, err)
		}
		return x.finishFiltered(f, nil)
	}
	for {
		p, err := x.br.next()
		if len(p) > 0 {
			if _, werr := f.Write(p); werr != nil {
				return x.filterFailed(f, werr)
			}
			if !x.br.pending() {
				if werr := f.Flush(); werr != nil {
					return x.filterFailed(f, werr)
				}
			}
		}
		if err == io.EOF {
			return x.finishFiltered(f, x.br.trailers)
		}
		if err != nil {
			// The head may be out: the only signal left is an abrupt end.
			f.Close(false)
			x.errMsg = "backend body: " + err.Error()
			x.closeClient = true
			if x.phase.out.headDone {
				x.sink.flush()
			}
			return false
		}
	}
}

// finishFiltered ends a filtered body: the filters' last bytes, the head
// if nothing was written yet, the end of the body.
func (x *exchange) finishFiltered(f middleware.BodyFilter, trailers []hfield) bool {
	if err := f.Close(true); err != nil {
		return x.filterEnded(err)
	}
	if err := x.phase.out.writeHead(); err != nil {
		return x.filterEnded(err)
	}
	if err := x.sink.finish(trailers); err != nil {
		x.closeClient = true
		return false
	}
	return true
}

// filterFailed closes the filters after a failed write.
func (x *exchange) filterFailed(f middleware.BodyFilter, err error) bool {
	f.Close(false)
	return x.filterEnded(err)
}

// filterEnded records why a filtered body ended early: the client went
// away (the write to it failed), or a filter failed.
func (x *exchange) filterEnded(err error) bool {
	x.closeClient = true
	switch {
	case x.phase.out.err != nil:
		x.errMsg = "client write failed"
	case !x.phase.out.headDone:
		// Nothing reached the client yet: it gets the filter's reply,
		// or an error response.
		x.phase.out.headDone = true
		var re *middleware.ReplyError
		if errors.As(err, &re) && re.Reply != nil {
			x.status = 0
			x.sendReply(re.Reply)
			return false
		}
		x.errMsg = "response body filter: " + err.Error()
		x.fail(errFilterFailed, "")
	default:
		x.errMsg = "response body filter: " + err.Error()
	}
	return false
}

var errFilterFailed = &proxyError{502, "response body filter failed"}

// pinResponseHead copies the response head's bytes (status reason, field
// names and values), which point into the backend connection's read
// buffer, into the exchange's own buffer: reading the body reuses that
// buffer, and a head written after the body was read (by body filters, or
// for a buffered body) would otherwise show body bytes.
func (x *exchange) pinResponseHead(resp *response) {
	if x.phase.pinned {
		return
	}
	x.phase.pinned = true
	n := len(resp.reason)
	for i := range resp.fields {
		n += len(resp.fields[i].name) + len(resp.fields[i].value)
	}
	buf := x.phase.headBuf[:0]
	if cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	pin := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	if resp.reason != nil {
		resp.reason = pin(resp.reason)
	}
	for i := range resp.fields {
		f := &resp.fields[i]
		f.name, f.value = pin(f.name), pin(f.value)
	}
	x.phase.headBuf = buf
}
