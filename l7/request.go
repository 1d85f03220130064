package l7

import (
	"bytes"
	"net/netip"
)

// request is the proxy's view of one client request head, shared by both
// engines. Byte slices point into a buffer owned by the connection (fast
// engine) or by the request (standard engine); a request is valid only
// until the next one on the same connection.
type request struct {
	method []byte
	target []byte // request-target as received; origin-form once normalized
	path   []byte // path part of target (origin-form)
	query  []byte // "?..." or empty
	// absolute: the target was in absolute-form; host is its authority.
	absolute bool
	// pathBuf holds the normalized path and query when normalization
	// changed them (see normalizeTarget); kept across requests.
	pathBuf []byte
	proto   int // 10 or 11; HTTP/2 requests are 20
	fields  []hfield

	host          []byte // Host header (or absolute-form authority), port included
	contentLength int64  // -1 when absent
	chunked       bool
	closeConn     bool // client asked to close after this exchange
	keepAlive10   bool // HTTP/1.0 client asked for keep-alive
	upgrade       []byte
	expectCont    bool
	xff           []byte // first X-Forwarded-For value; more are flagged by xffMulti
	xffMulti      bool
	via           []byte
	requestID     []byte
	userAgent     []byte
	connTokens    bool // Connection listed extra header names to drop
}

func (r *request) reset() {
	fields, pathBuf := r.fields[:0], r.pathBuf[:0]
	*r = request{fields: fields, pathBuf: pathBuf, contentLength: -1}
}

// hasBody reports whether a body follows the head.
func (r *request) hasBody() bool { return r.chunked || r.contentLength > 0 }

// applyRules applies the server's request rules, which need the
// configuration and so run once the head is parsed, before routing:
// header names with underscores, then path normalization.
func (r *request) applyRules(rules *requestRules) error {
	if err := r.applyUnderscoreRule(rules.underscores); err != nil {
		return err
	}
	return r.normalizeTarget(rules.path)
}

// parseRequest parses a complete request head at the start of buf. It
// returns the head length, errNeedMore when the head is incomplete, or a
// parse error.
func parseRequest(buf []byte, r *request) (int, error) {
	r.reset()
	line, off, err := nextLine(buf, 0)
	if err != nil {
		return 0, err
	}
	if err := parseRequestLine(line, r); err != nil {
		return 0, err
	}
	r.fields, off, err = parseFields(buf, off, r.fields)
	if err != nil {
		return 0, err
	}
	if err := r.interpretFields(); err != nil {
		return 0, err
	}
	return off, nil
}

func parseRequestLine(line []byte, r *request) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequestLine
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequestLine
	}
	r.method = line[:sp1]
	r.target = rest[:sp2]
	version := rest[sp2+1:]
	if !isToken(r.method) {
		return errBadMethod
	}
	switch string(version) {
	case "HTTP/1.1":
		r.proto = 11
	case "HTTP/1.0":
		r.proto = 10
	default:
		if len(version) == 8 && string(version[:5]) == "HTTP/" && version[6] == '.' &&
			isDigit(version[5]) && isDigit(version[7]) {
			return errBadVersion
		}
		return errBadRequestLine
	}
	return splitTarget(r)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// splitTarget validates the request-target and splits path and query.
// origin-form and absolute-form (http/https) are accepted; "*" only for
// OPTIONS.
func splitTarget(r *request) error {
	t := r.target
	for _, c := range t {
		if c <= ' ' || c == 0x7f {
			return errBadTarget
		}
	}
	if len(t) == 0 {
		return errBadTarget
	}
	if t[0] != '/' {
		if len(t) == 1 && t[0] == '*' {
			if string(r.method) != "OPTIONS" {
				return errBadTarget
			}
			r.path = t
			return nil
		}
		// absolute-form
		var rest []byte
		switch {
		case len(t) > 7 && eqFold(t[:7], "http://"):
			rest = t[7:]
		case len(t) > 8 && eqFold(t[:8], "https://"):
			rest = t[8:]
		default:
			return errBadTarget
		}
		slash := bytes.IndexAny(rest, "/?")
		authority := rest
		if slash >= 0 {
			authority = rest[:slash]
		}
		if err := checkAuthority(authority); err != nil {
			return err
		}
		r.host, r.absolute = authority, true
		if slash < 0 {
			t = []byte("/")
		} else {
			t = rest[slash:]
			if t[0] == '?' {
				// "http://h?q": path is "/"; keep the query.
				r.path = []byte("/")
				r.query = t
				return nil
			}
		}
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		r.path, r.query = t[:q], t[q:]
	} else {
		r.path, r.query = t, nil
	}
	if bytes.IndexByte(r.path, '#') >= 0 {
		return errBadTarget
	}
	if !validEscapes(r.path) || hasDotSegment(r.path) {
		return errBadPath
	}
	return nil
}

// validEscapes reports whether every '%' in p starts a two-digit hex
// escape.
func validEscapes(p []byte) bool {
	for i := bytes.IndexByte(p, '%'); i >= 0; {
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return false
		}
		j := bytes.IndexByte(p[i+3:], '%')
		if j < 0 {
			break
		}
		i += 3 + j
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hasDotSegment reports whether path has a "." or ".." segment, raw or
// percent-encoded: backends resolve them differently, so a prefix route
// could otherwise be escaped.
func hasDotSegment(p []byte) bool {
	for i := 0; i < len(p); {
		if p[i] != '/' {
			i++
			continue
		}
		j := i + 1
		dots := 0
		for j < len(p) && p[j] != '/' {
			switch {
			case p[j] == '.':
				dots++
				j++
			case p[j] == '%' && j+2 < len(p) && p[j+1] == '2' && (p[j+2] == 'e' || p[j+2] == 'E'):
				dots++
				j += 3
			default:
				dots = -1000
				j++
			}
		}
		if dots == 1 || dots == 2 {
			return true
		}
		i = j
	}
	return false
}

// interpretFields applies the framing and connection rules of RFC 9112 to
// the parsed fields, marking those that must not be forwarded.
func (r *request) interpretFields() error {
	hostSeen := r.host != nil
	hostHeaders := 0
	authorizations := 0
	clSeen := false
	teSeen := false
	for i := range r.fields {
		f := &r.fields[i]
		class := classify(f.name)
		if hopByHop(class) {
			f.skip = true
		}
		switch class {
		case hHost:
			hostHeaders++
			if hostHeaders > 1 {
				return errDupHost
			}
			if !validHost(f.value) {
				return errBadHost
			}
			if !hostSeen {
				r.host = f.value
			}
		case hContentLength:
			if clSeen {
				return errDupContentLength
			}
			clSeen = true
			n, ok := parseUint(f.value)
			if !ok {
				return errBadContentLength
			}
			r.contentLength = n
			f.skip = true // rewritten by the proxy
		case hTransferEncoding:
			if teSeen || r.proto < 11 {
				return errBadTE
			}
			teSeen = true
			if !eqFold(f.value, "chunked") {
				return errBadTE
			}
			r.chunked = true
		case hConnection:
			forEachToken(f.value, func(tok []byte) {
				switch {
				case eqFold(tok, "close"):
					r.closeConn = true
				case eqFold(tok, "keep-alive"):
					r.keepAlive10 = true
				case eqFold(tok, "upgrade"):
					r.upgrade = []byte{} // filled from the Upgrade header below
				default:
					r.connTokens = true
				}
			})
		case hExpect:
			if eqFold(f.value, "100-continue") {
				r.expectCont = true
				f.skip = true
			}
		case hXForwardedFor:
			if r.xff == nil {
				r.xff = f.value
			} else {
				r.xffMulti = true
			}
			f.skip = true
		case hXForwardedProto, hXForwardedHost:
			f.skip = true // set by the proxy
		case hXRequestID:
			if validRequestID(f.value) {
				r.requestID = f.value
			}
			f.skip = true // re-added with the kept or generated value
		case hVia:
			f.skip = true
			r.via = f.value
		case hAuthorization:
			// Two credentials invite an authenticator to check one and
			// a backend to use the other.
			if authorizations++; authorizations > 1 {
				return errDupAuthorization
			}
		case hOther:
			if len(f.name) == 10 && eqFold(f.name, "user-agent") {
				r.userAgent = f.value
			}
		}
	}
	if clSeen && teSeen {
		return errCLAndTE
	}
	if r.proto == 11 && hostHeaders == 0 && !hostSeen {
		return errNoHost
	}
	if r.upgrade != nil {
		r.upgrade = nil
		for i := range r.fields {
			if classify(r.fields[i].name) == hUpgrade {
				r.upgrade = r.fields[i].value
			}
		}
	}
	if r.connTokens {
		r.markConnectionTokens()
	}
	if r.proto == 10 && !r.keepAlive10 {
		r.closeConn = true
	}
	return nil
}

// markConnectionTokens skips the fields named in Connection.
func (r *request) markConnectionTokens() {
	for i := range r.fields {
		if classify(r.fields[i].name) != hConnection {
			continue
		}
		forEachToken(r.fields[i].value, func(tok []byte) {
			for j := range r.fields {
				if bytes.EqualFold(r.fields[j].name, tok) {
					r.fields[j].skip = true
				}
			}
		})
	}
}

// validHost reports whether h is a Host value shaped as host[:port]: a
// reg-name or IPv4 address (unreserved characters, sub-delims and valid
// percent escapes) or a bracketed IPv6 address, then an optional port of
// at most five digits. An empty value is allowed (RFC 9112 3.2); an empty
// host before a port is not.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	var port []byte
	hasPort := false
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 0 || !validIPv6Literal(h[1:end]) {
			return false
		}
		if rest := h[end+1:]; len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
	} else {
		host := h
		if i := bytes.IndexByte(h, ':'); i >= 0 {
			host, port, hasPort = h[:i], h[i+1:], true
		}
		if len(host) == 0 || !validRegName(host) {
			return false
		}
	}
	if hasPort && len(port) > 5 {
		return false
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// validRegName accepts RFC 3986's reg-name (which includes IPv4
// addresses): unreserved characters, sub-delims and percent escapes.
func validRegName(h []byte) bool {
	for _, c := range h {
		if !regNameByte[c] {
			return false
		}
	}
	return bytes.IndexByte(h, '%') < 0 || validEscapes(h)
}

// regNameByte adds sub-delims and "%" to the unreserved characters.
var regNameByte = alnumAnd("-._~!$&'()*+,;=%")

// validIPv6Literal checks the inside of "[...]": an IPv6 address without
// a zone.
func validIPv6Literal(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	for _, c := range b {
		if !isHex(c) && c != ':' && c != '.' {
			return false
		}
	}
	a, err := netip.ParseAddr(string(b))
	return err == nil && a.Is6()
}

// checkAuthority validates the authority of an absolute-form target: it
// becomes the request's Host, so it must be a plain host[:port], without
// userinfo.
func checkAuthority(a []byte) error {
	if bytes.IndexByte(a, '@') >= 0 {
		return errUserinfo
	}
	if len(a) == 0 || !validHost(a) {
		return errBadAuthority
	}
	return nil
}

// validRequestID accepts a client-supplied X-Request-Id that is short and
// printable, so it is safe to log and echo.
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// hostNoPort returns the Host value without its port, for routing.
func hostNoPort(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}
