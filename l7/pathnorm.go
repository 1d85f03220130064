package l7

import (
	"bytes"
	"errors"

	"github.com/rustygate/rustygate/config"
)

// Path normalization: the one form of the request path that the router
// matches and that the backend receives, so that the gateway and a
// backend that decodes the path cannot disagree on what was asked for.
//
//   - %XX escapes of unreserved characters (ALPHA DIGIT - . _ ~) are
//     decoded; every other escape is kept, with upper-case hex digits;
//   - "." and ".." segments, raw or encoded, are refused;
//   - repeated slashes are merged when mergeSlashes is on;
//   - %2F and %5C follow the escaped-slash action: refused, kept, or
//     decoded to "/" (and then merged);
//   - a raw backslash and %00 are refused: backends disagree on the first
//     (a separator to Windows servers and WHATWG URL parsers, a plain byte
//     to nginx and Go) and C backends cut the path at the second.

// Escaped-slash actions.
const (
	slashesReject = iota
	slashesKeep
	slashesDecode
)

// pathOptions are the server's normalization settings.
type pathOptions struct {
	mergeSlashes   bool
	escapedSlashes int
}

// pathOptionsOf returns the normalization settings of a server section.
func pathOptionsOf(s *config.Server) pathOptions {
	o := pathOptions{mergeSlashes: s.Path.MergeSlashesEnabled()}
	switch s.Path.EscapedSlashes {
	case config.EscapedSlashesKeep:
		o.escapedSlashes = slashesKeep
	case config.EscapedSlashesDecode:
		o.escapedSlashes = slashesDecode
	}
	return o
}

// Normalization errors; each is answered with 400.
var (
	errEncodedSlash = errors.New("encoded slash in path")
	errBackslash    = errors.New("backslash in path")
	errEncodedNUL   = errors.New("encoded NUL in path")
)

// normalizePath returns the normalized form of the path p. When p is
// already normalized it is returned as is, without a copy; otherwise the
// result is built in dst (reused from its start) and returned.
func normalizePath(dst, p []byte, o pathOptions) ([]byte, error) {
	out := p
	if bytes.IndexByte(p, '%') >= 0 || bytes.IndexByte(p, '\\') >= 0 ||
		o.mergeSlashes && bytes.Index(p, doubleSlash) >= 0 {
		var err error
		if out, err = rewritePath(dst, p, o); err != nil {
			return nil, err
		}
	}
	if hasDotSegmentSep(out, o.escapedSlashes == slashesKeep) {
		return nil, errBadPath
	}
	return out, nil
}

var doubleSlash = []byte("//")

// rewritePath is normalizePath for a path that has an escape, a backslash
// or (when merging) repeated slashes. The result is built in dst; when it
// equals p (escapes already in normal form), p itself is returned.
func rewritePath(dst, p []byte, o pathOptions) ([]byte, error) {
	out := dst[:0]
	for i := 0; i < len(p); {
		switch c := p[i]; c {
		case '\\':
			return nil, errBackslash
		case '/':
			out = appendSlash(out, o.mergeSlashes)
			i++
		case '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return nil, errBadPath
			}
			var err error
			if out, err = appendUnescaped(out, unhex(p[i+1])<<4|unhex(p[i+2]), o); err != nil {
				return nil, err
			}
			i += 3
		default:
			j := i + 1
			for j < len(p) && p[j] != '/' && p[j] != '%' && p[j] != '\\' {
				j++
			}
			out = append(out, p[i:j]...)
			i = j
		}
	}
	if bytes.Equal(out, p) {
		return p, nil
	}
	return out, nil
}

// appendSlash appends '/' unless merging and out already ends with one.
func appendSlash(out []byte, merge bool) []byte {
	if merge && len(out) > 0 && out[len(out)-1] == '/' {
		return out
	}
	return append(out, '/')
}

// appendUnescaped appends the normal form of the escaped byte v.
func appendUnescaped(out []byte, v byte, o pathOptions) ([]byte, error) {
	switch {
	case v == 0:
		return nil, errEncodedNUL
	case v == '/' || v == '\\':
		switch o.escapedSlashes {
		case slashesReject:
			return nil, errEncodedSlash
		case slashesDecode:
			return appendSlash(out, o.mergeSlashes), nil
		}
	case unreservedByte[v]:
		return append(out, v), nil
	}
	return append(out, '%', upperHex[v>>4], upperHex[v&15]), nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

const upperHex = "0123456789ABCDEF"

// unreservedByte marks RFC 3986's unreserved characters.
var unreservedByte = alnumAnd("-._~")

// hasDotSegmentSep reports whether the normalized path p has a "." or
// ".." segment. With escapedSep, a kept %2F or %5C also separates
// segments: a backend that decodes it resolves "/a%2F..%2Fb" to "/b".
func hasDotSegmentSep(p []byte, escapedSep bool) bool {
	if bytes.IndexByte(p, '.') < 0 {
		return false
	}
	dots := 0 // dots since the last separator; -1: the segment is not dots only
	for i := 0; i <= len(p); i++ {
		sep := i == len(p) || p[i] == '/'
		n := 1
		if !sep && escapedSep && p[i] == '%' && i+2 < len(p) &&
			(p[i+1] == '2' && p[i+2] == 'F' || p[i+1] == '5' && p[i+2] == 'C') {
			sep, n = true, 3
		}
		if sep {
			if dots == 1 || dots == 2 {
				return true
			}
			dots = 0
			i += n - 1
			continue
		}
		if p[i] == '.' && dots >= 0 {
			dots++
		} else {
			dots = -1
		}
	}
	return false
}

// normalizeTarget puts the request's path in normalized form. When it
// changes, or the target was in absolute-form, the path and query are
// rebuilt in the request's scratch buffer (never over the received bytes)
// and the target becomes that origin-form path and query, so the access
// log, the trace and plugins see what was routed.
func (r *request) normalizeTarget(o pathOptions) error {
	if len(r.path) == 0 || r.path[0] != '/' {
		return nil // "*"
	}
	p, err := normalizePath(r.pathBuf, r.path, o)
	if err != nil {
		return err
	}
	if len(p) == len(r.path) && &p[0] == &r.path[0] {
		if !r.absolute {
			return nil
		}
		p = append(r.pathBuf[:0], p...)
	}
	n := len(p)
	buf := append(p, r.query...)
	r.pathBuf = buf
	r.path, r.query, r.target = buf[:n:n], buf[n:], buf
	return nil
}
