package e2e_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// baBcrypt returns a bcrypt hash of pass with the $2y$ prefix htpasswd -B
// writes.
func baBcrypt(t *testing.T, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2y$" + string(h[4:])
}

// baArgon2id returns an argon2id PHC string of pass.
func baArgon2id(pass string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pass), salt, 2, 19*1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=2,p=1$%s$%s", 19*1024,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// TestBasicAuth: users inline (bcrypt) and from an htpasswd file
// (argon2id); the 401 challenge; the backend gets the user's name and no
// credentials; refusals are counted by reason.
func TestBasicAuth(t *testing.T) {
	alice := baBcrypt(t, "wonderland")
	users := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(users, []byte("# staff\nbob:"+baArgon2id("builder")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		rec, be := polBackend(t)
		routes := fmt.Sprintf(`  - path: "/api"
    backend: %q
    middlewares:
      - name: basic_auth
        realm: "Staff only"
        users: [%q]
        users_file: %q
        user_header: X-Auth-User
`, be, "alice:"+alice, users)
		g, admin := startPolicyGateway(t, engine, policyConfig(engine, "", routes))
		c := newClient(t)
		send := func(user, pass string, extra ...string) (*http.Response, []byte) {
			req, _ := http.NewRequest(http.MethodGet, g.URL()+"/api/x", nil)
			if user != "" {
				req.SetBasicAuth(user, pass)
			}
			for i := 0; i+1 < len(extra); i += 2 {
				req.Header.Set(extra[i], extra[i+1])
			}
			return do(t, c, req)
		}

		resp, _ := send("", "")
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="Staff only", charset="UTF-8"` {
			t.Fatalf("no credentials: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		for _, bad := range [][2]string{{"alice", "wrong"}, {"mallory", "wonderland"}, {"bob", "wonderland"}} {
			if resp, _ := send(bad[0], bad[1]); resp.StatusCode != 401 {
				t.Errorf("%s with a wrong password: %d", bad[0], resp.StatusCode)
			}
		}
		if rec.count() != 0 {
			t.Fatalf("the backend got %d refused requests", rec.count())
		}
		for range 2 { // the second time from the cache
			resp, body := send("alice", "wonderland", "X-Auth-User", "forged")
			if resp.StatusCode != 200 {
				t.Fatalf("alice: %d %q", resp.StatusCode, body)
			}
			s := rec.last(t)
			if got := s.Header.Values("X-Auth-User"); len(got) != 1 || got[0] != "alice" {
				t.Errorf("backend got X-Auth-User %q, want [alice]", got)
			}
			if s.Header.Get("Authorization") != "" {
				t.Error("the backend got the credentials")
			}
		}
		if resp, _ := send("bob", "builder"); resp.StatusCode != 200 || rec.last(t).Header.Get("X-Auth-User") != "bob" {
			t.Errorf("bob (argon2id, from the file): %d", resp.StatusCode)
		}
		polWaitMetric(t, c, admin, "rustygate_basic_auth_rejected_total", map[string]string{"route": "/api", "reason": "missing"}, 1)
		polWaitMetric(t, c, admin, "rustygate_basic_auth_rejected_total", map[string]string{"route": "/api", "reason": "invalid"}, 3)
	})
}

// TestBasicAuthReload: a reload reads the users file again; a users file
// with an unknown hash format fails the reload, naming the file and line,
// and the running users stay.
func TestBasicAuthReload(t *testing.T) {
	users := filepath.Join(t.TempDir(), "htpasswd")
	write := func(content string) {
		if err := os.WriteFile(users, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:" + baBcrypt(t, "one") + "\n")
	_, be := polBackend(t)
	g := startGateway(t, "fast", gatewayConfig("fast", fmt.Sprintf(`  - path: "/api"
    backend: %q
    middlewares: [ { name: basic_auth, users_file: %q } ]
`, be, users)))
	c := newClient(t)
	status := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, g.URL()+"/api", nil)
		req.SetBasicAuth(user, pass)
		resp, _ := do(t, c, req)
		return resp.StatusCode
	}
	reload := func() map[string]any {
		t.Helper()
		from := len(g.lines())
		g.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for _, l := range g.lines()[from:] {
				if l["source"] == "SIGHUP" && (l["msg"] == "Config reloaded" || l["msg"] == "config reload failed; keeping the running configuration") {
					return l
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no reload outcome logged within 5s")
		return nil
	}
	if status("alice", "one") != 200 || status("bob", "two") != 401 {
		t.Fatal("before the reload: alice should pass, bob not")
	}
	write("alice:" + baBcrypt(t, "one") + "\nbob:" + baBcrypt(t, "two") + "\n")
	if l := reload(); l["msg"] != "Config reloaded" {
		t.Fatalf("reload: %v", l)
	}
	if status("bob", "two") != 200 {
		t.Error("after the reload, bob from the users file is refused")
	}
	write("alice:" + baBcrypt(t, "one") + "\ncarol:$apr1$abc$def\n")
	l := reload()
	if msg := fmt.Sprint(l); l["msg"] == "Config reloaded" || !strings.Contains(msg, users+":2:") || !strings.Contains(msg, "MD5 apr1") {
		t.Errorf("reload with an MD5 hash: %v", l)
	}
	if status("bob", "two") != 200 {
		t.Error("a failed reload changed the running users")
	}
}
