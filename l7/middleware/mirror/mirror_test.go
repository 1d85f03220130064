package mirror

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// request is the test double of middleware.Request.
type request struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	method, uri, host string
	headers           [][2]string
	body              []byte
	bodyLater         bool // the body is still on the wire
}

func (r *request) Method() []byte     { return []byte(r.method) }
func (r *request) Host() []byte       { return []byte(r.host) }
func (r *request) URI() []byte        { return []byte(r.uri) }
func (r *request) Scheme() string     { return "http" }
func (r *request) PeerIP() netip.Addr { return netip.MustParseAddr("192.0.2.9") }
func (r *request) Header(name string) []byte {
	if vs := r.RequestHeaderValues(name, nil); len(vs) > 0 {
		return vs[0]
	}
	return nil
}
func (r *request) RequestHeaderNames(dst []string) []string {
	for _, h := range r.headers {
		dst = append(dst, h[0])
	}
	return dst
}
func (r *request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}
func (r *request) BufferedBody() ([]byte, bool) { return r.body, !r.bodyLater }

// counts is a concurrency-safe reporter of results.
type counts struct {
	mu sync.Mutex
	n  map[string]int
	ch chan string
}

func newCounts() *counts { return &counts{n: map[string]int{}, ch: make(chan string, 1000)} }

func (c *counts) Rejected(policy, route, reason string, client netip.Addr) {
	c.mu.Lock()
	c.n[reason]++
	c.mu.Unlock()
	c.ch <- reason
}

func (c *counts) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

// wait waits for n results.
func (c *counts) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.ch:
		case <-time.After(10 * time.Second):
			t.Fatal("a mirrored copy was never counted")
		}
	}
}

type seen struct {
	method, uri, host, body string
	header                  http.Header
}

func target(t *testing.T) (*httptest.Server, chan seen) {
	ch := make(chan seen, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- seen{r.Method, r.RequestURI, r.Host, string(b), r.Header}
		w.WriteHeader(500) // whatever the mirror answers, the copy was sent
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func newMirror(t *testing.T, mod func(*Settings)) (*Mirror, *counts) {
	t.Helper()
	s := defaults()
	mod(s)
	c := newCounts()
	m, err := New(*s, "api", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, c
}

func TestCopy(t *testing.T) {
	srv, got := target(t)
	m, c := newMirror(t, func(s *Settings) { s.Backend = srv.URL })
	r := &request{method: "PUT", uri: "/v2/items?x=1", host: "app.example.com", body: []byte(`{"a":1}`),
		headers: [][2]string{{"Content-Type", "application/json"}, {"X-Trace", "t1"}}}
	if reply := m.Handle(r); reply != nil {
		t.Fatalf("mirror answered %+v", reply)
	}
	s := <-got
	if s.method != "PUT" || s.uri != "/v2/items?x=1" || s.body != `{"a":1}` || s.host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("mirror got %+v", s)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Trace": "t1", "X-Forwarded-Host": "app.example.com", "X-Forwarded-For": "192.0.2.9", "X-Forwarded-Proto": "http"} {
		if s.header.Get(k) != v {
			t.Errorf("mirror got %s %q, want %q", k, s.header.Get(k), v)
		}
	}
	c.wait(t, 1)
	if c.get("sent") != 1 {
		t.Errorf("counted %v", c.n)
	}

	m2, _ := newMirror(t, func(s *Settings) { s.Backend = srv.URL; s.KeepHost = true })
	m2.Handle(&request{method: "GET", uri: "/", host: "app.example.com"})
	if s := <-got; s.host != "app.example.com" {
		t.Errorf("keep_host: mirror got Host %q", s.host)
	}
}

func TestBodies(t *testing.T) {
	srv, got := target(t)
	m, c := newMirror(t, func(s *Settings) { s.Backend = srv.URL; s.MaxBody = 4 })
	m.Handle(&request{method: "POST", uri: "/", body: []byte("12345")})
	m.Handle(&request{method: "POST", uri: "/", bodyLater: true})
	m.Handle(&request{method: "POST", uri: "/small", body: []byte("1234")})
	if s := <-got; s.uri != "/small" || s.body != "1234" {
		t.Errorf("mirror got %+v", s)
	}
	c.wait(t, 3)
	if c.get("skipped") != 2 || c.get("sent") != 1 {
		t.Errorf("counted %v, want 2 skipped, 1 sent", c.n)
	}
}

func TestPercentage(t *testing.T) {
	srv, _ := target(t)
	m, c := newMirror(t, func(s *Settings) { s.Backend = srv.URL; s.Percentage = 0 })
	for range 200 {
		m.Handle(&request{method: "GET", uri: "/"})
	}
	m.Close()
	if len(c.ch) != 0 {
		t.Errorf("percentage 0 mirrored %v", c.n)
	}
	m, c = newMirror(t, func(s *Settings) { s.Backend = srv.URL; s.Percentage = 25; s.MaxInFlight = 1000 })
	for range 400 {
		m.Handle(&request{method: "GET", uri: "/"})
	}
	for deadline := time.Now().Add(10 * time.Second); m.InFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	// 100 expected; the bounds are over 5 standard deviations away.
	if n := c.get("sent"); n < 50 || n > 150 {
		t.Errorf("percentage 25 mirrored %d of 400", n)
	}
}

// TestHungMirror: a mirror that never answers neither delays the
// requests nor holds more than max_in_flight copies; its copies fail
// after the timeout.
func TestHungMirror(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	m, c := newMirror(t, func(s *Settings) {
		s.Backend, s.MaxInFlight, s.Timeout = srv.URL, 2, config.Duration(300*time.Millisecond)
	})
	start := time.Now()
	for range 10 {
		m.Handle(&request{method: "GET", uri: "/"})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("10 requests took %s to pass the mirror", took)
	}
	<-arrived
	<-arrived
	if m.InFlight() != 2 || c.get("dropped") != 8 {
		t.Errorf("in flight %d, dropped %d; want 2 and 8", m.InFlight(), c.get("dropped"))
	}
	c.wait(t, 10)
	if c.get("failed") != 2 {
		t.Errorf("counted %v, want the 2 copies failed after the timeout", c.n)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Settings)
		want []string
	}{
		{"ok", func(s *Settings) { s.Backend = "http://shadow:8080" }, nil},
		{"missing", func(s *Settings) {}, []string{"backend: is required"}},
		{"path", func(s *Settings) { s.Backend = "http://shadow/v2" }, []string{"backend: \"http://shadow/v2\": a mirror backend has no path"}},
		{"scheme", func(s *Settings) { s.Backend = "ftp://shadow" }, []string{"backend: invalid URL"}},
		{"percentage", func(s *Settings) { s.Backend = "http://shadow"; s.Percentage = 101 }, []string{"percentage: must be between 0 and 100"}},
		{"in flight", func(s *Settings) { s.Backend = "http://shadow"; s.MaxInFlight = 0 }, []string{"max_in_flight: must be at least 1"}},
		{"timeout", func(s *Settings) { s.Backend = "http://shadow"; s.Timeout = -1 }, []string{"timeout: must be greater than 0"}},
		{"max_body", func(s *Settings) { s.Backend = "http://shadow"; s.MaxBody = -1 }, []string{"max_body: must be between"}},
	}
	for _, tt := range tests {
		s := defaults()
		tt.mod(s)
		var got []string
		s.Validate(config.NewSettingsCheck(true, true, nil, func(field, msg string) { got = append(got, field+": "+msg) }))
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
