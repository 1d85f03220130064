package waf

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
)

// respEx is fakeEx with a response and per-request values.
type respEx struct {
	*fakeEx
	status  int
	rheader [][2]string
	values  map[string]any
}

func (r *respEx) Value(key string) any { return r.values[key] }
func (r *respEx) SetValue(key string, v any) {
	if r.values == nil {
		r.values = map[string]any{}
	}
	r.values[key] = v
}
func (r *respEx) ResponseStatus() int { return r.status }
func (r *respEx) ResponseHeaderNames(dst []string) []string {
	for _, h := range r.rheader {
		dst = append(dst, h[0])
	}
	return dst
}
func (r *respEx) ResponseHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.rheader {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

// sink is the client side of a response body filter.
type sink struct{ bytes.Buffer }

func (s *sink) Flush() error { return nil }

// respond runs ex's response (status, head, body) through the handler as
// the proxy does: it returns the bytes the client got, or the refusal.
func respond(h *handler, ex *respEx, body []byte, pieces int) ([]byte, error) {
	if h.ResponseNeeds(ex) == middleware.NeedNone {
		return body, nil
	}
	if err := h.OnResponse(ex); err != nil {
		return nil, err
	}
	var out sink
	f := h.FilterResponseBody(ex, &out)
	if f == nil {
		return body, nil
	}
	for i := range pieces {
		lo, hi := len(body)*i/pieces, len(body)*(i+1)/pieces
		if _, err := f.Write(body[lo:hi]); err != nil {
			f.Close(false)
			return nil, err
		}
		f.Flush()
	}
	if err := f.Close(true); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// leakCase is a response test of the CRS regression set.
type leakCase struct {
	Source   string            `json:"source"`
	Method   string            `json:"method"`
	URI      string            `json:"uri"`
	Headers  map[string]string `json:"headers"`
	Data     string            `json:"data"`
	Expect   []int             `json:"expect"`
	NoExpect []int             `json:"no_expect"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"response"`
}

// loadLeaks reads testdata/crs-responses.jsonl: the 92 response tests of
// the OWASP CRS project's regression suite (coreruleset repository,
// tests/regression/tests/RESPONSE-95x, commit 2cbd1d0), each with the
// response its test backend gives: /reflect answers the status, headers
// and body the request names (its Content-Type sniffed when none is
// given, as Go's net/http does), /post a JSON echo of the request body.
func loadLeaks(t *testing.T) []leakCase {
	data, err := os.ReadFile("testdata/crs-responses.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []leakCase
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var c leakCase
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		out = append(out, c)
	}
	return out
}

func (c *leakCase) exchange() *respEx {
	ex := &respEx{fakeEx: &fakeEx{method: c.Method, uri: c.URI, proto: "HTTP/1.1", body: []byte(c.Data)}, status: c.Response.Status}
	for k, v := range c.Headers {
		ex.headers = append(ex.headers, [2]string{k, v})
	}
	ex.headers = append(ex.headers, [2]string{"Content-Length", strconv.Itoa(len(c.Data))})
	for k, v := range c.Response.Headers {
		ex.rheader = append(ex.rheader, [2]string{k, v})
	}
	if c.Response.Headers["Content-Type"] == "" {
		ex.rheader = append(ex.rheader, [2]string{"Content-Type", http.DetectContentType([]byte(c.Response.Body))})
	}
	return ex
}

// auditedRules returns the rule ids of the audit line of a refusal.
func auditedRules(t *testing.T, log string) []string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	var line struct {
		RuleIDs []string `json:"rule_ids"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &line); err != nil {
		t.Fatalf("audit line %q: %v", lines[len(lines)-1], err)
	}
	return line.RuleIDs
}

// TestCRSResponseRegression runs the CRS's own response tests: every rule
// a test expects matches the response, and no rule a test rules out
// does. The outbound threshold is 1 so that any match refuses the
// response (and its audit line names the rules); the inbound one is high
// so that the requests, which carry the leaks in their bodies, pass.
func TestCRSResponseRegression(t *testing.T) {
	s := crsSettings()
	s.CRS.ParanoiaLevel = 4
	s.CRS.AnomalyThreshold = Thresholds{Inbound: 100000, Outbound: 1}
	s.Response = Response{Enabled: true, MaxBodyBytes: 64 << 10, MIMETypes: defaultResponseTypes}
	w := newWAF(t, s)
	cases := loadLeaks(t)
	if len(cases) < 90 {
		t.Fatalf("only %d cases", len(cases))
	}
	var failed []string
	for _, c := range cases {
		ex := c.exchange()
		if r := w.h.Handle(ex); r != nil {
			t.Fatalf("%s: request refused (%s)", c.Source, r.LogReason)
		}
		before := len(w.log.String())
		var ids []string
		if _, err := respond(w.h, ex, []byte(c.Response.Body), 3); err != nil {
			ids = auditedRules(t, w.log.String()[before:])
		}
		for _, id := range c.Expect {
			if !slices.Contains(ids, strconv.Itoa(id)) {
				failed = append(failed, c.Source+": no "+strconv.Itoa(id))
			}
		}
		for _, id := range c.NoExpect {
			if slices.Contains(ids, strconv.Itoa(id)) {
				failed = append(failed, c.Source+": unexpected "+strconv.Itoa(id))
			}
		}
	}
	t.Logf("%d CRS response tests, %d failed", len(cases), len(failed))
	if len(failed) > 0 {
		t.Errorf("failed:\n%s", strings.Join(failed, "\n"))
	}
}

// TestCRSResponseBlockedAtPL1: with the defaults (paranoia level 1,
// outbound threshold 4), the leaks of the regression set that PL1 rules
// catch are refused, and every FP test passes. Only the rules of PL1 are
// counted: higher levels' rules do not run.
func TestCRSResponseBlockedAtPL1(t *testing.T) {
	s := crsSettings()
	s.CRS.AnomalyThreshold.Inbound = 100000
	s.Response.Enabled = true
	w := newWAF(t, s)
	blocked, leaks := 0, 0
	for _, c := range loadLeaks(t) {
		ex := c.exchange()
		if r := w.h.Handle(ex); r != nil {
			t.Fatalf("%s: request refused (%s)", c.Source, r.LogReason)
		}
		_, err := respond(w.h, ex, []byte(c.Response.Body), 1)
		switch {
		case len(c.Expect) > 0 && !abovePL1[c.Expect[0]]:
			leaks++
			if err != nil {
				blocked++
			} else {
				t.Errorf("%s: leak of rule %d passed", c.Source, c.Expect[0])
			}
		case len(c.Expect) == 0 && len(c.NoExpect) > 0 && err != nil:
			t.Errorf("%s: refused (a false-positive test)", c.Source)
		}
	}
	t.Logf("PL1: %d of %d leaks refused", blocked, leaks)
	if leaks < 40 {
		t.Errorf("only %d leaks of PL1 rules in the set", leaks)
	}
}

// abovePL1 are the response rules of CRS 4.25 tagged paranoia-level/2 or
// more.
var abovePL1 = map[int]bool{950100: true, 953101: true, 954101: true, 955350: true, 956110: true}
