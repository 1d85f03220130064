package rewrite

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Handler is a built rewrite middleware.
type Handler struct {
	re          *regexp.Regexp
	replacement []byte
	strip       string
	add         string
	// Query operations: names removed (those of set included), then the
	// encoded "name=value" pairs appended.
	drop     []string
	appended []string
}

var _ middleware.Handler = (*Handler)(nil)

// New builds the middleware from validated settings.
func New(s *Settings) (*Handler, error) {
	h := &Handler{strip: strings.TrimSuffix(s.StripPrefix, "/"), add: strings.TrimSuffix(s.AddPrefix, "/")}
	if s.Regex != "" {
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return nil, fmt.Errorf("rewrite: invalid regex: %w", err)
		}
		if err := checkReplacement(re, s.Replacement); err != nil {
			return nil, fmt.Errorf("rewrite: %w", err)
		}
		h.re, h.replacement = re, []byte(s.Replacement)
	}
	h.drop = append(h.drop, s.Query.Remove...)
	for _, m := range []map[string]string{s.Query.Set, s.Query.Add} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			h.appended = append(h.appended, url.QueryEscape(k)+"="+url.QueryEscape(m[k]))
		}
	}
	for k := range s.Query.Set {
		h.drop = append(h.drop, k)
	}
	return h, nil
}

var dotSegment = &middleware.Reply{
	Status:  400,
	Headers: [][2]string{{"Content-Type", "application/json"}},
	Body:    []byte(`{"error":"rewritten path has a dot segment"}` + "\n"),
}

// Handle implements middleware.Handler. It answers only a rewrite that
// would forward a dot segment.
func (h *Handler) Handle(r middleware.Request) *middleware.Reply {
	uri := r.URI()
	path, query := uri, []byte(nil)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i:]
	}
	newPath, changed := h.rewritePath(path)
	queryOps := len(h.drop) > 0 || len(h.appended) > 0
	if !changed && !queryOps {
		return nil
	}
	b := appendPath(make([]byte, 0, len(uri)+64), newPath)
	if hasDotSegment(b) {
		return dotSegment
	}
	if queryOps {
		b = h.appendQuery(b, query)
	} else {
		b = append(b, query...)
	}
	r.SetURI(string(b))
	return nil
}

// rewritePath applies regex, strip_prefix and add_prefix.
func (h *Handler) rewritePath(path []byte) ([]byte, bool) {
	changed := false
	if h.re != nil {
		if h.re.Match(path) {
			m := h.re.FindSubmatchIndex(path)
			path, changed = h.re.Expand(nil, h.replacement, path, m), true
		}
	}
	if h.strip != "" && hasPathPrefix(path, h.strip) {
		path, changed = path[len(h.strip):], true
		if len(path) == 0 {
			path = []byte{'/'}
		}
	}
	if h.add != "" {
		path, changed = append([]byte(h.add), path...), true
	}
	return path, changed
}

func hasPathPrefix(path []byte, prefix string) bool {
	return bytes.HasPrefix(path, []byte(prefix)) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// appendQuery appends query ("?..." or empty) without the dropped
// parameters, then the added ones.
func (h *Handler) appendQuery(b, query []byte) []byte {
	start := len(b)
	sep := func() {
		if len(b) == start {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
	}
	rest := bytes.TrimPrefix(query, []byte{'?'})
	for len(rest) > 0 {
		param := rest
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			param, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(param) == 0 || h.dropped(param) {
			continue
		}
		sep()
		b = append(b, param...)
	}
	for _, p := range h.appended {
		sep()
		b = append(b, p...)
	}
	return b
}

// dropped reports a parameter whose (decoded) name is removed.
func (h *Handler) dropped(param []byte) bool {
	name := string(param)
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	if dec, err := url.QueryUnescape(name); err == nil {
		name = dec
	}
	return slices.Contains(h.drop, name)
}

// appendPath appends p with exactly one leading '/', percent-encoding
// what an origin-form path may not carry raw.
func appendPath(b, p []byte) []byte {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	b = append(b, '/')
	const hex = "0123456789ABCDEF"
	for i, c := range p {
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			b = append(b, c)
			continue
		}
		if !pathByte(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// pathByte reports the bytes of pchar (RFC 3986) and '/', '%' apart.
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// hasDotSegment reports a "." or ".." segment, raw or encoded.
func hasDotSegment(p []byte) bool {
	for len(p) > 0 {
		seg := p
		if i := bytes.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if dots(seg) == 1 || dots(seg) == 2 {
			return true
		}
	}
	return false
}

// dots returns how many dots seg is made of, raw or as %2E (0 when it
// has anything else).
func dots(seg []byte) int {
	n := 0
	for i := 0; i < len(seg); n++ {
		switch {
		case seg[i] == '.':
			i++
		case len(seg)-i >= 3 && seg[i] == '%' && seg[i+1] == '2' && seg[i+2]|0x20 == 'e':
			i += 3
		default:
			return 0
		}
	}
	return n
}
