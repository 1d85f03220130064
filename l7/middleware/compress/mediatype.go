package compress

import (
	"fmt"
	"strings"
)

// pattern is one entry of content_types: a media type ("text/html"), a
// whole type ("text/*"), or a structured-syntax family
// ("application/*+json").
type pattern struct {
	typ string
	// sub is the subtype, "" for any; suffix is the "+json" of a family.
	sub    string
	suffix string
}

// parsePattern reads a content_types entry.
func parsePattern(s string) (pattern, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	typ, sub, ok := strings.Cut(t, "/")
	switch {
	case !ok || !isToken(typ) || typ == "*":
		return pattern{}, fmt.Errorf("%q is not a media type (type/subtype, type/* or type/*+suffix)", s)
	case sub == "*":
		return pattern{typ: typ}, nil
	case strings.HasPrefix(sub, "*+") && isToken(sub[2:]):
		return pattern{typ: typ, suffix: sub[1:]}, nil
	case isToken(sub):
		return pattern{typ: typ, sub: sub}, nil
	}
	return pattern{}, fmt.Errorf("%q is not a media type (type/subtype, type/* or type/*+suffix; no parameters)", s)
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}*", c) >= 0 {
			return false
		}
	}
	return true
}

// matches reports whether the Content-Type value ct is in the pattern.
func (p *pattern) matches(typ, sub []byte) bool {
	if !equalFold(typ, p.typ) {
		return false
	}
	switch {
	case p.sub != "":
		return equalFold(sub, p.sub)
	case p.suffix != "":
		return len(sub) > len(p.suffix) && equalFold(sub[len(sub)-len(p.suffix):], p.suffix)
	}
	return true
}

// splitMediaType returns the type and subtype of a Content-Type value,
// parameters dropped; ok is false when it is not type/subtype.
func splitMediaType(ct []byte) (typ, sub []byte, ok bool) {
	if i := indexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = trimOWS(ct)
	i := indexByte(ct, '/')
	if i <= 0 || i == len(ct)-1 {
		return nil, nil, false
	}
	return ct[:i], ct[i+1:], true
}
