package redirect

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// Handler is a built redirect middleware.
type Handler struct {
	s          Settings
	re         *regexp.Regexp
	withQuery  bool   // the regex sees the query
	portSuffix string // ":port", "" when none is set
	fixedBase  bool   // scheme, host or port set: the Location is absolute
	trusted    clientip.Proxies
}

var _ middleware.Handler = (*Handler)(nil)

// New builds the middleware from validated settings.
func New(s *Settings) (*Handler, error) {
	h := &Handler{s: *s, withQuery: s.Match == "path_query"}
	if s.Regex != "" {
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return nil, fmt.Errorf("redirect: invalid regex: %w", err)
		}
		if err := checkReplacement(re, s.Replacement); err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
		h.re = re
	}
	if s.Port != 0 {
		h.portSuffix = ":" + strconv.Itoa(s.Port)
	}
	h.fixedBase = s.Scheme != "" || s.Host != "" || s.Port != 0
	trusted, err := clientip.ParseProxies(s.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	h.trusted = trusted
	return h, nil
}

var badHost = &middleware.Reply{
	Status:  400,
	Headers: [][2]string{{"Content-Type", "application/json"}},
	Body:    []byte(`{"error":"invalid host for a redirect"}` + "\n"),
}

// Handle implements middleware.Handler.
func (h *Handler) Handle(r middleware.Request) *middleware.Reply {
	uri := r.URI()
	path, query := uri, []byte(nil)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i:]
	}
	if !h.s.KeepQuery {
		query = nil
	}
	var loc string
	var ok bool
	if h.re != nil {
		loc, ok = h.byRegex(r, uri, path, query)
	} else {
		loc, ok = h.byParts(r, path, query)
	}
	switch {
	case !ok:
		return badHost
	case loc == "":
		return nil
	}
	return &middleware.Reply{Status: h.status(r.Method()), Headers: [][2]string{{"Location", loc}}}
}

// status is the configured status, 301 and 302 becoming 308 and 307 for
// methods other than GET and HEAD, which a client would turn into GET.
func (h *Handler) status(method []byte) int {
	if m := string(method); m == "GET" || m == "HEAD" {
		return h.s.Status
	}
	switch h.s.Status {
	case 301:
		return 308
	case 302:
		return 307
	}
	return h.s.Status
}

// byRegex returns the Location for a request the regex matches, "" for
// one it does not.
func (h *Handler) byRegex(r middleware.Request, uri, path, query []byte) (string, bool) {
	subject := path
	if h.withQuery {
		subject = uri
	}
	if !h.re.Match(subject) {
		return "", true
	}
	m := h.re.FindSubmatchIndex(subject)
	target := h.re.Expand(nil, []byte(h.s.Replacement), subject, m)
	if isAbsoluteURL(string(target)) {
		// The configuration asked for this host; what the captures put
		// in its authority must still be a plain host[:port].
		rest := target[bytes.Index(target, []byte("://"))+3:]
		end := bytes.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if !validHost(string(rest[:end]), true) {
			return "", false
		}
		return string(appendEncoded(nil, target)), true
	}
	var b []byte
	if h.fixedBase {
		var ok bool
		if b, ok = h.appendBase(nil, r); !ok {
			return "", false
		}
	}
	b = appendPath(b, target)
	if !h.withQuery {
		b = append(b, query...)
	}
	return string(b), true
}

// byParts returns the Location built from the configured parts, or ""
// when it is where the request already is.
func (h *Handler) byParts(r middleware.Request, path, query []byte) (string, bool) {
	if h.alreadyThere(r, path) {
		return "", true
	}
	b, ok := h.appendBase(nil, r)
	if !ok {
		return "", false
	}
	if h.s.Path != "" {
		b = append(b, h.s.Path...)
	} else {
		b = appendPath(b, path)
	}
	b = append(b, query...)
	return string(b), true
}

// alreadyThere reports, without allocating, a request whose scheme,
// host, port and path are the configured ones.
func (h *Handler) alreadyThere(r middleware.Request, path []byte) bool {
	if h.s.Scheme != "" && h.s.Scheme != h.requestScheme(r) || h.s.Path != "" && h.s.Path != string(path) {
		return false
	}
	name, port := splitPort(string(r.Host()))
	if h.s.Host != "" && !strings.EqualFold(h.s.Host, name) {
		return false
	}
	if h.s.Port == 0 {
		return true
	}
	want := h.portSuffix
	if port == "" && h.requestScheme(r) == "https" {
		port = ":443"
	} else if port == "" {
		port = ":80"
	}
	return port == want
}

func (h *Handler) scheme(r middleware.Request) string {
	if h.s.Scheme != "" {
		return h.s.Scheme
	}
	return h.requestScheme(r)
}

// requestScheme is the scheme the client used: the connection's, or the
// X-Forwarded-Proto of a trusted proxy (one that terminated TLS in front
// of the gateway, whose plain requests must not be redirected to HTTPS
// again and again).
func (h *Handler) requestScheme(r middleware.Request) string {
	if len(h.trusted) > 0 && h.trusted.Trusted(r.PeerIP().Unmap()) {
		v := r.Header("X-Forwarded-Proto")
		if i := bytes.IndexByte(v, ','); i >= 0 {
			v = v[:i]
		}
		switch string(bytes.TrimSpace(v)) {
		case "https":
			return "https"
		case "http":
			return "http"
		}
	}
	return r.Scheme()
}

// appendBase appends scheme://host[:port]. The request's port is kept
// only when the scheme does not change and no port is set; a default
// port is left out.
func (h *Handler) appendBase(b []byte, r middleware.Request) ([]byte, bool) {
	scheme := h.scheme(r)
	host, port := h.s.Host, h.portSuffix
	if host == "" || port == "" {
		reqHost := string(r.Host())
		if !validHost(reqHost, true) {
			return nil, false
		}
		name, reqPort := splitPort(reqHost)
		if host == "" {
			host = name
		}
		if port == "" && scheme == h.requestScheme(r) {
			port = reqPort
		}
	}
	if port == ":80" && scheme == "http" || port == ":443" && scheme == "https" {
		port = ""
	}
	b = append(b, scheme...)
	b = append(b, "://"...)
	b = append(b, host...)
	return append(b, port...), true
}

// splitPort splits "host:port" into "host" and ":port".
func splitPort(hostport string) (string, string) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.IndexByte(hostport[i:], ']') >= 0 {
		return hostport, ""
	}
	return hostport[:i], hostport[i:]
}

// appendPath appends a path taken from the request or built with its
// captures: it starts with exactly one '/', so that it can never be read
// as a scheme-relative URL (//host or /\host), and what a Location may
// not carry is percent-encoded.
func appendPath(b, p []byte) []byte {
	i := 0
	for i < len(p) && (p[i] == '/' || p[i] == '\\') {
		i++
	}
	b = append(b, '/')
	return appendEncoded(b, p[i:])
}

// appendEncoded percent-encodes spaces, control characters, backslashes
// and bytes above 0x7e.
func appendEncoded(b, p []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range p {
		if c <= ' ' || c >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// validHost reports a host name, IPv4 address or bracketed IPv6 address,
// with a port when withPort.
func validHost(s string, withPort bool) bool {
	if withPort {
		name, port := splitPort(s)
		if port != "" {
			if len(port) < 2 || len(port) > 6 {
				return false
			}
			if n, err := strconv.Atoi(port[1:]); err != nil || n < 1 || n > 65535 {
				return false
			}
		}
		s = name
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		for _, c := range s[1 : len(s)-1] {
			if !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f') {
				return false
			}
		}
		return len(s) > 2
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '.' || c == '_' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// validPath reports an absolute path fit for a Location as it is.
func validPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '\\' {
			return false
		}
	}
	return true
}
