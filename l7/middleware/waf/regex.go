package waf

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Targets of a regex rule.
const (
	targetHeader uint8 = iota + 1
	targetHeaders
	targetPath
	targetQuery
	targetBody
)

// parseTarget reads a regex rule's target.
func parseTarget(s string) (kind uint8, header string, ok bool) {
	switch s {
	case "headers":
		return targetHeaders, "", true
	case "path":
		return targetPath, "", true
	case "query":
		return targetQuery, "", true
	case "body":
		return targetBody, "", true
	}
	name, found := strings.CutPrefix(s, "header:")
	if !found || name == "" || strings.ContainsAny(name, " \t:\r\n") {
		return 0, "", false
	}
	return targetHeader, name, true
}

// regexRule is a compiled regex rule.
type regexRule struct {
	name   string
	kind   uint8
	header string
	re     *regexp.Regexp
	block  bool
}

func compileRegexRules(rules []RegexRule) []regexRule {
	out := make([]regexRule, 0, len(rules))
	for _, r := range rules {
		kind, header, _ := parseTarget(r.Target)
		out = append(out, regexRule{name: r.Name, kind: kind, header: header,
			re: regexp.MustCompile(r.Pattern), block: r.Action == ActionBlock})
	}
	return out
}

// regexHit is a regex rule that matched.
type regexHit struct {
	rule    *regexRule
	matched string
}

// matchRegex runs the rules on the request, body the inspected prefix,
// and returns those that matched (a blocking one first, when any).
// RE2 matching is linear in the input: a pattern cannot be made to take
// exponential time.
func matchRegex(rules []regexRule, ex middleware.Exchange, body []byte, hits []regexHit) []regexHit {
	var vals [][]byte
	var path, query decoded
	for i := range rules {
		r := &rules[i]
		var m []byte
		switch r.kind {
		case targetHeader:
			vals = ex.RequestHeaderValues(r.header, vals[:0])
			m = firstMatch(r.re, vals)
		case targetHeaders:
			m = matchHeaders(r.re, ex)
		case targetPath:
			m = path.match(r.re, ex.Path(), false)
		case targetQuery:
			if _, q, ok := bytes.Cut(ex.URI(), []byte{'?'}); ok {
				m = query.match(r.re, q, true)
			}
		case targetBody:
			m = r.re.Find(body)
		}
		if m != nil {
			hits = append(hits, regexHit{rule: r, matched: string(m)})
			if r.block && !hits[0].rule.block {
				hits[0], hits[len(hits)-1] = hits[len(hits)-1], hits[0]
			}
		}
	}
	return hits
}

func firstMatch(re *regexp.Regexp, vals [][]byte) []byte {
	for _, v := range vals {
		if m := re.Find(v); m != nil {
			return m
		}
	}
	return nil
}

// matchHeaders matches each header line as "Name: value".
func matchHeaders(re *regexp.Regexp, ex middleware.Exchange) []byte {
	var line []byte
	var vals [][]byte
	for _, name := range ex.RequestHeaderNames(nil) {
		vals = ex.RequestHeaderValues(name, vals[:0])
		for _, v := range vals {
			line = append(append(append(line[:0], name...), ": "...), v...)
			if m := re.Find(line); m != nil {
				return m
			}
		}
	}
	return nil
}

// decoded is a path or query percent-decoded once for every rule of a
// request that reads it.
type decoded struct {
	done bool
	ok   bool
	s    string
}

// match matches raw as received and, when it holds escapes,
// percent-decoded (and with + as a space in a query), so that encoding
// an attack does not hide it.
func (d *decoded) match(re *regexp.Regexp, raw []byte, query bool) []byte {
	if m := re.Find(raw); m != nil {
		return m
	}
	if !d.done {
		d.done = true
		if bytes.IndexByte(raw, '%') < 0 && (!query || bytes.IndexByte(raw, '+') < 0) {
			return nil
		}
		var err error
		if query {
			d.s, err = url.QueryUnescape(string(raw))
		} else {
			d.s, err = url.PathUnescape(string(raw))
		}
		d.ok = err == nil
	}
	if !d.ok {
		return nil
	}
	if loc := re.FindStringIndex(d.s); loc != nil {
		return []byte(d.s[loc[0]:loc[1]])
	}
	return nil
}
