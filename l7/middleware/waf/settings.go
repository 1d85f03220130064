package waf

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/rustygate/rustygate/config"
)

// Order is the place of waf in a route's chain: after the cheap
// refusals (ip_filter, redirect, cors, limits, rate_limit), so that a
// flood is cut before it costs an inspection, and before the
// authentication middlewares (basic_auth, jwt, forward_auth), so that
// attacks on login and token endpoints are inspected too and a request
// is never refused by auth without the WAF having seen it.
const Order = 22

// Values of mode and body_limit_action, and of a regex rule's action.
const (
	ModeBlock  = "block"
	ModeDetect = "detect"

	BodyPass   = "pass"
	BodyReject = "reject"

	ActionBlock = "block"
	ActionLog   = "log"
)

// Defaults and limits.
const (
	defaultMaxBody        = 128 << 10
	maxMaxBody            = 64 << 20
	defaultParanoia       = 1
	defaultInboundScore   = 5
	defaultOutboundScore  = 4
	maxRegexPatternLength = 4096
	defaultResponseBody   = 64 << 10
	maxResponseBody       = 16 << 20
)

// defaultResponseTypes are the response types whose bodies are inspected
// (those of CRS's crs-setup.conf example, and JSON).
var defaultResponseTypes = []string{"text/plain", "text/html", "text/xml", "application/json", "application/xml"}

// Settings are the keys of a `name: waf` entry.
type Settings struct {
	// CRS is the OWASP Core Rule Set embedded in the binary.
	CRS CRS `yaml:"crs"`
	// Mode: block refuses what the rules refuse; detect logs and counts
	// it and lets the request through.
	Mode string `yaml:"mode"`
	// Rules are SecLang directives, loaded after the CRS.
	Rules string `yaml:"rules"`
	// RulesFiles are files of SecLang directives, loaded after Rules.
	RulesFiles []string `yaml:"rules_files"`
	// Exclusions remove rules, by id (or id range) and by tag.
	Exclusions Exclusions `yaml:"exclusions"`
	// RegexRules are simple rules matched without SecLang.
	RegexRules []RegexRule `yaml:"regex_rules"`
	// MaxBodyBytes is how much of a request body is inspected.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// BodyLimitAction is what happens to a body larger than
	// MaxBodyBytes: pass (the rest goes uninspected) or reject (413).
	BodyLimitAction string `yaml:"body_limit_action"`
	// Response is the inspection of responses (the CRS's data-leakage
	// rules), off by default.
	Response Response `yaml:"response"`
}

// Response are the settings of response inspection.
type Response struct {
	Enabled bool `yaml:"enabled"`
	// MaxBodyBytes is how much of a response body is inspected: that
	// many bytes are held before anything is sent. 0 inspects the head
	// only.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MIMETypes are the Content-Types whose bodies are inspected.
	MIMETypes []string `yaml:"mime_types"`
}

// CRS are the settings of the Core Rule Set.
type CRS struct {
	Enabled          bool       `yaml:"enabled"`
	ParanoiaLevel    int        `yaml:"paranoia_level"`
	AnomalyThreshold Thresholds `yaml:"anomaly_threshold"`
}

// Thresholds are the CRS anomaly scores at which a request (inbound) or
// a response (outbound) is refused.
type Thresholds struct {
	Inbound  int `yaml:"inbound"`
	Outbound int `yaml:"outbound"`
}

// Exclusions remove rules from the set of an entry.
type Exclusions struct {
	// IDs are rule ids ("942100") or ranges ("920270-920280").
	IDs []string `yaml:"ids"`
	// Tags are rule tags ("attack-sqli", "paranoia-level/2").
	Tags []string `yaml:"tags"`
}

// RegexRule is one rule of the simple form.
type RegexRule struct {
	Name string `yaml:"name"`
	// Target: header:NAME, headers, path, query or body.
	Target  string `yaml:"target"`
	Pattern string `yaml:"pattern"`
	// Action: block (403) or log.
	Action string `yaml:"action"`
}

// defaults returns the settings of an entry that writes no key.
func defaults() any {
	return &Settings{
		CRS: CRS{
			Enabled:          true,
			ParanoiaLevel:    defaultParanoia,
			AnomalyThreshold: Thresholds{Inbound: defaultInboundScore, Outbound: defaultOutboundScore},
		},
		Mode:            ModeBlock,
		MaxBodyBytes:    defaultMaxBody,
		BodyLimitAction: BodyPass,
		Response:        Response{MaxBodyBytes: defaultResponseBody, MIMETypes: defaultResponseTypes},
	}
}

// Resolve fills each regex rule's default action.
func (s *Settings) Resolve() {
	for i := range s.RegexRules {
		if s.RegexRules[i].Action == "" {
			s.RegexRules[i].Action = ActionBlock
		}
	}
}

// usesSecLang reports whether the entry needs a Coraza WAF: the CRS or
// SecLang rules. Regex rules alone are matched without it.
func (s *Settings) usesSecLang() bool {
	return s.CRS.Enabled || strings.TrimSpace(s.Rules) != "" || len(s.RulesFiles) > 0
}

// Validate implements config.SettingsValidator. The SecLang rules are
// compiled (with the CRS when enabled), so that a rule that does not
// parse is reported at load with the line of the rules it is on.
func (s *Settings) Validate(c *config.SettingsCheck) {
	s.checkFields(c)
	s.checkRegexRules(c)
	if c.Enabled() && !s.usesSecLang() && len(s.RegexRules) == 0 {
		c.Errorf("", "no rules: enable crs, or write rules, rules_files or regex_rules")
	}
	if c.Enabled() && s.Response.Enabled && !s.usesSecLang() {
		c.Errorf("response.enabled", "needs SecLang rules (crs, rules or rules_files): regex rules see requests only")
	}
	if !s.usesSecLang() || !c.Files() {
		return
	}
	for i, f := range s.RulesFiles {
		if f == "" || strings.ContainsFunc(f, config.IsControl) {
			c.Errorf(fmt.Sprintf("rules_files[%d]", i), "invalid file name %q", f)
			return
		}
	}
	if err := compileCheck(s); err != nil {
		c.Errorf(err.field, "%s", err.msg)
	}
}

// checkFields checks each scalar field on its own.
func (s *Settings) checkFields(c *config.SettingsCheck) {
	if s.Mode != ModeBlock && s.Mode != ModeDetect {
		c.Errorf("mode", "unknown mode %q (supported: block, detect)", s.Mode)
	}
	if s.BodyLimitAction != BodyPass && s.BodyLimitAction != BodyReject {
		c.Errorf("body_limit_action", "unknown action %q (supported: pass, reject)", s.BodyLimitAction)
	}
	if s.MaxBodyBytes < 1 || s.MaxBodyBytes > maxMaxBody {
		c.Errorf("max_body_bytes", "must be between 1 and %d (got %d)", maxMaxBody, s.MaxBodyBytes)
	}
	if p := s.CRS.ParanoiaLevel; p < 1 || p > 4 {
		c.Errorf("crs.paranoia_level", "must be between 1 and 4 (got %d)", p)
	}
	if t := s.CRS.AnomalyThreshold.Inbound; t < 1 {
		c.Errorf("crs.anomaly_threshold.inbound", "must be at least 1 (got %d)", t)
	}
	if t := s.CRS.AnomalyThreshold.Outbound; t < 1 {
		c.Errorf("crs.anomaly_threshold.outbound", "must be at least 1 (got %d)", t)
	}
	if n := s.Response.MaxBodyBytes; n < 0 || n > maxResponseBody {
		c.Errorf("response.max_body_bytes", "must be between 0 and %d (got %d)", maxResponseBody, n)
	}
	for i, t := range s.Response.MIMETypes {
		if !validMIMEType(t) {
			c.Errorf(fmt.Sprintf("response.mime_types[%d]", i), "invalid media type %q (want type/subtype, such as application/json)", t)
		}
	}
	for i, id := range s.Exclusions.IDs {
		if !validIDRange(id) {
			c.Errorf(fmt.Sprintf("exclusions.ids[%d]", i), "invalid rule id %q (want an id such as 942100 or a range such as 920270-920280)", id)
		}
	}
	for i, tag := range s.Exclusions.Tags {
		if tag == "" || strings.ContainsAny(tag, "\"'\\` \t\r\n") {
			c.Errorf(fmt.Sprintf("exclusions.tags[%d]", i), "invalid tag %q (no spaces, quotes or backslashes)", tag)
		}
	}
}

// validIDRange accepts "N" and "N-M" with N <= M, ids being positive.
func validIDRange(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || lo != strconv.Itoa(a) {
		return false
	}
	if !isRange {
		return true
	}
	b, err := strconv.Atoi(hi)
	return err == nil && b >= a && hi == strconv.Itoa(b)
}

// checkRegexRules checks the simple rules; their patterns compile.
func (s *Settings) checkRegexRules(c *config.SettingsCheck) {
	names := map[string]int{}
	for i, r := range s.RegexRules {
		p := fmt.Sprintf("regex_rules[%d]", i)
		switch first, dup := names[r.Name]; {
		case r.Name == "" || strings.ContainsFunc(r.Name, config.IsControl):
			c.Errorf(p+".name", "is required (a short name without control characters)")
		case dup:
			c.Errorf(p+".name", "duplicate name %q (also regex_rules[%d])", r.Name, first)
		default:
			names[r.Name] = i
		}
		if _, _, ok := parseTarget(r.Target); !ok {
			c.Errorf(p+".target", "unknown target %q (supported: header:NAME, headers, path, query, body)", r.Target)
		}
		switch {
		case r.Pattern == "":
			c.Errorf(p+".pattern", "is required")
		case len(r.Pattern) > maxRegexPatternLength:
			c.Errorf(p+".pattern", "is longer than %d bytes", maxRegexPatternLength)
		default:
			if _, err := regexp.Compile(r.Pattern); err != nil {
				c.Errorf(p+".pattern", "does not compile: %v", err)
			}
		}
		if r.Action != ActionBlock && r.Action != ActionLog {
			c.Errorf(p+".action", "unknown action %q (supported: block, log)", r.Action)
		}
	}
}

// validMIMEType accepts type/subtype made of RFC 9110 token characters,
// without parameters.
func validMIMEType(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	return ok && config.IsToken(typ) && config.IsToken(sub)
}
