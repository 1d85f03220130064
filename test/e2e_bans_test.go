package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBansFromJWTFailures: a client failing JWT validation jwt_failures
// times is banned; its new connections are refused at accept (userspace
// datapath), the ban shows in GET /admin/bans and DELETE lifts it, while
// other clients are served throughout.
func TestBansFromJWTFailures(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	yaml := fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0", token: "adm1n" }
log: { format: json, level: info, access: true }
datapath:
  mode: userspace
  bans: { jwt_failures: 3, jwt_window: 60s, duration: 30s }
middlewares:
  - { name: jwt, secret: "0123456789abcdef0123456789abcdef" }
routes:
  - path: "/"
    backend: %q
`, be.URL)
	g := startGateway(t, "fast", yaml)
	admin := adminAddr(t, g)

	// The offender comes from 127.0.0.3; a bystander from 127.0.0.1.
	offender := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext,
		DisableKeepAlives: true,
	}}
	for i := range 3 {
		req, _ := http.NewRequest("GET", g.URL()+"/x", nil)
		req.Header.Set("Authorization", "Bearer not-a-token")
		resp, err := offender.Do(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("attempt %d: status %d, want 401", i, resp.StatusCode)
		}
	}
	// Banned: the next connection is closed before any answer.
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := offender.Get(g.URL() + "/x")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("still served (status %d) after 3 JWT failures", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Others are not affected.
	bystander := newClient(t)
	req, _ := http.NewRequest("GET", g.URL()+"/x", nil)
	if resp, _ := do(t, bystander, req); resp.StatusCode != 401 {
		t.Fatalf("bystander got %d, want 401 (served, no token)", resp.StatusCode)
	}

	adminReq := func(method, path string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, "http://"+admin+path, nil)
		req.Header.Set("Authorization", "Bearer adm1n")
		return do(t, bystander, req)
	}
	resp, body := adminReq("GET", "/admin/bans")
	var bans []struct {
		IP    string    `json:"ip"`
		Until time.Time `json:"until"`
	}
	if err := json.Unmarshal(body, &bans); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /admin/bans: %d %s %v", resp.StatusCode, body, err)
	}
	if len(bans) != 1 || bans[0].IP != "127.0.0.3" || time.Until(bans[0].Until) < 20*time.Second {
		t.Fatalf("bans = %+v, want 127.0.0.3 for ~30s", bans)
	}
	for end := time.Now().Add(time.Second); !strings.Contains(g.logs.String(), `"msg":"client banned"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Errorf("no \"client banned\" log line")
			break
		}
	}
	// Without the token the list is refused.
	req, _ = http.NewRequest("GET", "http://"+admin+"/admin/bans", nil)
	if resp, _ := do(t, bystander, req); resp.StatusCode != 401 {
		t.Fatalf("GET /admin/bans without a token: %d, want 401", resp.StatusCode)
	}
	if resp, body := adminReq("DELETE", "/admin/bans/127.0.0.3"); resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	resp2, err := offender.Get(g.URL() + "/x")
	if err != nil {
		t.Fatalf("after unban: %v", err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 401 {
		t.Fatalf("after unban: status %d, want 401", resp2.StatusCode)
	}
}
