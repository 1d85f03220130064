package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wafConfig routes / to backend behind a CRS WAF inspecting 64 KiB of
// each body, with the admin listener (metrics) on.
func wafConfig(engine, backend, bans string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
admin: { listen: "127.0.0.1:0", token: "adm1n" }
log: { format: json, level: info, access: true }
datapath:
  mode: userspace
  bans: { %s }
middlewares:
  - name: waf
    max_body_bytes: 65536
    regex_rules:
      - { name: no-git, target: path, pattern: '/\.git/' }
routes:
  - path: "/"
    backend: %q
    timeouts: { total: 120s }   # the 256 MiB upload, on a loaded machine
`, anyPort, engineYAML(engine), bans, backend)
}

// hashingBackend answers with the length and SHA-256 of the body it got.
func hashingBackend(t *testing.T) string {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	})
	return be.URL
}

// TestWAFThroughEachEngine: attacks in the query, a JSON body and the
// path are refused with the gateway's JSON error, the access line naming
// the WAF and its rules and an audit line beside it; benign requests and
// a large upload (only its first 64 KiB inspected) reach the backend
// intact, and the gateway's peak memory does not grow with the upload.
func TestWAFThroughEachEngine(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, wafConfig(engine, hashingBackend(t), ""))
		c := newClient(t)

		resp, body := get(t, c, g.URL()+"/search?q=1'+UNION+SELECT+password+FROM+users--")
		eb := checkErrorResponse(t, resp, body, 403)
		line := g.accessLine(t, eb.RequestID)
		if msg, _ := line["error"].(string); !strings.HasPrefix(msg, "waf ") || !strings.Contains(msg, "942100") || !strings.Contains(msg, "949110") {
			t.Errorf("access line error %q, want the WAF and its rule ids", msg)
		}
		waitLog(t, g, `"msg":"waf","request_id":"`+eb.RequestID+`"`)

		req, _ := http.NewRequest("POST", g.URL()+"/api/users", strings.NewReader(`{"name":"<script>alert(document.cookie)</script>"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, body = do(t, c, req)
		checkErrorResponse(t, resp, body, 403)

		resp, body = get(t, c, g.URL()+"/app/.git/config")
		eb = checkErrorResponse(t, resp, body, 403)
		if msg, _ := g.accessLine(t, eb.RequestID)["error"].(string); msg != "waf regex:no-git" {
			t.Errorf("access line error %q", msg)
		}

		req, _ = http.NewRequest("POST", g.URL()+"/api/users", strings.NewReader(`{"name":"Jane O'Connor","email":"jane@example.com"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Host = "api.example.com" // a numeric Host counts 3 points in the CRS
		if resp, body = do(t, c, req); resp.StatusCode != 200 {
			t.Fatalf("benign JSON: %d %s", resp.StatusCode, body)
		}
		uploadThroughWAF(t, g, c)
	})
}

// uploadThroughWAF streams a multipart upload much larger than what the
// WAF inspects, chunked (no Content-Length), and checks the bytes at the
// backend and the gateway's peak RSS.
func uploadThroughWAF(t *testing.T, g *gateway, c *http.Client) {
	const size = 256 << 20
	before := peakRSS(t, g)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	sum := sha256.New()
	go func() {
		fw, _ := mw.CreateFormFile("file", "backup-2024.tar")
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = byte('a' + i%26)
		}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := fw.Write(chunk); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", g.URL()+"/upload", io.TeeReader(pr, sum))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Host = "api.example.com"
	start := time.Now()
	resp, body := do(t, c, req)
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	n, hash, _ := strings.Cut(string(body), " ")
	if got, _ := strconv.Atoi(n); got <= size || hash != hex.EncodeToString(sum.Sum(nil)) {
		t.Fatalf("backend got %s bytes, hash %s; sent hash %x", n, hash, sum.Sum(nil))
	}
	growth := peakRSS(t, g) - before
	t.Logf("%d MiB through the WAF in %v; peak RSS grew by %d KiB", size>>20, time.Since(start).Round(time.Millisecond), growth>>10)
	if growth > 64<<20 {
		t.Errorf("peak RSS grew by %d MiB for a %d MiB upload: the body is held", growth>>20, size>>20)
	}
}

// peakRSS is the gateway process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, g *gateway) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// waitLog waits up to 3 s for a log line containing s.
func waitLog(t *testing.T, g *gateway, s string) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); !strings.Contains(g.logs.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no log line with %s", s)
		}
	}
}

// TestBansFromWAFBlocks: a client whose requests the WAF refuses
// waf_blocks times is banned (userspace datapath): its connections are
// refused and the ban shows in /admin/bans; a client whose requests pass
// is served throughout.
func TestBansFromWAFBlocks(t *testing.T) {
	g := startGateway(t, "fast", wafConfig("fast", hashingBackend(t), "waf_blocks: 3, waf_window: 60s, duration: 30s"))
	offender := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext,
		DisableKeepAlives: true,
	}}
	for i := range 3 {
		resp, err := offender.Get(g.URL() + "/?file=../../../../etc/passwd")
		if err != nil {
			t.Fatalf("attack %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("attack %d: status %d, want 403", i, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := offender.Get(g.URL() + "/fine")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("still served (status %d) after 3 WAF blocks", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := newClient(t)
	if resp, body := get(t, c, g.URL()+"/fine"); resp.StatusCode != 200 {
		t.Fatalf("bystander: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr(t, g)+"/admin/bans", nil)
	req.Header.Set("Authorization", "Bearer adm1n")
	if _, body := do(t, c, req); !strings.Contains(string(body), `"ip": "127.0.0.3"`) {
		t.Fatalf("/admin/bans: %s", body)
	}
	waitLog(t, g, `"reason":"waf_blocks"`)
	req, _ = http.NewRequest("GET", "http://"+adminAddr(t, g)+"/metrics", nil)
	_, body := do(t, c, req)
	for _, want := range []string{`rustygate_waf_requests_total{action="block",route="/"} 3`, `rustygate_waf_rule_hits_total{route="/",rule_id="930120"}`, `rustygate_waf_inspection_seconds_count{route="/"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestWAFRulesReload: a rules file's change takes effect on reload; a
// rule that does not parse fails the reload with the configuration's
// file:line, the key and the rules file's line, and the running rules
// stay.
func TestWAFRulesReload(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "custom.conf")
	write := func(s string) {
		if err := os.WriteFile(rules, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(word string, id int) string {
		return fmt.Sprintf("# words we refuse\nSecRule ARGS \"@contains %s\" \"id:%d,phase:2,deny,status:403,msg:'%s'\"\n", word, id, word)
	}
	write(rule("forbidden-word", 10001))
	g := startGateway(t, "fast", fmt.Sprintf(`server: { listen: %s }
admin: { listen: "off" }
log: { format: json, level: info, access: true }
middlewares:
  - name: waf
    crs: { enabled: false }
    rules_files: [%q]
routes:
  - path: "/"
    backend: %q
`, anyPort, rules, hashingBackend(t)))
	c := newClient(t)
	status := func(q string) int {
		resp, _ := get(t, c, g.URL()+"/?q="+q)
		return resp.StatusCode
	}
	if a, b := status("forbidden-word"), status("other-word"); a != 403 || b != 200 {
		t.Fatalf("before reload: %d %d, want 403 200", a, b)
	}
	write(rule("other-word", 10002))
	g.Signal(syscall.SIGHUP)
	waitLog(t, g, `"msg":"Config reloaded"`)
	if a, b := status("forbidden-word"), status("other-word"); a != 200 || b != 403 {
		t.Fatalf("after reload: %d %d, want 200 403", a, b)
	}
	write(rule("other-word", 10002) + "\nSecRule ARGS \"@rx (\" \"id:10003,phase:2,deny\"\n")
	g.Signal(syscall.SIGHUP)
	waitLog(t, g, `"msg":"config reload failed`)
	want := `rustygate.yaml:7: middlewares[0].rules_files[0]: ` + rules + `: line 4: SecLang: `
	if !strings.Contains(g.logs.String(), want) {
		t.Errorf("reload failure does not say %q", want)
	}
	if b := status("other-word"); b != 403 {
		t.Fatalf("after a failed reload: %d, want 403 (rules kept)", b)
	}
}
