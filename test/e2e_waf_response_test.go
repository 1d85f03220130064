package e2e_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// sqlLeak is a MySQL error page, what the CRS's data-leakage rules
// (RESPONSE-951) look for in responses.
const sqlLeak = "<html><body>You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''' at line 1</body></html>"

// bigPage is about 300 KiB of benign HTML.
func bigPage() []byte {
	return bytes.Repeat([]byte("<p>Trail running shoes, all sizes.</p>\n"), 300<<10/40)
}

// leakyBackend answers /leak with an SQL error page, /late with one after
// 8 KiB of text, /binary with one as application/octet-stream, /big
// with 300 KiB of plain HTML (written in pieces, flushed) and /head with
// a header that names a server-side error.
func leakyBackend(t *testing.T) string {
	big := bigPage()
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/detect") {
		case "/leak":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, sqlLeak)
		case "/late":
			w.Header().Set("Content-Type", "text/html")
			w.Write(bytes.Repeat([]byte("x"), 8<<10))
			fmt.Fprint(w, sqlLeak)
		case "/binary":
			w.Header().Set("Content-Type", "application/octet-stream")
			fmt.Fprint(w, sqlLeak)
		case "/big":
			w.Header().Set("Content-Type", "text/html")
			for p := big; len(p) > 0; {
				n := min(len(p), 16<<10)
				w.Write(p[:n])
				w.(http.Flusher).Flush()
				p = p[n:]
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true}`)
		}
	})
	return be.URL
}

// TestWAFResponseInspection: with response inspection on, a response
// that leaks an SQL error is replaced by a 403 (access line and audit
// line name the rule, the rejection is counted), while a long benign
// body streams through whole; a leak past the inspected bytes, or in a
// type that is not inspected, passes; detect mode lets the leak through
// and audits it.
func TestWAFResponseInspection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := leakyBackend(t)
		g := startGateway(t, engine, fmt.Sprintf(`server:
  listen: %s
  %s
admin: { listen: "127.0.0.1:0" }
log: { format: json, level: info, access: true }
middlewares:
  - name: waf
    response: { enabled: true, max_body_bytes: 4096 }
routes:
  - path: "/detect/"
    backend: %q
    middlewares:
      - { name: waf, mode: detect }
  - path: "/"
    backend: %q
`, anyPort, engineYAML(engine), be, be))
		c := newClient(t)
		get := func(path string) (*http.Response, []byte) {
			req, _ := http.NewRequest("GET", g.URL()+path, nil)
			req.Host = "shop.example.com"
			return do(t, c, req)
		}

		resp, body := get("/leak")
		eb := checkErrorResponse(t, resp, body, 403)
		if msg, _ := g.accessLine(t, eb.RequestID)["error"].(string); !strings.HasPrefix(msg, "waf response") {
			t.Errorf("access line error %q, want the WAF's response verdict", msg)
		}
		waitLog(t, g, `"msg":"waf","request_id":"`+eb.RequestID+`"`)
		audit := logLineWith(g, `"msg":"waf","request_id":"`+eb.RequestID+`"`)
		if !strings.Contains(audit, `"phase":"response"`) || !strings.Contains(audit, "951230") || !strings.Contains(audit, `"action":"response_block"`) {
			t.Errorf("audit line %s: want the response phase, rule 951230 and the block", audit)
		}

		resp, body = get("/big")
		if resp.StatusCode != 200 || !bytes.Equal(body, bigPage()) {
			t.Errorf("benign 300 KiB page: %d, %d bytes", resp.StatusCode, len(body))
		}
		for _, p := range []string{"/late", "/binary", "/api"} {
			if resp, body = get(p); resp.StatusCode != 200 {
				t.Errorf("%s: %d %s, want it through (not inspected)", p, resp.StatusCode, body)
			}
		}
		resp, body = get("/detect/leak")
		if resp.StatusCode != 200 || string(body) != sqlLeak {
			t.Errorf("detect mode: %d %q, want the page through", resp.StatusCode, body)
		}
		id := resp.Header.Get("X-Request-Id")
		waitLog(t, g, `"msg":"waf","request_id":"`+id+`"`)
		if a := logLineWith(g, `"msg":"waf","request_id":"`+id+`"`); !strings.Contains(a, `"action":"response_detect"`) {
			t.Errorf("detect audit line %s", a)
		}
		req, _ := http.NewRequest("GET", "http://"+adminAddr(t, g)+"/metrics", nil)
		_, m := do(t, c, req)
		for _, want := range []string{`rustygate_waf_rejected_total{reason="response_blocked",route="/"} 1`, `rustygate_waf_requests_total{action="response_block",route="/"} 1`, `rustygate_waf_requests_total{action="response_pass",route="/"}`} {
			if !strings.Contains(string(m), want) {
				t.Errorf("metrics lack %s:\n%s", want, grepLines(string(m), "rustygate_waf_re"))
			}
		}
	})
}

// logLineWith returns the gateway's first log line containing s.
func logLineWith(g *gateway, s string) string {
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
