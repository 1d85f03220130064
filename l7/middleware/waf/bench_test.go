package waf

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// benchGET is a search request with four query arguments.
func benchGET() *fakeEx {
	return &fakeEx{method: "GET", uri: "/search?q=red+running+shoes&size=42&sort=price_asc&page=2", proto: "HTTP/1.1",
		headers: [][2]string{{"Host", "api.example.com"}, {"User-Agent", "wrk"}, {"Accept", "*/*"}}}
}

// benchJSON is a POST of a 2 KiB JSON order.
func benchJSON() *fakeEx {
	var items []string
	for i := 1; i <= 19; i++ {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%04d","name":"Trail running shoe, size %d","qty":%d,"unit_price":%d.99,"gift_wrap":false}`, i, 36+i, 1+i%3, 40+i))
	}
	body := `{"order_id":"8f14e45f-ceea-467a-9575-8b2c3d0e1a2b","customer":{"name":"Jane O'Connor","email":"jane.oconnor@example.com"},"items":[` +
		strings.Join(items, ",") + `],"notes":"Please leave the parcel at the door."}`
	return &fakeEx{method: "POST", uri: "/api/orders", proto: "HTTP/1.1", body: []byte(body),
		headers: [][2]string{{"Host", "api.example.com"}, {"User-Agent", "wrk"}, {"Accept", "*/*"},
			{"Content-Type", "application/json"}, {"Content-Length", strconv.Itoa(len(body))}}}
}

func benchHandle(b *testing.B, s *Settings, ex *fakeEx) {
	w := newWAF(b, s)
	if r := w.h.Handle(ex); r != nil {
		b.Fatalf("benchmark request refused: %s", r.LogReason)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.h.Handle(ex)
	}
}

func BenchmarkCRSGet(b *testing.B) { benchHandle(b, crsSettings(), benchGET()) }

func BenchmarkCRSPostJSON2K(b *testing.B) {
	ex := benchJSON()
	if len(ex.body) < 2048 {
		b.Fatalf("body of %d bytes", len(ex.body))
	}
	benchHandle(b, crsSettings(), ex)
}

// BenchmarkRegexRules10 is the simple form: ten regex rules of the kind
// users write (literals, case-insensitive words, alternations) over the
// headers, path, query and a small body, without Coraza.
func BenchmarkRegexRules10(b *testing.B) {
	s := &Settings{Mode: ModeBlock, MaxBodyBytes: 1024, BodyLimitAction: BodyPass, CRS: CRS{ParanoiaLevel: 1, AnomalyThreshold: Thresholds{5, 4}}}
	for i, r := range [][2]string{
		{"header:User-Agent", `(?i)sqlmap|nikto|nmap`}, {"header:Referer", `<script`}, {"path", `/\.git/`},
		{"path", `\.\./`}, {"query", `(?i)union\s+select`}, {"query", `/etc/passwd`}, {"query", `<script`},
		{"body", `(?i)union\s+select`}, {"body", `\$\{jndi:`}, {"header:Cookie", `[\r\n]`},
	} {
		s.RegexRules = append(s.RegexRules, RegexRule{Name: "r" + strconv.Itoa(i), Target: r[0], Pattern: r[1]})
	}
	ex := benchGET()
	ex.method, ex.body = "POST", []byte(`{"name":"Jane","qty":2}`)
	benchHandle(b, s, ex)
}
