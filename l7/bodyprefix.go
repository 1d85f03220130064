package l7

import "io"

// prefixBody is a streamed request body whose first bytes a middleware
// read to inspect them: the prefix is sent first, then the rest of the
// body as it arrives. Only the prefix is held.
type prefixBody struct {
	prefix []byte
	sent   bool
	rest   bodySource
}

func (p *prefixBody) next() ([]byte, error) {
	if !p.sent {
		p.sent = true
		if len(p.prefix) > 0 {
			return p.prefix, nil
		}
	}
	return p.rest.next()
}

func (p *prefixBody) finished() bool { return p.sent && p.rest.finished() }

// RequestBodyPrefix implements middleware.Exchange for both engines: it
// reads from the body source the engine gave the exchange, so the
// engines need nothing of their own.
func (x *exchange) RequestBodyPrefix(limit int) ([]byte, bool, error) {
	switch {
	case !x.req.hasBody():
		return nil, true, nil
	case x.bodyBuffered != nil:
		if len(x.bodyBuffered) > limit {
			return x.bodyBuffered[:limit], false, nil
		}
		return x.bodyBuffered, true, nil
	case x.body == nil:
		return nil, true, nil
	}
	p, ok := x.body.(*prefixBody)
	if !ok {
		if x.req.expectCont {
			// The client waits for this before it sends the body.
			x.sink.informational(&continueResponse)
			x.req.expectCont = false
		}
		p = &prefixBody{rest: x.body}
		x.body = p
	}
	eof := false
	for len(p.prefix) < limit {
		b, err := p.rest.next()
		p.prefix = append(p.prefix, b...)
		if err == io.EOF {
			eof = true
			break
		}
		if err != nil {
			x.closeClient = true
			return nil, false, err
		}
	}
	if eof && len(p.prefix) > 0 {
		// The whole body is in memory: it is sent, and replayed on a
		// retry, like a small body read with its head.
		x.bodyBuffered, x.body = p.prefix, nil
		return p.prefix, true, nil
	}
	return p.prefix, eof, nil
}

// readWholeBody reads the rest of a body of known length into memory
// (for a replay or a middleware that reads it whole), after a prefix a
// middleware may have read.
func (x *exchange) readWholeBody() ([]byte, error) {
	if _, ok := x.body.(*prefixBody); !ok {
		body, err := x.sink.readBody(x, x.req.contentLength)
		if err != nil {
			return nil, err
		}
		x.bodyBuffered, x.body = body, nil
		return body, nil
	}
	body, complete, err := x.RequestBodyPrefix(int(x.req.contentLength) + 1)
	switch {
	case err != nil:
		return nil, err
	case !complete || int64(len(body)) != x.req.contentLength:
		x.closeClient = true
		return nil, errBodyIncomplete
	}
	return body, nil
}
