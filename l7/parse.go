package l7

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Parse errors. Each maps to a client status in requestError.
var (
	errNeedMore         = errors.New("incomplete head")
	errBareLF           = errors.New("bare LF in head")
	errObsFold          = errors.New("obsolete line folding")
	errBadRequestLine   = errors.New("malformed request line")
	errBadMethod        = errors.New("invalid method")
	errBadTarget        = errors.New("invalid request target")
	errBadVersion       = errors.New("unsupported HTTP version")
	errBadHeader        = errors.New("malformed header line")
	errBadHeaderName    = errors.New("invalid header name")
	errBadHeaderValue   = errors.New("invalid header value")
	errSpaceBeforeColon = errors.New("whitespace before colon")
	errTooManyHeaders   = errors.New("too many header fields")
	errBadContentLength = errors.New("invalid Content-Length")
	errDupContentLength = errors.New("duplicate Content-Length")
	errCLAndTE          = errors.New("both Content-Length and Transfer-Encoding")
	errBadTE            = errors.New("unsupported Transfer-Encoding")
	errNoHost           = errors.New("missing Host header")
	errDupHost          = errors.New("duplicate Host header")
	errBadHost          = errors.New("invalid Host header")
	errBadStatusLine    = errors.New("malformed status line")
	errHeadTooLarge     = errors.New("head too large")
	errBadPath          = errors.New("invalid path")
	errUserinfo         = errors.New("userinfo in request target")
	errBadAuthority     = errors.New("invalid authority in request target")
	errDupAuthorization = errors.New("more than one Authorization header")
)

// maxHeaderFields bounds the number of header lines in one head.
const maxHeaderFields = 256

// tokenTable marks the bytes allowed in an RFC 9110 token.
var tokenTable = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd returns the set of ASCII letters and digits plus extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// fieldValueOK reports whether b may appear in a field value: visible
// ASCII, SP, HTAB and obs-text; never CTLs (so never CR, LF or NUL).
//
// It looks at eight bytes at a time, and at each byte only in a word that
// holds a byte below 0x20 (a tab, or a CTL) or 0x7f.
func fieldValueOK(b []byte) bool {
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		// Exact tests (Hacker's Delight 6-1): some byte < 0x20, some
		// byte == 0x7f.
		if (x-lo8*0x20)&^x&hi8 != 0 || ((x^(lo8*0x7f))-lo8)&^(x^(lo8*0x7f))&hi8 != 0 {
			if !fieldBytesOK(b[:8]) {
				return false
			}
		}
		b = b[8:]
	}
	return fieldBytesOK(b)
}

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

func fieldBytesOK(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// hfield is one header line; name and value point into a head buffer.
type hfield struct {
	name, value []byte
	// skip marks fields that are not forwarded (hop-by-hop, or replaced by
	// the proxy).
	skip bool
}

// Header classes recognised while parsing. The zero class is "other".
const (
	hOther = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hKeepAlive
	hProxyConnection
	hTE
	hTrailer
	hUpgrade
	hExpect
	hXForwardedFor
	hXForwardedProto
	hXForwardedHost
	hXRequestID
	hVia
	hProxyAuthenticate
	hProxyAuthorization
	hAuthorization
)

// classify returns the class of a header name, case-insensitively.
func classify(name []byte) int {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hTE
		}
	case 3:
		if eqFold(name, "via") {
			return hVia
		}
	case 4:
		if eqFold(name, "host") {
			return hHost
		}
	case 6:
		if eqFold(name, "expect") {
			return hExpect
		}
	case 7:
		if eqFold(name, "upgrade") {
			return hUpgrade
		}
		if eqFold(name, "trailer") {
			return hTrailer
		}
	case 10:
		if eqFold(name, "connection") {
			return hConnection
		}
		if eqFold(name, "keep-alive") {
			return hKeepAlive
		}
	case 12:
		if eqFold(name, "x-request-id") {
			return hXRequestID
		}
	case 13:
		if eqFold(name, "authorization") {
			return hAuthorization
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hXForwardedFor
		}
	case 16:
		if eqFold(name, "x-forwarded-host") {
			return hXForwardedHost
		}
		if eqFold(name, "proxy-connection") {
			return hProxyConnection
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return hTransferEncoding
		}
		if eqFold(name, "x-forwarded-proto") {
			return hXForwardedProto
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hProxyAuthenticate
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hProxyAuthorization
		}
	}
	return hOther
}

// eqFold compares b with the lower-case ASCII string s, ignoring case in b.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hopByHop reports whether a header class is connection-specific
// (RFC 9110 7.6.1) and so never forwarded as received.
func hopByHop(class int) bool {
	switch class {
	case hConnection, hKeepAlive, hProxyConnection, hTE,
		hTransferEncoding, hUpgrade:
		return true
	}
	return false
}

// trimOWS trims optional whitespace (SP, HTAB) on both sides.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// nextLine returns the line starting at off within buf (without its CRLF)
// and the offset after it. A LF not preceded by CR is an error; a line not
// yet terminated gives errNeedMore.
func nextLine(buf []byte, off int) (line []byte, next int, err error) {
	i := bytes.IndexByte(buf[off:], '\n')
	if i < 0 {
		return nil, off, errNeedMore
	}
	end := off + i
	if end == off || buf[end-1] != '\r' {
		return nil, off, errBareLF
	}
	line = buf[off : end-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, off, errBadHeader
	}
	return line, end + 1, nil
}

// parseFields parses header lines from buf[off:] up to and including the
// empty line. It appends fields to dst and returns the offset after the
// head.
func parseFields(buf []byte, off int, dst []hfield) ([]hfield, int, error) {
	for {
		line, next, err := nextLine(buf, off)
		if err != nil {
			return dst, off, err
		}
		off = next
		if len(line) == 0 {
			return dst, off, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return dst, off, errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return dst, off, errBadHeader
		}
		name := line[:colon]
		if c := name[len(name)-1]; c == ' ' || c == '\t' {
			return dst, off, errSpaceBeforeColon
		}
		if !isToken(name) {
			return dst, off, errBadHeaderName
		}
		value := trimOWS(line[colon+1:])
		if !fieldValueOK(value) {
			return dst, off, errBadHeaderValue
		}
		if len(dst) >= maxHeaderFields {
			return dst, off, errTooManyHeaders
		}
		dst = append(dst, hfield{name: name, value: value})
	}
}

// parseUint parses a non-empty string of ASCII digits into a non-negative
// int64, rejecting signs, spaces and overflow.
func parseUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated header value v contains
// token t (lower case), case-insensitively.
func hasToken(v []byte, t string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if eqFold(trimOWS(part), t) {
			return true
		}
	}
	return false
}

// forEachToken calls f for each non-empty element of a comma-separated list.
func forEachToken(v []byte, f func([]byte)) {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if p := trimOWS(part); len(p) > 0 {
			f(p)
		}
	}
}
