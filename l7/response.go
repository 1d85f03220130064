package l7

import "bytes"

// bodyKind is how a message body is delimited.
type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// response is a backend response head. Slices point into the backend
// connection's read buffer.
type response struct {
	status        int
	reason        []byte
	proto         int
	fields        []hfield
	contentLength int64
	kind          bodyKind
	closeConn     bool
	upgrade       bool
	// hasDate says the backend sent a Date header.
	hasDate bool
}

// parseResponse parses a complete response head at the start of buf for a
// request with the given method. It returns the head length or an error
// (errNeedMore when incomplete).
func parseResponse(buf []byte, resp *response, head bool) (int, error) {
	fields := resp.fields[:0]
	*resp = response{fields: fields, contentLength: -1}
	line, off, err := nextLine(buf, 0)
	if err != nil {
		return 0, err
	}
	// HTTP/1.x SP 3DIGIT SP reason
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return 0, errBadStatusLine
	}
	switch line[7] {
	case '1':
		resp.proto = 11
	case '0':
		resp.proto = 10
	default:
		return 0, errBadStatusLine
	}
	if !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) {
		return 0, errBadStatusLine
	}
	resp.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if resp.status < 100 {
		return 0, errBadStatusLine
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return 0, errBadStatusLine
		}
		resp.reason = line[13:]
		if !fieldValueOK(resp.reason) {
			return 0, errBadStatusLine
		}
	}
	resp.fields, off, err = parseFields(buf, off, resp.fields)
	if err != nil {
		return 0, err
	}
	if err := resp.interpret(head); err != nil {
		return 0, err
	}
	return off, nil
}

func (resp *response) interpret(head bool) error {
	clSeen, teSeen := false, false
	connTokens := false
	for i := range resp.fields {
		f := &resp.fields[i]
		class := classify(f.name)
		if hopByHop(class) {
			f.skip = true
		}
		switch class {
		case hContentLength:
			n, ok := parseUint(f.value)
			if !ok {
				return errBadContentLength
			}
			if clSeen && n != resp.contentLength {
				return errDupContentLength
			}
			if clSeen {
				f.skip = true // identical duplicate: forward once
			}
			clSeen = true
			resp.contentLength = n
		case hTransferEncoding:
			if teSeen {
				return errBadTE
			}
			teSeen = true
			if !eqFold(f.value, "chunked") {
				// Only chunked is decoded; anything else is read to EOF
				// as RFC 9112 6.3 prescribes for responses.
				if hasToken(f.value, "chunked") && !lastTokenChunked(f.value) {
					return errBadTE
				}
				if !lastTokenChunked(f.value) {
					resp.kind = bodyUntilClose
					continue
				}
			}
			resp.kind = bodyChunked
		case hConnection:
			forEachToken(f.value, func(tok []byte) {
				switch {
				case eqFold(tok, "close"):
					resp.closeConn = true
				case eqFold(tok, "keep-alive"), eqFold(tok, "upgrade"):
				default:
					connTokens = true
				}
			})
		case hXRequestID:
			f.skip = true // the proxy writes its own
		case hOther:
			if len(f.name) == 4 && eqFold(f.name, "date") {
				resp.hasDate = true
			}
		}
	}
	if connTokens {
		for i := range resp.fields {
			if classify(resp.fields[i].name) != hConnection {
				continue
			}
			forEachToken(resp.fields[i].value, func(tok []byte) {
				for j := range resp.fields {
					if bytes.EqualFold(resp.fields[j].name, tok) {
						resp.fields[j].skip = true
					}
				}
			})
		}
	}
	if resp.proto == 10 && !resp.closeConn {
		// An HTTP/1.0 backend keeps the connection only when it says so.
		keep := false
		for i := range resp.fields {
			if classify(resp.fields[i].name) == hConnection && hasToken(resp.fields[i].value, "keep-alive") {
				keep = true
			}
		}
		resp.closeConn = !keep
	}
	switch {
	case resp.status == 101:
		resp.upgrade = true
		resp.kind = bodyNone
	case head || resp.status < 200 || resp.status == 204 || resp.status == 304:
		resp.kind = bodyNone
	case teSeen:
		if clSeen {
			// RFC 9112 6.3: Transfer-Encoding overrides; the length is
			// dropped and the connection is not reused.
			resp.closeConn = true
			resp.contentLength = -1
			for i := range resp.fields {
				if classify(resp.fields[i].name) == hContentLength {
					resp.fields[i].skip = true
				}
			}
		}
	case clSeen:
		resp.kind = bodyLength
	default:
		resp.kind = bodyUntilClose
	}
	if resp.kind == bodyUntilClose {
		resp.closeConn = true
	}
	return nil
}

func lastTokenChunked(v []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return eqFold(trimOWS(v), "chunked")
}
