package l7

import (
	"errors"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	errH2Pseudo     = errors.New("http2: invalid pseudo-header fields")
	errH2ConnHeader = errors.New("http2: connection-specific header field")
)

func (hc *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		return hc.streamError(http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol})
	}
	hc.mu.Lock()
	if st := hc.streams[id]; st != nil {
		if st.remoteDone {
			// HEADERS after the client ended the stream: whether the
			// response has ended too (closed) or not (half-closed), the
			// connection cannot be trusted further.
			hc.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		code := st.trailersLocked(f)
		hc.mu.Unlock()
		if code != 0 {
			return hc.streamError(http2.StreamError{StreamID: id, Code: code})
		}
		return nil
	}
	if id <= hc.maxID {
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	hc.maxID = id
	switch {
	case hc.goingAway:
		hc.mu.Unlock()
		return nil // past GOAWAY: ignored, the client retries elsewhere
	case hc.handlers >= h2MaxHandlers:
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	case len(hc.streams) >= h2MaxStreams:
		hc.mu.Unlock()
		return hc.streamError(http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream})
	}
	st := newH2Stream(hc, id)
	st.sendWin = hc.peerWin
	st.headersEnded = f.StreamEnded()
	st.remoteDone = st.headersEnded
	hc.streams[id] = st
	hc.handlers++
	hc.armIdleLocked()
	hc.mu.Unlock()
	if f.Truncated {
		// The header list passed max_header_bytes: answered without
		// reading the rest (an HPACK bomb costs its decoding only).
		hc.wg.Add(1)
		go st.refuse(431)
		return nil
	}
	if err := st.fillRequest(f.Fields); err != nil {
		hc.mu.Lock()
		st.cancelLocked(errStreamReset)
		hc.forgetLocked(st)
		hc.handlers--
		hc.mu.Unlock()
		st.release()
		return hc.streamError(http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol})
	}
	hc.wg.Add(1)
	go st.run()
	return nil
}

// trailersLocked takes a second HEADERS on an open stream (hc.mu held):
// the request's trailers, which must end the stream. It returns a stream
// error code (0: none).
func (st *h2Stream) trailersLocked(f *http2.MetaHeadersFrame) http2.ErrCode {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		return http2.ErrCodeProtocol
	}
	code, _ := st.receiveLocked(nil, 0, true)
	return code
}

// fillRequest turns the decoded header list into st's request, with the
// checks of RFC 9113 8.2 and 8.3 (pseudo-header fields, connection-specific
// fields, te) and then the same rules as HTTP/1.1 requests.
func (st *h2Stream) fillRequest(fields []hpack.HeaderField) error {
	req := &st.req
	req.reset()
	req.proto = 20
	var scheme, authority string
	size := 0
	for i := range fields {
		size += len(fields[i].Name) + len(fields[i].Value) + 2
	}
	arena := st.arena[:0]
	if cap(arena) < size {
		arena = make([]byte, 0, size)
	}
	var cookie []byte
	for _, hf := range fields {
		if hf.IsPseudo() {
			v := hf.Value
			switch hf.Name {
			case ":method":
				arena, req.method = appendField(arena, v)
			case ":path":
				if v == "" {
					return errH2Pseudo
				}
				arena, req.target = appendField(arena, v)
			case ":scheme":
				scheme = v
			case ":authority":
				authority = v
			default:
				return errH2Pseudo
			}
			continue
		}
		if err := checkH2Field(hf); err != nil {
			return err
		}
		switch {
		case hf.Name == "cookie":
			// Split crumbs are joined for HTTP/1.1 (RFC 9113 8.2.3).
			if cookie != nil {
				cookie = append(cookie, "; "...)
			}
			cookie = append(cookie, hf.Value...)
			continue
		case hf.Name == "host" && authority != "":
			continue
		case hf.Name == "content-length":
			if n, ok := parseUint([]byte(hf.Value)); ok {
				st.declared = n
			}
		}
		var name, value []byte
		arena, name = appendField(arena, hf.Name)
		arena, value = appendField(arena, hf.Value)
		req.fields = append(req.fields, hfield{name: name, value: value})
	}
	st.arena = arena
	if req.method == nil || scheme == "" || req.target == nil {
		return errH2Pseudo
	}
	if authority != "" {
		req.fields = append(req.fields, hfield{name: []byte("host"), value: []byte(authority)})
	}
	if cookie != nil {
		req.fields = append(req.fields, hfield{name: []byte("cookie"), value: cookie})
	}
	return nil
}

// appendField copies s to the arena and returns its copy.
func appendField(arena []byte, s string) ([]byte, []byte) {
	start := len(arena)
	if cap(arena)-start < len(s) {
		b := []byte(s)
		return arena, b
	}
	arena = append(arena, s...)
	return arena, arena[start:len(arena):len(arena)]
}

// checkH2Field refuses the fields HTTP/2 forbids in a request (the
// framer refuses upper-case names and invalid values).
func checkH2Field(hf hpack.HeaderField) error {
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return errH2ConnHeader
	case "te":
		if hf.Value != "trailers" {
			return errH2ConnHeader
		}
	}
	return nil
}
