package l7

import (
	"errors"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 stream's responseSink. A response head is encoded when the
// proxy hands it over and written with the first DATA frame, or with
// END_STREAM when there is no body, so a small response leaves as one
// HEADERS and one DATA frame, in the same write as its neighbours.

var errH2Tunnel = errors.New("upgrade not supported on HTTP/2")

// bstr views b as a string for the encoder, which copies it out and
// keeps nothing (no dynamic table).
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// encField appends one field to the head, the name lower-cased.
func (st *h2Stream) encField(name, value string) {
	lname := st.lname[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lname = append(lname, c)
	}
	st.lname = lname
	st.enc.WriteField(hpack.HeaderField{Name: bstr(lname), Value: value})
}

func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// encodeFields adds a backend's fields, without the connection-specific
// ones HTTP/2 forbids.
func (st *h2Stream) encodeFields(fields []hfield, dropLength bool) {
	for i := range fields {
		f := &fields[i]
		if f.skip {
			continue
		}
		c := classify(f.name)
		if hopByHop(c) || dropLength && c == hContentLength {
			continue
		}
		st.encField(bstr(f.name), bstr(f.value))
	}
}

func (st *h2Stream) encodeDate() {
	st.scratch = appendDate(st.scratch[:0])
	st.encField("date", bstr(st.scratch[6:len(st.scratch)-2]))
}

func (st *h2Stream) informational(resp *response) error {
	st.hdr = st.hdr[:0]
	st.encField(":status", statusString(resp.status))
	if resp != &continueResponse {
		st.encodeFields(resp.fields, false)
	}
	return st.writeHead(false)
}

func (st *h2Stream) head(x *exchange, resp *response) error {
	st.hdr = st.hdr[:0]
	st.wrote = true
	st.encField(":status", statusString(resp.status))
	st.encodeFields(resp.fields, resp.kind != bodyLength && resp.kind != bodyNone)
	if !resp.hasDate {
		st.encodeDate()
	}
	st.encField("x-request-id", bstr(x.reqID))
	for _, a := range x.addResp {
		st.encField(a.name, a.value)
	}
	if v := x.srv.altSvc(x); v != "" {
		st.encField("alt-svc", v)
	}
	st.remain = -1
	if resp.kind == bodyLength {
		st.remain = resp.contentLength
	}
	return nil
}

func (st *h2Stream) body(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	end := false
	if st.remain >= 0 {
		st.remain -= int64(len(p))
		end = st.remain <= 0
	}
	return st.writeData(p, end, false)
}

func (st *h2Stream) flush() error {
	if !st.headOut && st.wrote {
		return st.writeHead(false)
	}
	st.hc.kick()
	return nil
}

func (st *h2Stream) finish(trailers []hfield) error {
	st.complete = true
	switch {
	case st.ended:
		st.hc.kick()
		return nil
	case len(trailers) > 0:
		if !st.headOut {
			if err := st.writeHead(false); err != nil {
				return err
			}
		}
		st.hdr = st.hdr[:0]
		st.encodeFields(trailers, false)
		return st.writeHead(true)
	case !st.headOut:
		return st.writeHead(true)
	}
	return st.writeData(nil, true, true)
}

func (st *h2Stream) tunnel(x *exchange, resp *response, bc *backendConn) error {
	bc.close()
	return errH2Tunnel
}

func (st *h2Stream) local(x *exchange, r *localReply) error {
	st.hdr = st.hdr[:0]
	st.wrote = true
	st.encField(":status", statusString(r.status))
	st.encodeDate()
	x.localHeaders((*h2Headers)(st), r)
	if v := x.srv.altSvc(x); v != "" {
		st.encField("alt-svc", v)
	}
	st.complete = true
	if !r.sendBody || len(r.body) == 0 {
		return st.writeHead(true)
	}
	return st.writeData(r.body, true, true)
}

// h2Headers receives a local reply's fields.
type h2Headers h2Stream

func (h *h2Headers) add(name, value string) { (*h2Stream)(h).encField(name, value) }
func (h *h2Headers) addBytes(name string, value []byte) {
	(*h2Stream)(h).encField(name, bstr(value))
}
func (h *h2Headers) addInt(name string, v int64) {
	st := (*h2Stream)(h)
	st.scratch = strconv.AppendInt(st.scratch[:0], v, 10)
	st.encField(name, bstr(st.scratch))
}

// writeHead writes the encoded head as HEADERS (and CONTINUATION) frames.
func (st *h2Stream) writeHead(end bool) error {
	hc := st.hc
	if err := st.alive(); err != nil {
		return err
	}
	err := hc.withWriter(func(fr *http2.Framer) error { return st.writeHeadLocked(fr, end) })
	return err
}

// writeHeadLocked writes the head under hc.wmu.
func (st *h2Stream) writeHeadLocked(fr *http2.Framer, end bool) error {
	st.hc.mu.Lock()
	max := int(st.hc.peerFrame)
	st.hc.mu.Unlock()
	block := st.hdr
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: block[:n],
				EndStream: end, EndHeaders: n == len(block)})
		} else {
			err = fr.WriteContinuation(st.id, n == len(block), block[:n])
		}
		if err != nil {
			return err
		}
		block, first = block[n:], false
	}
	st.hdr = st.hdr[:0]
	if st.wrote {
		st.headOut = true
	}
	st.ended = st.ended || end
	return nil
}

func (st *h2Stream) alive() error {
	st.hc.mu.Lock()
	defer st.hc.mu.Unlock()
	if st.reset {
		return errStreamReset
	}
	return nil
}

// writeData writes p as DATA frames within the client's windows, the
// pending head first; end sets END_STREAM on the last frame.
func (st *h2Stream) writeData(p []byte, end, kick bool) error {
	hc := st.hc
	for {
		n := 0
		if len(p) > 0 {
			var err error
			if n, err = st.reserve(len(p)); err != nil {
				return err
			}
		} else if err := st.alive(); err != nil {
			return err
		}
		last := n == len(p)
		chunk, flush := p[:n], last && (kick || end)
		err := hc.write(flush, func(fr *http2.Framer) error {
			if !st.headOut && st.wrote {
				if err := st.writeHeadLocked(fr, false); err != nil {
					return err
				}
			}
			return fr.WriteData(st.id, end && last, chunk)
		})
		if err != nil {
			return err
		}
		p = p[n:]
		if last {
			st.ended = st.ended || end
			return nil
		}
	}
}

// reserve waits until the windows let up to want bytes go, at most
// write_timeout; a client that keeps them closed gets its stream reset.
func (st *h2Stream) reserve(want int) (int, error) {
	hc := st.hc
	hc.mu.Lock()
	for {
		if st.reset || hc.closed {
			hc.mu.Unlock()
			return 0, errStreamReset
		}
		n := min(int64(want), st.sendWin, hc.sendWin, int64(hc.peerFrame))
		if n > 0 {
			st.sendWin -= n
			hc.sendWin -= n
			hc.mu.Unlock()
			return int(n), nil
		}
		st.winWait = true
		hc.mu.Unlock()
		hc.kick()
		t := time.NewTimer(hc.srv.snap.Load().Config.Server.WriteTimeout.D())
		select {
		case <-st.winWake:
			t.Stop()
		case <-t.C:
			hc.mu.Lock()
			st.winWait = false
			st.cancelLocked(errH2Stalled)
			hc.mu.Unlock()
			hc.writeReset(st.id, http2.ErrCodeCancel)
			return 0, errH2Stalled
		}
		hc.mu.Lock()
		st.winWait = false
	}
}
