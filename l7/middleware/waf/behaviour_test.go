package waf

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// auditIDs returns the rule ids of the audit lines, one list per line.
func auditIDs(log string) []string {
	re := regexp.MustCompile(`"rule_ids":\[([^\]]*)\]`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestDetectModePassesAndLogsTheSameRules(t *testing.T) {
	block := newWAF(t, crsSettings())
	s := crsSettings()
	s.Mode = ModeDetect
	detect := newWAF(t, s)
	attacks := loadAttacks(t)
	for i := 0; i < len(attacks); i += 7 {
		a := attacks[i]
		if r := detect.h.Handle(a.exchange()); r != nil {
			t.Fatalf("%s: detect mode refused with %d", a.Source, r.Status)
		}
		block.h.Handle(a.exchange())
	}
	b, d := auditIDs(block.log.String()), auditIDs(detect.log.String())
	if len(b) < 50 || !slices.Equal(b, d) {
		t.Fatalf("block mode audited %d lines, detect mode %d; differ: %v", len(b), len(d), !slices.Equal(b, d))
	}
	if n := strings.Count(detect.log.String(), `"action":"detect"`); n != len(d) {
		t.Errorf("%d of %d detect audit lines say action detect", n, len(d))
	}
	if len(detect.rej.reasons) != 0 {
		t.Errorf("detect mode reported rejections %q (they would ban)", detect.rej.reasons)
	}
}

func TestExclusionsByIDAndTag(t *testing.T) {
	graphql := &fakeEx{method: "POST", uri: "/api/graphql", proto: "HTTP/1.1",
		body:    []byte(`{"query":"query Users($first: Int) { users(first: $first) { id } }","variables":{"first":10}}`),
		headers: [][2]string{{"Host", "api.example.com"}, {"Content-Type", "application/json"}, {"Content-Length", "86"}, {"User-Agent", "curl/8"}, {"Accept", "*/*"}}}
	sqli := &fakeEx{method: "GET", uri: "/search?q=1'+OR+'1'='1", proto: "HTTP/1.1",
		headers: [][2]string{{"Host", "api.example.com"}, {"User-Agent", "curl/8"}, {"Accept", "*/*"}}}
	w := newWAF(t, crsSettings())
	for _, ex := range []*fakeEx{graphql, sqli} {
		if r := w.h.Handle(ex); r == nil || r.Status != 403 {
			t.Fatalf("%s without exclusions: %v", ex.uri, r)
		}
	}
	if !strings.Contains(w.log.String(), `"942290"`) {
		t.Fatalf("GraphQL variables not refused by 942290: %s", w.log.String())
	}
	s := crsSettings()
	s.Exclusions.IDs = []string{"942290"}
	byID := newWAF(t, s)
	if r := byID.h.Handle(graphql); r != nil {
		t.Errorf("942290 excluded: GraphQL query still refused (%s)", r.LogReason)
	}
	if r := byID.h.Handle(sqli); r == nil {
		t.Error("942290 excluded: the SQL injection passes")
	}
	s = crsSettings()
	s.Exclusions.Tags = []string{"attack-sqli"}
	byTag := newWAF(t, s)
	for _, ex := range []*fakeEx{graphql, sqli} {
		if r := byTag.h.Handle(ex); r != nil {
			t.Errorf("attack-sqli excluded: %s still refused (%s)", ex.uri, r.LogReason)
		}
	}
	s = crsSettings()
	s.Exclusions.IDs = []string{"942000-942999"}
	if r := newWAF(t, s).h.Handle(sqli); r != nil {
		t.Errorf("942000-942999 excluded: still refused (%s)", r.LogReason)
	}
}

func TestRegexRulesEachTarget(t *testing.T) {
	s := &Settings{Mode: ModeBlock, MaxBodyBytes: 1024, BodyLimitAction: BodyPass, CRS: CRS{ParanoiaLevel: 1, AnomalyThreshold: Thresholds{5, 4}},
		RegexRules: []RegexRule{
			{Name: "agent", Target: "header:User-Agent", Pattern: `(?i)sqlmap`},
			{Name: "any-header", Target: "headers", Pattern: `(?i)^x-debug: on$`},
			{Name: "path", Target: "path", Pattern: `/\.git/`},
			{Name: "query", Target: "query", Pattern: `<script`},
			{Name: "body", Target: "body", Pattern: `(?i)union\s+select`},
			{Name: "watch", Target: "path", Pattern: `^/admin`, Action: ActionLog},
		}}
	w := newWAF(t, s)
	if w.h.waf != nil {
		t.Fatal("regex rules alone built a Coraza WAF")
	}
	req := func(method, uri, body string, hs ...[2]string) *fakeEx {
		return &fakeEx{method: method, uri: uri, proto: "HTTP/1.1", body: []byte(body), headers: append([][2]string{{"Host", "a"}}, hs...)}
	}
	for _, tc := range []struct {
		name string
		ex   *fakeEx
		want int
	}{
		{"header", req("GET", "/", "", [2]string{"User-Agent", "SQLMap/1.7"}), 403},
		{"headers", req("GET", "/", "", [2]string{"X-Debug", "on"}), 403},
		{"path", req("GET", "/app/.git/config", ""), 403},
		{"path encoded", req("GET", "/app/%2egit/config", ""), 403},
		{"query", req("GET", "/s?q=%3Cscript%3Ealert(1)", ""), 403},
		{"body", req("POST", "/f", "a=1 UNION  SELECT pw"), 403},
		{"log only", req("GET", "/admin/x", ""), 0},
		{"clean", req("POST", "/f?q=select", "a=union"), 0},
	} {
		r := w.h.Handle(tc.ex)
		if got := 0; r != nil {
			got = r.Status
			if got != tc.want {
				t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
			}
		} else if tc.want != 0 {
			t.Errorf("%s: passed, want %d", tc.name, tc.want)
		}
	}
	if !strings.Contains(w.log.String(), `"rule_ids":["regex:watch"],`) || !strings.Contains(w.log.String(), `"action":"log"`) {
		t.Errorf("no audit line of the log rule: %s", w.log.String())
	}
}

func TestBodyLimit(t *testing.T) {
	attack := "q=1' UNION SELECT password FROM users--"
	big := strings.Repeat("a=b&", 1000) + attack // the attack lies beyond 4000 bytes
	post := func(body string) *fakeEx {
		return &fakeEx{method: "POST", uri: "/f", proto: "HTTP/1.1", body: []byte(body), headers: [][2]string{
			{"Host", "a"}, {"User-Agent", "t"}, {"Accept", "*/*"},
			{"Content-Type", "application/x-www-form-urlencoded"}, {"Content-Length", strconv.Itoa(len(body))}}}
	}
	s := crsSettings()
	s.MaxBodyBytes = 1000
	pass := newWAF(t, s)
	if r := pass.h.Handle(post(attack)); r == nil || r.Status != 403 {
		t.Fatalf("attack within the limit: %v", r)
	}
	if r := pass.h.Handle(post(big)); r != nil {
		t.Fatalf("attack beyond the limit, body_limit_action pass: refused %d (%s)", r.Status, r.LogReason)
	}
	s = crsSettings()
	s.MaxBodyBytes, s.BodyLimitAction = 1000, BodyReject
	reject := newWAF(t, s)
	ex := post(big)
	if r := reject.h.Handle(ex); r == nil || r.Status != 413 {
		t.Fatalf("body over the limit, reject: %v", r)
	}
	if ex.bodyReads != 0 {
		t.Error("a body announced too large was read")
	}
	if r := reject.h.Handle(post(strings.Repeat("a=b&", 100))); r != nil {
		t.Fatalf("small body refused: %d", r.Status)
	}
}

func TestValidateReportsRulesAtTheirLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "custom.conf")
	os.WriteFile(file, []byte("# custom rules\nSecRule ARGS \"@rx evil\" \\\n  \"id:10001,phase:2,deny,status:403\"\n\nSecRulez ARGS \"@rx x\" \"id:10002\"\n"), 0o600)
	check := func(s *Settings) []string {
		s.Resolve()
		var out []string
		s.Validate(configCheck(func(field, msg string) { out = append(out, field+": "+msg) }))
		return out
	}
	s := crsSettings()
	s.CRS.Enabled = false
	s.RulesFiles = []string{file}
	got := check(s)
	want := "rules_files[0]: " + file + `: line 5: SecLang: unknown directive "secrulez"`
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("got %q, want %q", got, want)
	}
	s = crsSettings()
	s.CRS.Enabled = false
	s.Rules = "SecRule ARGS \"@rx ok\" \"id:10003,phase:2,deny\"\nSecRule ARGS \"@rx (\" \"id:10004,phase:2,deny\"\n"
	if got := check(s); len(got) != 1 || !strings.HasPrefix(got[0], "rules: line 2: SecLang: ") {
		t.Errorf("inline: %q", got)
	}
	s = &Settings{Mode: "stop", BodyLimitAction: "drop", MaxBodyBytes: 0, CRS: CRS{Enabled: true, ParanoiaLevel: 5},
		Exclusions: Exclusions{IDs: []string{"12-3"}, Tags: []string{"a b"}},
		RegexRules: []RegexRule{{Name: "x", Target: "cookie", Pattern: "("}, {Name: "x", Target: "path", Pattern: "a", Action: "drop"}}}
	wantAll := []string{
		`mode: unknown mode "stop" (supported: block, detect)`,
		`body_limit_action: unknown action "drop" (supported: pass, reject)`,
		`max_body_bytes: must be between 1 and 67108864 (got 0)`,
		`crs.paranoia_level: must be between 1 and 4 (got 5)`,
		`crs.anomaly_threshold.inbound: must be at least 1 (got 0)`,
		`crs.anomaly_threshold.outbound: must be at least 1 (got 0)`,
		`exclusions.ids[0]: invalid rule id "12-3" (want an id such as 942100 or a range such as 920270-920280)`,
		`exclusions.tags[0]: invalid tag "a b" (no spaces, quotes or backslashes)`,
		`regex_rules[0].target: unknown target "cookie" (supported: header:NAME, headers, path, query, body)`,
		"regex_rules[0].pattern: does not compile: error parsing regexp: missing closing ): `(`",
		`regex_rules[1].name: duplicate name "x" (also regex_rules[0])`,
		`regex_rules[1].action: unknown action "drop" (supported: block, log)`,
	}
	got = check(s)
	if strings.Join(got[:min(len(got), len(wantAll))], "\n") != strings.Join(wantAll, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantAll, "\n"))
	}
}

// TestValidateResponseSettings: the response keys are checked, and
// response inspection needs SecLang rules.
func TestValidateResponseSettings(t *testing.T) {
	s := defaults().(*Settings)
	s.Response = Response{Enabled: true, MaxBodyBytes: -1, MIMETypes: []string{"text/html", "text/html; charset=utf-8", "json"}}
	s.CRS.Enabled = false
	s.RegexRules = []RegexRule{{Name: "a", Target: "path", Pattern: "x", Action: ActionBlock}}
	var got []string
	s.Validate(configCheck(func(field, msg string) { got = append(got, field+": "+msg) }))
	want := []string{
		`response.enabled: needs SecLang rules (crs, rules or rules_files): regex rules see requests only`,
		`response.max_body_bytes: must be between 0 and 16777216 (got -1)`,
		`response.mime_types[1]: invalid media type "text/html; charset=utf-8" (want type/subtype, such as application/json)`,
		`response.mime_types[2]: invalid media type "json" (want type/subtype, such as application/json)`,
	}
	slices.Sort(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestConcurrentVerdicts: one handler (one rule set, the RE2 matchers
// shared) gives every concurrent request the verdict it gives alone.
func TestConcurrentVerdicts(t *testing.T) {
	w := newWAF(t, crsSettings())
	attacks := loadAttacks(t)[:40]
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		benign := loadBenign(t) // an exchange is one request's: not shared
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range attacks {
				a := attacks[(i+g*10)%len(attacks)]
				if r := w.h.Handle(a.exchange()); r == nil || r.Status != 403 {
					errs <- a.Source + " passed"
					return
				}
				if r := w.h.Handle(benign[(i+g)%len(benign)]); r != nil {
					errs <- "benign refused"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
