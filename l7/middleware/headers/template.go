package headers

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// claimsKey is the request value under which the jwt middleware stores
// the verified claims (a map[string]any).
const claimsKey = "jwt.claims"

// Placeholder kinds.
const (
	litPart = iota
	clientIPPart
	requestIDPart
	hostPart
	methodPart
	pathPart
	schemePart
	claimPart
	headerPart
)

var placeholders = map[string]int{
	"client_ip":  clientIPPart,
	"request_id": requestIDPart,
	"host":       hostPart,
	"method":     methodPart,
	"path":       pathPart,
	"scheme":     schemePart,
}

type part struct {
	kind int
	text string // the literal, claim name or header name
}

// template is a header value parsed at load. A constant one is its text.
type template struct {
	constant string
	parts    []part // nil: constant
}

// parseTemplate parses a header value.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{kind: litPart, text: lit.String()})
			lit.Reset()
		}
	}
	dynamic := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' && c != '\t' || c == 0x7f:
			return t, fmt.Errorf("control character 0x%02x in %q", c, s)
		case c == '{' && strings.HasPrefix(s[i:], "{{"), c == '}' && strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte(c)
			i++
		case c == '}':
			return t, fmt.Errorf("unbalanced '}' in %q (write }} for a brace)", s)
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return t, fmt.Errorf("unclosed placeholder in %q (write {{ for a brace)", s)
			}
			p, err := parsePlaceholder(s[i+1 : i+end])
			if err != nil {
				return t, err
			}
			flush()
			t.parts = append(t.parts, p)
			dynamic = true
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	if !dynamic {
		return template{constant: lit.String()}, nil
	}
	flush()
	return t, nil
}

func parsePlaceholder(name string) (part, error) {
	if k, ok := placeholders[name]; ok {
		return part{kind: k}, nil
	}
	switch {
	case strings.HasPrefix(name, "jwt.") && len(name) > len("jwt."):
		return part{kind: claimPart, text: name[len("jwt."):]}, nil
	case strings.HasPrefix(name, "header.") && validName(name[len("header."):]):
		return part{kind: headerPart, text: name[len("header."):]}, nil
	}
	return part{}, fmt.Errorf("unknown placeholder {%s} (known: {client_ip}, {request_id}, {host}, {method}, {path}, {scheme}, {jwt.CLAIM}, {header.NAME})", name)
}

// expand returns the value for r, and false when it is empty or unfit
// for a header (a control character from a claim).
func (t *template) expand(r middleware.Request, trusted clientip.Proxies) (string, bool) {
	if t.parts == nil {
		return t.constant, t.constant != ""
	}
	if len(t.parts) == 1 && t.parts[0].kind == claimPart {
		// A claim alone: its string is the value, without a copy.
		if s, ok := claim(r, t.parts[0].text).(string); ok {
			return s, s != "" && fieldValueOK(s)
		}
	}
	var b []byte
	for _, p := range t.parts {
		b = appendPart(b, p, r, trusted)
	}
	if len(b) == 0 || !fieldValueOK(string(b)) {
		return "", false
	}
	return string(b), true
}

func appendPart(b []byte, p part, r middleware.Request, trusted clientip.Proxies) []byte {
	switch p.kind {
	case litPart:
		return append(b, p.text...)
	case clientIPPart:
		return trusted.Client(r).AppendTo(b)
	case requestIDPart:
		return append(b, r.RequestID()...)
	case hostPart:
		return append(b, r.Host()...)
	case methodPart:
		return append(b, r.Method()...)
	case pathPart:
		return append(b, r.Path()...)
	case schemePart:
		return append(b, r.Scheme()...)
	case headerPart:
		return append(b, r.Header(p.text)...)
	case claimPart:
		return appendClaim(b, claim(r, p.text))
	}
	return b
}

func claim(r middleware.Request, name string) any {
	claims, _ := r.Value(claimsKey).(map[string]any)
	return claims[name]
}

// appendClaim appends a claim's value: strings as they are, numbers and
// booleans as JSON writes them, a list of those joined by ", " (an
// "aud" array); anything else appends nothing.
func appendClaim(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return append(b, v...)
	case float64:
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	case bool:
		return strconv.AppendBool(b, v)
	case []any:
		first := true
		for _, e := range v {
			switch e.(type) {
			case string, float64, bool:
			default:
				continue
			}
			if !first {
				b = append(b, ", "...)
			}
			b, first = appendClaim(b, e), false
		}
	}
	return b
}

// fieldValueOK reports a value with no control character but HTAB.
func fieldValueOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validName reports an RFC 9110 token.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
