package basicauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// request is the test double of middleware.Request.
type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	auth     []byte
	deleted  []string
	set      [][2]string
	offloads int
}

func (r *request) PeerIP() netip.Addr { return netip.MustParseAddr("192.0.2.1") }
func (r *request) Header(name string) []byte {
	if strings.EqualFold(name, "Authorization") {
		return r.auth
	}
	return nil
}
func (r *request) DelHeader(name string)        { r.deleted = append(r.deleted, name) }
func (r *request) SetHeader(name, value string) { r.set = append(r.set, [2]string{name, value}) }
func (r *request) Offload()                     { r.offloads++ }

func basic(user, pass string) []byte {
	return []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
}

func bcryptOf(t testing.TB, pass, prefix string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func argon2idOf(pass string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pass), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// counting counts the verifications of a hash.
type counting struct {
	hash
	n *atomic.Int32
}

func (c counting) verify(p []byte) bool { c.n.Add(1); return c.hash.verify(p) }

func newAuth(t testing.TB, s Settings) *Auth {
	t.Helper()
	a, err := New(s, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestHashFormats(t *testing.T) {
	users := []string{
		"a2a:" + bcryptOf(t, "pa", "$2a$"),
		"a2b:" + bcryptOf(t, "pb", "$2b$"),
		"a2y:" + bcryptOf(t, "py", "$2y$"),
		"argon:" + argon2idOf("pz"),
	}
	a := newAuth(t, Settings{Users: users, Realm: "x", CacheSize: 0})
	for _, c := range []struct{ user, pass string }{{"a2a", "pa"}, {"a2b", "pb"}, {"a2y", "py"}, {"argon", "pz"}} {
		if reply := a.Handle(&request{auth: basic(c.user, c.pass)}); reply != nil {
			t.Errorf("%s with the right password: %d", c.user, reply.Status)
		}
		if reply := a.Handle(&request{auth: basic(c.user, c.pass+"x")}); reply == nil || reply.Status != 401 {
			t.Errorf("%s with a wrong password: %+v", c.user, reply)
		}
	}
}

func TestHandle(t *testing.T) {
	a := newAuth(t, Settings{Users: []string{"alice:" + bcryptOf(t, "s3cret", "$2y$")}, Realm: "Staff only", RemoveHeader: true, UserHeader: "X-User", CacheSize: 8, CacheTTL: config.Duration(time.Minute)})
	var n atomic.Int32
	a.users["alice"] = counting{a.users["alice"], &n}
	a.dummy = a.users["alice"]

	r := &request{}
	reply := a.Handle(r)
	if reply == nil || reply.Status != 401 || reply.Headers[0] != [2]string{"WWW-Authenticate", `Basic realm="Staff only", charset="UTF-8"`} {
		t.Fatalf("no credentials: %+v", reply)
	}
	for _, bad := range [][]byte{[]byte("Bearer x"), []byte("Basic !!!"), []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")))} {
		if reply := a.Handle(&request{auth: bad}); reply == nil || reply.Status != 401 {
			t.Errorf("%q: %+v", bad, reply)
		}
	}
	if n.Load() != 0 {
		t.Errorf("malformed credentials cost %d verifications", n.Load())
	}

	// An unknown user pays a verification too.
	if reply := a.Handle(&request{auth: basic("mallory", "s3cret")}); reply == nil || reply.Status != 401 || n.Load() != 1 {
		t.Errorf("unknown user: reply %+v after %d verifications, want 401 after 1", reply, n.Load())
	}

	r = &request{auth: basic("alice", "s3cret")}
	if reply := a.Handle(r); reply != nil {
		t.Fatalf("right password: %+v", reply)
	}
	if r.offloads != 1 || len(r.deleted) != 1 || r.deleted[0] != "Authorization" || len(r.set) != 1 || r.set[0] != [2]string{"X-User", "alice"} {
		t.Errorf("first success: offloads %d, deleted %q, set %q", r.offloads, r.deleted, r.set)
	}
	// The second time comes from the cache: no verification, no offload.
	r = &request{auth: basic("alice", "s3cret")}
	if reply := a.Handle(r); reply != nil || r.offloads != 0 || n.Load() != 2 {
		t.Errorf("cached success: reply %+v, offloads %d, verifications %d (want 2)", reply, r.offloads, n.Load())
	}
	// A wrong password is never served from the cache.
	if reply := a.Handle(&request{auth: basic("alice", "s3cret ")}); reply == nil || n.Load() != 3 {
		t.Errorf("wrong password: %+v after %d verifications", reply, n.Load())
	}
}

func TestKeepHeader(t *testing.T) {
	a := newAuth(t, Settings{Users: []string{"bob:" + bcryptOf(t, "pw", "$2a$")}, Realm: "r", RemoveHeader: false})
	r := &request{auth: basic("bob", "pw")}
	if reply := a.Handle(r); reply != nil || len(r.deleted) != 0 || len(r.set) != 0 {
		t.Errorf("remove_header false: reply %+v, deleted %q, set %q", reply, r.deleted, r.set)
	}
}

func TestCacheExpiryAndEviction(t *testing.T) {
	users := []string{"u1:" + bcryptOf(t, "p", "$2a$"), "u2:" + bcryptOf(t, "p", "$2a$"), "u3:" + bcryptOf(t, "p", "$2a$")}
	a := newAuth(t, Settings{Users: users, Realm: "r", CacheSize: 2, CacheTTL: config.Duration(time.Minute)})
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	offloads := func(user string) int {
		r := &request{auth: basic(user, "p")}
		if reply := a.Handle(r); reply != nil {
			t.Fatalf("%s: %+v", user, reply)
		}
		return r.offloads
	}
	if offloads("u1") != 1 || offloads("u2") != 1 || offloads("u1") != 0 {
		t.Fatal("u1, u2 verified once, then u1 from the cache")
	}
	offloads("u3") // evicts u2, the least recently used
	if a.cache.len() != 2 || offloads("u1") != 0 || offloads("u2") != 1 {
		t.Error("u3 should have evicted u2, not u1")
	}
	now = now.Add(time.Minute)
	if offloads("u2") != 1 {
		t.Error("an entry older than cache_ttl was used")
	}
}

func TestCachedHitAllocatesNothing(t *testing.T) {
	a := newAuth(t, Settings{Users: []string{"alice:" + bcryptOf(t, "pw", "$2a$")}, Realm: "r", RemoveHeader: true, UserHeader: "X-User", CacheSize: 8, CacheTTL: config.Duration(time.Minute)})
	r := &request{auth: basic("alice", "pw"), deleted: make([]string, 0, 1000), set: make([][2]string, 0, 1000)}
	a.Handle(r)
	if n := testing.AllocsPerRun(100, func() { a.Handle(r) }); n != 0 {
		t.Errorf("a cached verification allocates %v times", n)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "htpasswd")
	good := "carol:" + bcryptOf(t, "x", "$2y$")
	os.WriteFile(file, []byte("# staff\n"+good+"\n\ndave:$apr1$abc$def\n"), 0o600)
	okFile := filepath.Join(dir, "ok")
	os.WriteFile(okFile, []byte(good+"\n"), 0o600)
	tests := []struct {
		name string
		s    Settings
		want []string
	}{
		{"inline ok", Settings{Users: []string{good, "argon:" + argon2idOf("p")}, Realm: "r"}, nil},
		{"file ok", Settings{UsersFile: okFile, Realm: "r"}, nil},
		{"apr1 in file", Settings{UsersFile: file, Realm: "r"}, []string{"users_file: " + file + `:4: user "dave": unknown hash format (MD5 apr1)`}},
		{"sha inline", Settings{Users: []string{good, "eve:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="}, Realm: "r"}, []string{`users[1]: user "eve": unknown hash format (SHA-1)`}},
		{"plain", Settings{Users: []string{"eve:secret"}, Realm: "r"}, []string{`users[0]: user "eve": unknown hash format (plain text`}},
		{"argon2i", Settings{Users: []string{"eve:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}, Realm: "r"}, []string{`users[0]: user "eve": unknown hash format (argon2i)`}},
		{"bad bcrypt", Settings{Users: []string{"eve:$2y$10$short"}, Realm: "r"}, []string{`users[0]: user "eve": invalid bcrypt hash`}},
		{"argon2id memory", Settings{Users: []string{"eve:$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}, Realm: "r"}, []string{`users[0]: user "eve": argon2id parameter "m=99999999" out of range`}},
		{"no colon", Settings{Users: []string{"eve"}, Realm: "r"}, []string{`users[0]: want "name:hash"`}},
		{"missing file", Settings{UsersFile: filepath.Join(dir, "nope"), Realm: "r"}, []string{"users_file: cannot read users file"}},
		{"none", Settings{Realm: "r"}, []string{": users or users_file is required"}},
		{"realm", Settings{Users: []string{good}, Realm: `a"b`}, []string{`realm: invalid realm`}},
		{"header", Settings{Users: []string{good}, Realm: "r", UserHeader: "X User"}, []string{`user_header: invalid header name`}},
		{"cache", Settings{Users: []string{good}, Realm: "r", CacheSize: -1}, []string{`cache_size: must be between`}},
	}
	for _, tt := range tests {
		var got []string
		tt.s.Validate(config.NewSettingsCheck(true, true, nil, func(field, msg string) { got = append(got, field+": "+msg) }))
		if len(got) != len(tt.want) {
			t.Errorf("%s: reported %q, want %q", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tt.want[i]) {
				t.Errorf("%s: reported %q, want %q", tt.name, got[i], tt.want[i])
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	s := defaults()
	if s.Realm == "" || !s.RemoveHeader || s.CacheSize <= 0 || s.CacheTTL <= 0 {
		t.Errorf("defaults %+v", s)
	}
}

func BenchmarkCachedHit(b *testing.B) {
	a := newAuth(b, Settings{Users: []string{"alice:" + bcryptOf(b, "pw", "$2a$")}, Realm: "r", CacheSize: 1024, CacheTTL: config.Duration(time.Minute)})
	r := &request{auth: basic("alice", "pw")}
	a.Handle(r)
	b.ReportAllocs()
	for b.Loop() {
		r.deleted, r.set = r.deleted[:0], r.set[:0]
		a.Handle(r)
	}
}

// gated is a hash whose verifications count, and wait for release once
// started has said they run.
type gated struct {
	hash
	n       *atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (g gated) verify(p []byte) bool {
	g.n.Add(1)
	g.started <- struct{}{}
	<-g.release
	return g.hash.verify(p)
}

// TestConcurrentMissesVerifyOnce: requests that come with the same
// credentials while they are being verified (a client's many connections
// when its cache entry expires) wait for that verification instead of
// each verifying the hash again; other credentials are not held up by it.
func TestConcurrentMissesVerifyOnce(t *testing.T) {
	a := newAuth(t, Settings{Users: []string{"alice:" + bcryptOf(t, "pw", "$2a$"), "bob:" + bcryptOf(t, "pw", "$2a$")}, Realm: "r", CacheSize: 8, CacheTTL: config.Duration(time.Minute)})
	var n atomic.Int32
	g := gated{a.users["alice"], &n, make(chan struct{}, 64), make(chan struct{})}
	a.users["alice"] = g
	waiters := func(creds []byte) int {
		var tok []byte
		tok, _ = basicToken(creds)
		var k cacheKey
		a.key(tok, &k)
		a.flightMu.Lock()
		defer a.flightMu.Unlock()
		if f := a.flights[k]; f != nil {
			return f.waiters
		}
		return -1
	}
	run := func(creds []byte, count int) (statuses chan int) {
		statuses = make(chan int, count)
		for range count {
			go func() {
				r := &request{auth: creds}
				if reply := a.Handle(r); reply != nil {
					statuses <- reply.Status
				} else {
					statuses <- 200
				}
			}()
		}
		return statuses
	}
	for _, c := range []struct {
		what  string
		creds []byte
		want  int
	}{
		{"right password", basic("alice", "pw"), 200},
		{"wrong password", basic("alice", "nope"), 401},
	} {
		n.Store(0)
		statuses := run(c.creds, 16)
		<-g.started
		deadline := time.Now().Add(10 * time.Second)
		for waiters(c.creds) != 15 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d requests wait for the running verification, want 15", c.what, waiters(c.creds))
			}
			time.Sleep(time.Millisecond)
		}
		// Other credentials are verified meanwhile, not queued behind it.
		if reply := a.Handle(&request{auth: basic("bob", "pw")}); reply != nil {
			t.Fatalf("%s: bob during alice's verification: %+v", c.what, reply)
		}
		close(g.release)
		for range 16 {
			if s := <-statuses; s != c.want {
				t.Errorf("%s: status %d, want %d", c.what, s, c.want)
			}
		}
		if got := n.Load(); got != 1 {
			t.Errorf("%s: 16 concurrent requests cost %d verifications, want 1", c.what, got)
		}
		if waiters(c.creds) != -1 {
			t.Errorf("%s: the flight outlived its verification", c.what)
		}
		g.release = make(chan struct{})
		a.users["alice"] = g
	}
	// The success was cached: no verification at all now.
	n.Store(0)
	if reply := a.Handle(&request{auth: basic("alice", "pw")}); reply != nil || n.Load() != 0 {
		t.Errorf("after the shared verification: reply %+v, %d verifications", reply, n.Load())
	}
}
