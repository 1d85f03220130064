package forwardauth

import (
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
	headers [][2]string
}

func (r *request) Method() []byte     { return []byte("POST") }
func (r *request) Host() []byte       { return []byte("app.example.com") }
func (r *request) URI() []byte        { return []byte("/orders?id=7") }
func (r *request) Scheme() string     { return "https" }
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
func (r *request) DelHeader(name string) {
	kept := r.headers[:0]
	for _, h := range r.headers {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	r.headers = kept
}
func (r *request) SetHeader(name, value string) {
	r.DelHeader(name)
	r.headers = append(r.headers, [2]string{name, value})
}

func (r *request) get(name string) string { return string(r.Header(name)) }

type reporter struct{ reasons []string }

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.reasons = append(r.reasons, reason)
}

func newAuth(t *testing.T, mod func(*Settings)) (*Auth, *reporter) {
	t.Helper()
	s := defaults()
	mod(s)
	rep := &reporter{}
	a, err := New(*s, "api", rep, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, rep
}

// authServer answers 200 with X-User when the request carries
// "Authorization: Bearer good", else 302 to a login page; it hands each
// request's headers to got.
func authServer(t *testing.T, got chan<- http.Header) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Method", r.Method)
		select {
		case got <- h:
		default:
		}
		if r.Header.Get("Authorization") == "Bearer good" {
			w.Header().Set("X-User", "alice")
			w.Header().Add("X-Groups", "admin")
			w.Header().Add("X-Groups", "ops")
			w.Header().Set("X-Other", "not copied")
			return
		}
		w.Header().Set("Location", "https://login.example.com/")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, "go and log in")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAllowed(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := authServer(t, got)
	a, rep := newAuth(t, func(s *Settings) { s.Address = srv.URL + "/check"; s.CopyHeaders = []string{"X-User", "X-Groups"} })
	r := &request{headers: [][2]string{
		{"Authorization", "Bearer good"}, {"X-User", "forged"}, {"Cookie", "a=1"}, {"X-Forwarded-Uri", "/forged"},
	}}
	if reply := a.Handle(r); reply != nil {
		t.Fatalf("allowed request answered %d %q", reply.Status, reply.Body)
	}
	if r.get("X-User") != "alice" || r.get("X-Groups") != "admin, ops" || r.get("X-Other") != "" {
		t.Errorf("forwarded headers %q", r.headers)
	}
	h := <-got
	want := map[string]string{
		"Method": "GET", "Authorization": "Bearer good", "Cookie": "a=1",
		"X-Forwarded-Method": "POST", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com",
		"X-Forwarded-Uri": "/orders?id=7", "X-Forwarded-For": "192.0.2.9", "X-User": "",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("auth service got %s %q, want %q", k, h.Get(k), v)
		}
	}
	if len(rep.reasons) != 0 {
		t.Errorf("reported %q", rep.reasons)
	}
}

func TestDeniedAnswerGoesToClient(t *testing.T) {
	srv := authServer(t, nil)
	a, rep := newAuth(t, func(s *Settings) { s.Address = srv.URL; s.CopyHeaders = []string{"X-User"} })
	r := &request{headers: [][2]string{{"X-User", "forged"}}}
	reply := a.Handle(r)
	if reply == nil || reply.Status != 302 || string(reply.Body) != "go and log in" {
		t.Fatalf("reply %+v", reply)
	}
	hs := map[string]string{}
	for _, h := range reply.Headers {
		hs[h[0]] = h[1]
	}
	if hs["Location"] != "https://login.example.com/" || hs["Content-Type"] != "text/plain" || hs["Content-Length"] != "" || hs["Date"] != "" {
		t.Errorf("reply headers %q", reply.Headers)
	}
	if r.get("X-User") != "" {
		t.Error("a forged copy header survived a refusal")
	}
	if len(rep.reasons) != 1 || rep.reasons[0] != "denied" {
		t.Errorf("reported %q", rep.reasons)
	}
}

func TestRequestHeadersList(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := authServer(t, got)
	a, _ := newAuth(t, func(s *Settings) {
		s.Address = srv.URL
		s.RequestHeaders = []string{"Authorization"}
		s.Method = "HEAD"
	})
	a.Handle(&request{headers: [][2]string{{"Authorization", "Bearer good"}, {"Cookie", "secret"}}})
	h := <-got
	if h.Get("Cookie") != "" || h.Get("Authorization") != "Bearer good" || h.Get("Method") != "HEAD" {
		t.Errorf("auth service got %v", h)
	}
}

func TestErrors(t *testing.T) {
	// A service that never answers.
	hung := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hung) })
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		w.Write(make([]byte, 2000))
	}))
	t.Cleanup(big.Close)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		address string
		onError int
	}{
		{"timeout", slow.URL, 503},
		{"refused", closed, 502},
		{"body too large", big.URL, 503},
	}
	for _, tt := range tests {
		a, rep := newAuth(t, func(s *Settings) {
			s.Address, s.OnError, s.Timeout, s.MaxResponseBody = tt.address, tt.onError, config.Duration(200*time.Millisecond), 1000
		})
		start := time.Now()
		reply := a.Handle(&request{})
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: answered after %s, timeout 200ms", tt.name, took)
		}
		if reply == nil || reply.Status != tt.onError {
			t.Errorf("%s: reply %+v, want %d", tt.name, reply, tt.onError)
		}
		if len(rep.reasons) != 1 || rep.reasons[0] != "error" {
			t.Errorf("%s: reported %q", tt.name, rep.reasons)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Settings)
		want []string
	}{
		{"ok", func(s *Settings) { s.Address = "http://auth:9000/check" }, nil},
		{"missing", func(s *Settings) {}, []string{"address: is required"}},
		{"scheme", func(s *Settings) { s.Address = "auth:9000" }, []string{"address: invalid URL"}},
		{"no host", func(s *Settings) { s.Address = "http:///check" }, []string{"address: invalid URL"}},
		{"port", func(s *Settings) { s.Address = "http://auth:99999" }, []string{"address: invalid URL"}},
		{"tls on http", func(s *Settings) { s.Address = "http://auth"; s.TLS = &config.BackendTLS{} }, []string{"tls: applies only to an https://"}},
		{"on_error", func(s *Settings) { s.Address = "http://auth"; s.OnError = 500 }, []string{"on_error: must be 502 or 503"}},
		{"timeout", func(s *Settings) { s.Address = "http://auth"; s.Timeout = 0 }, []string{"timeout: must be greater than 0"}},
		{"copy", func(s *Settings) { s.Address = "http://auth"; s.CopyHeaders = []string{"X-Ok", "Content-Length"} }, []string{"copy_headers[1]: invalid header name"}},
		{"method", func(s *Settings) { s.Address = "http://auth"; s.Method = "GE T" }, []string{"method: invalid method"}},
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

func TestHTTPSService(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User", "tls-user")
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tls := &config.BackendTLS{CAFile: ca, ServerName: "example.com"}
	s := defaults()
	s.Address, s.TLS, s.CopyHeaders = srv.URL, tls, []string{"X-User"}
	var problems []string
	s.Validate(config.NewSettingsCheck(true, true, nil, func(f, m string) { problems = append(problems, f+": "+m) }))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	a, _ := newAuth(t, func(s2 *Settings) { *s2 = *s })
	r := &request{}
	if reply := a.Handle(r); reply != nil || r.get("X-User") != "tls-user" {
		t.Fatalf("over TLS: reply %+v, headers %q", reply, r.headers)
	}
	// Without the CA, the certificate is not trusted: fail closed.
	a, _ = newAuth(t, func(s2 *Settings) { *s2 = *s; s2.TLS = nil })
	if reply := a.Handle(&request{}); reply == nil || reply.Status != 503 {
		t.Errorf("untrusted certificate: reply %+v", reply)
	}
}
