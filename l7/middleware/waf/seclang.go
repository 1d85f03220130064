package waf

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"weak"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

// baseDirectives configure the engine the way the CRS expects (after
// Coraza's recommended configuration): body processors chosen by
// Content-Type, a whole body that does not parse refused (a truncated
// one is inspected as far as it parses), responses not
// inspected. The engine always interrupts: detect mode lets the request
// through after the verdict, so that both modes match the same rules.
// %d is the body limit Coraza applies,
// one byte over what the gateway gives it so that it can tell a
// truncated body (INBOUND_DATA_ERROR) from a whole one.
const baseDirectives = `SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit %d
SecRequestBodyInMemoryLimit %d
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 1024
SecResponseBodyAccess Off
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body',chain"
SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation',chain"
SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"
`

// responseDirectives turn on the inspection of response bodies (the
// gateway holds at most %d bytes of one; a longer body is inspected as
// far as that), for the types listed.
const responseDirectives = `SecResponseBodyAccess On
SecResponseBodyLimit %d
SecResponseBodyLimitAction ProcessPartial
SecResponseBodyMimeType %s
`

// crsSetup configures the CRS (as crs-setup.conf does) before its rules
// (with default actions for the response phases too, so that the
// data-leakage rules log as the request rules do):
// the paranoia level and thresholds of the settings, and the methods and
// content types of an API (the CRS default allows neither PUT, PATCH and
// DELETE nor JSON patches).
const crsSetup = `SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecDefaultAction "phase:3,log,auditlog,pass"
SecDefaultAction "phase:4,log,auditlog,pass"
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d"
SecAction "id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=%d"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
SecAction "id:900220,phase:1,pass,t:none,nolog,setvar:'tx.allowed_request_content_type=|application/x-www-form-urlencoded| |multipart/form-data| |text/xml| |application/xml| |application/soap+xml| |application/json| |application/merge-patch+json| |application/json-patch+json| |application/problem+json|'"
SecAction "id:900990,phase:1,pass,t:none,nolog,setvar:tx.crs_setup_version=4250"
Include @owasp_crs/*.conf
`

// part is one piece of an entry's directives and where it comes from:
// field is the settings key a problem in it is reported at ("" for
// what the gateway generates).
type part struct {
	field string
	text  string
	file  string // set for a rules file: text is read from it
}

// directives returns the parts of an entry's configuration, in order.
func directives(s *Settings) []part {
	limit := s.MaxBodyBytes + 1
	parts := []part{{text: fmt.Sprintf(baseDirectives, limit, limit)}}
	if r := s.Response; r.Enabled && r.MaxBodyBytes > 0 {
		parts = append(parts, part{text: fmt.Sprintf(responseDirectives, r.MaxBodyBytes, strings.Join(r.MIMETypes, " "))})
	}
	if s.CRS.Enabled {
		t := s.CRS.AnomalyThreshold
		parts = append(parts, part{text: fmt.Sprintf(crsSetup, s.CRS.ParanoiaLevel, t.Inbound, t.Outbound)})
	}
	if strings.TrimSpace(s.Rules) != "" {
		parts = append(parts, part{field: "rules", text: s.Rules})
	}
	for i, f := range s.RulesFiles {
		parts = append(parts, part{field: fmt.Sprintf("rules_files[%d]", i), file: f})
	}
	var ex strings.Builder
	for _, id := range s.Exclusions.IDs {
		fmt.Fprintf(&ex, "SecRuleRemoveById %s\n", id)
	}
	for _, tag := range s.Exclusions.Tags {
		fmt.Fprintf(&ex, "SecRuleRemoveByTag %s\n", tag)
	}
	if ex.Len() > 0 {
		parts = append(parts, part{field: "exclusions", text: ex.String()})
	}
	return parts
}

// source returns the SecLang text of parts, rules files as Includes.
func source(parts []part) string {
	var b strings.Builder
	for _, p := range parts {
		if p.file != "" {
			fmt.Fprintf(&b, "Include %s\n", p.file)
			continue
		}
		b.WriteString(p.text)
		b.WriteString("\n")
	}
	return b.String()
}

// rootFS serves the embedded CRS for names with an @ (the way
// coraza-coreruleset names them, also when an Include joined them to a
// rules file's directory) and the host's files for the others.
type rootFS struct{}

func crsName(name string) (string, bool) {
	i := strings.IndexByte(name, '@')
	if i < 0 {
		return "", false
	}
	return name[i:], true
}

func (rootFS) Open(name string) (fs.File, error) {
	if n, ok := crsName(name); ok {
		return coreruleset.FS.Open(n)
	}
	return os.Open(name)
}

func (rootFS) ReadFile(name string) ([]byte, error) {
	if n, ok := crsName(name); ok {
		return fs.ReadFile(coreruleset.FS, n)
	}
	return os.ReadFile(name)
}

func (rootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if n, ok := crsName(name); ok {
		return fs.ReadDir(coreruleset.FS, n)
	}
	return os.ReadDir(name)
}

// compiled is a built Coraza WAF, shared by every route whose entry
// compiles to the same directives.
type compiled struct {
	waf coraza.WAF
}

var (
	cacheMu sync.Mutex
	cache   = map[string]weak.Pointer[compiled]{}
	// recent keeps the last builds alive between the configuration
	// check and the build that follows it.
	recent     [2]*compiled
	recentNext int
)

// compile returns the WAF of an entry, from the cache while an earlier
// build of the same directives is in use (a reload, the configuration
// check before the build, another route): the CRS is compiled once.
// Rules files are read again each time: their key includes their text.
func compile(s *Settings) (*compiled, error) {
	parts := directives(s)
	key, err := cacheKey(parts)
	if err != nil {
		return nil, err
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c := cache[key].Value(); c != nil {
		recent[recentNext] = c
		recentNext = (recentNext + 1) % len(recent)
		return c, nil
	}
	w, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(rootFS{}).WithDirectives(source(parts)))
	if err != nil {
		return nil, err
	}
	c := &compiled{waf: w}
	for k, p := range cache {
		if p.Value() == nil {
			delete(cache, k)
		}
	}
	cache[key] = weak.Make(c)
	recent[recentNext] = c
	recentNext = (recentNext + 1) % len(recent)
	return c, nil
}

// cacheKey is the directives with each rules file's content.
func cacheKey(parts []part) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.text)
		if p.file != "" {
			data, err := os.ReadFile(p.file)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\x00%s\x00%s", p.file, data)
		}
		b.WriteByte(0)
	}
	return b.String(), nil
}

// checkError is a problem of an entry's rules, at a settings key.
type checkError struct {
	field, msg string
}

// compileCheck compiles an entry's rules (keeping the result cached for
// its build) and, when they do not compile, finds the part and the line
// that fails: Coraza's errors carry no line.
func compileCheck(s *Settings) *checkError {
	parts := directives(s)
	for _, p := range parts {
		if p.file != "" {
			if _, err := os.ReadFile(p.file); err != nil {
				return &checkError{p.field, err.Error()}
			}
		}
	}
	if _, err := compile(s); err == nil {
		return nil
	} else if len(parts) == 0 {
		return &checkError{"", err.Error()}
	}
	for i, p := range parts {
		if p.field == "" {
			continue
		}
		if line, err := failingLine(parts[:i], p); err != nil {
			msg := "SecLang: " + corazaError(err)
			if line > 0 {
				msg = "line " + strconv.Itoa(line) + ": " + msg
			}
			if p.file != "" {
				msg = p.file + ": " + msg
			}
			return &checkError{p.field, msg}
		}
	}
	_, err := compile(s)
	return &checkError{"", "SecLang: " + corazaError(err)}
}

// corazaError is err without the wrapping Coraza adds around the
// parser's message.
func corazaError(err error) string {
	msg := err.Error()
	for _, p := range []string{"invalid WAF config from string: ", "failed to parse string: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// failingLine compiles before followed by growing prefixes of p, and
// returns the line (of p's text) of the first directive after which the
// rules fail, with the error; 0 and nil when p compiles.
func failingLine(before []part, p part) (int, error) {
	text := p.text
	if p.file != "" {
		data, err := os.ReadFile(p.file)
		if err != nil {
			return 0, err
		}
		text = string(data)
	}
	try := func(prefix string) error {
		_, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(rootFS{}).WithDirectives(source(before) + prefix))
		return err
	}
	lines := strings.Split(text, "\n")
	ends := directiveEnds(lines)
	if err := try(text); err == nil {
		return 0, nil
	} else if len(ends) == 0 {
		return 0, err
	}
	// The smallest prefix of whole directives that fails.
	lo, hi := 0, len(ends)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if try(strings.Join(lines[:ends[mid].end+1], "\n")) != nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	err := try(strings.Join(lines[:ends[lo].end+1], "\n"))
	if err == nil {
		err = try(text)
	}
	return ends[lo].start + 1, err
}

// span is where one directive lies: its first and last line (0-based).
type span struct{ start, end int }

// directiveEnds splits SecLang lines into directives as Coraza reads
// them: comments and blank lines skipped, a trailing backslash
// continuing a directive on the next line, backtick blocks kept whole.
func directiveEnds(lines []string) []span {
	var out []span
	start, open, inTicks := -1, false, false
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || (!open && t[0] == '#') {
			continue
		}
		if !open {
			start, open = i, true
		}
		switch {
		case !inTicks && strings.HasSuffix(t, "`"):
			inTicks = true
			continue
		case inTicks && t[0] == '`':
			inTicks = false
		case inTicks:
			continue
		}
		if strings.HasSuffix(t, "\\") {
			continue
		}
		out = append(out, span{start, i})
		open = false
	}
	return out
}
