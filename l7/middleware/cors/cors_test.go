package cors

import (
	"fmt"
	"net/netip"
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
	method  string
	headers [][2]string
	resp    [][2]string
	bufs    [][]byte
	mb      []byte
}

func (r *request) Method() []byte {
	if r.mb == nil {
		r.mb = []byte(r.method)
	}
	return r.mb
}
func (r *request) Path() []byte { return []byte("/") }
func (r *request) Host() []byte { return []byte("api.example.com") }
func (r *request) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

func (r *request) Header(name string) []byte {
	for i, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			if r.bufs == nil {
				r.bufs = make([][]byte, len(r.headers))
			}
			if r.bufs[i] == nil {
				r.bufs[i] = []byte(h[1])
			}
			return r.bufs[i]
		}
	}
	return nil
}
func (r *request) PeerIP() netip.Addr           { return netip.MustParseAddr("192.0.2.1") }
func (r *request) SetHeader(name, value string) {}
func (r *request) DelHeader(name string)        {}
func (r *request) AddResponseHeader(name, value string) {
	r.resp = append(r.resp, [2]string{name, value})
}
func (r *request) Route() string              { return "api" }
func (r *request) Value(key string) any       { return nil }
func (r *request) SetValue(key string, v any) {}

type reporter struct{ list []string }

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.list = append(r.list, fmt.Sprintf("%s %s %s %s", policy, route, reason, client))
}

func newPolicy(t testing.TB, c Settings, rep middleware.Reporter) *Policy {
	t.Helper()
	p, err := NewPolicy(c, "api", rep)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func preflight(origin, method, headers string) *request {
	r := &request{method: "OPTIONS", headers: [][2]string{{"Origin", origin}, {"Access-Control-Request-Method", method}}}
	if headers != "" {
		r.headers = append(r.headers, [2]string{"Access-Control-Request-Headers", headers})
	}
	return r
}

func show(hs [][2]string) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s: %s\n", h[0], h[1])
	}
	return b.String()
}

var full = Settings{
	AllowOrigins:     []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"},
	AllowMethods:     []string{"GET", "POST", "PUT"},
	AllowHeaders:     []string{"Content-Type", "Authorization", "X-Request-Id"},
	ExposeHeaders:    []string{"X-Total-Count", "RateLimit-Remaining"},
	AllowCredentials: true,
	MaxAge:           config.Duration(10 * time.Minute),
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Settings
		req        *request
		wantStatus int
		wantReply  string // reply headers
		wantReport string
	}{
		{
			name:       "allowed",
			cfg:        full,
			req:        preflight("https://app.example.com", "PUT", "content-type, x-request-id"),
			wantStatus: 204,
			wantReply: "Access-Control-Allow-Origin: https://app.example.com\n" +
				"Access-Control-Allow-Credentials: true\n" +
				"Access-Control-Allow-Methods: GET, POST, PUT\n" +
				"Access-Control-Allow-Headers: Content-Type, Authorization, X-Request-Id\n" +
				"Access-Control-Max-Age: 600\n" +
				"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\n",
		},
		{
			name:       "wildcard origin",
			cfg:        full,
			req:        preflight("https://a.b.Example.org", "GET", ""),
			wantStatus: 204,
			wantReply: "Access-Control-Allow-Origin: https://a.b.Example.org\n" +
				"Access-Control-Allow-Credentials: true\n" +
				"Access-Control-Allow-Methods: GET, POST, PUT\n" +
				"Access-Control-Allow-Headers: Content-Type, Authorization, X-Request-Id\n" +
				"Access-Control-Max-Age: 600\n" +
				"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\n",
		},
		{
			name:       "any origin, no max age",
			cfg:        Settings{AllowOrigins: []string{"*"}},
			req:        preflight("https://anything.test", "POST", ""),
			wantStatus: 204,
			wantReply: "Access-Control-Allow-Origin: *\n" +
				"Access-Control-Allow-Methods: GET, HEAD, POST\n" +
				"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\n",
		},
		{
			name:       "any header echoes the request",
			cfg:        Settings{AllowOrigins: []string{"https://app.example.com"}, AllowHeaders: []string{"*"}},
			req:        preflight("https://app.example.com", "GET", "X-Anything, authorization"),
			wantStatus: 204,
			wantReply: "Access-Control-Allow-Origin: https://app.example.com\n" +
				"Access-Control-Allow-Methods: GET, HEAD, POST\n" +
				"Access-Control-Allow-Headers: X-Anything, authorization\n" +
				"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\n",
		},
		{
			name:       "disallowed origin",
			cfg:        full,
			req:        preflight("https://evil.example.com", "GET", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "wildcard does not match the bare domain",
			cfg:        full,
			req:        preflight("https://example.org", "GET", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "wildcard needs the same scheme",
			cfg:        full,
			req:        preflight("http://a.example.org", "GET", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "wildcard needs the same port",
			cfg:        full,
			req:        preflight("https://a.example.org:8443", "GET", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "origin with a suffix trick",
			cfg:        full,
			req:        preflight("https://app.example.com.evil.test", "GET", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "disallowed method",
			cfg:        full,
			req:        preflight("https://app.example.com", "DELETE", ""),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api method 192.0.2.1",
		},
		{
			name:       "disallowed header",
			cfg:        full,
			req:        preflight("https://app.example.com", "GET", "content-type, x-secret"),
			wantStatus: 403,
			wantReply:  "Content-Type: application/json\n",
			wantReport: "cors api headers 192.0.2.1",
		},
		{
			name:       "header names are case-insensitive",
			cfg:        full,
			req:        preflight("http://LOCALHOST:3000", "POST", "AUTHORIZATION,Content-type"),
			wantStatus: 204,
			wantReply: "Access-Control-Allow-Origin: http://localhost:3000\n" +
				"Access-Control-Allow-Credentials: true\n" +
				"Access-Control-Allow-Methods: GET, POST, PUT\n" +
				"Access-Control-Allow-Headers: Content-Type, Authorization, X-Request-Id\n" +
				"Access-Control-Max-Age: 600\n" +
				"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			p := newPolicy(t, tt.cfg, rep)
			reply := p.Handle(tt.req)
			if reply == nil {
				t.Fatal("preflight forwarded")
			}
			if reply.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", reply.Status, tt.wantStatus)
			}
			if got := show(reply.Headers); got != tt.wantReply {
				t.Errorf("reply headers:\n%s\nwant:\n%s", got, tt.wantReply)
			}
			if got := show(tt.req.resp); got != "Vary: Origin\n" {
				t.Errorf("response headers added: %q, want only Vary: Origin", got)
			}
			if got := strings.Join(rep.list, "; "); got != tt.wantReport {
				t.Errorf("reports %q, want %q", got, tt.wantReport)
			}
		})
	}
}

func TestActualRequest(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Settings
		req        *request
		want       string // response headers added
		wantReport string
	}{
		{
			name: "allowed",
			cfg:  full,
			req:  &request{method: "GET", headers: [][2]string{{"Origin", "https://app.example.com"}}},
			want: "Vary: Origin\nAccess-Control-Allow-Origin: https://app.example.com\nAccess-Control-Allow-Credentials: true\nAccess-Control-Expose-Headers: X-Total-Count, RateLimit-Remaining\n",
		},
		{
			name: "wildcard",
			cfg:  full,
			req:  &request{method: "POST", headers: [][2]string{{"Origin", "https://x.example.org"}}},
			want: "Vary: Origin\nAccess-Control-Allow-Origin: https://x.example.org\nAccess-Control-Allow-Credentials: true\nAccess-Control-Expose-Headers: X-Total-Count, RateLimit-Remaining\n",
		},
		{
			name: "any origin",
			cfg:  Settings{AllowOrigins: []string{"*"}},
			req:  &request{method: "GET", headers: [][2]string{{"Origin", "https://x.test"}}},
			want: "Vary: Origin\nAccess-Control-Allow-Origin: *\n",
		},
		{
			name:       "disallowed origin is forwarded without CORS headers",
			cfg:        full,
			req:        &request{method: "GET", headers: [][2]string{{"Origin", "https://evil.test"}}},
			want:       "Vary: Origin\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name:       "null origin",
			cfg:        full,
			req:        &request{method: "GET", headers: [][2]string{{"Origin", "null"}}},
			want:       "Vary: Origin\n",
			wantReport: "cors api origin 192.0.2.1",
		},
		{
			name: "no origin",
			cfg:  full,
			req:  &request{method: "GET"},
			want: "Vary: Origin\n",
		},
		{
			name: "OPTIONS without Access-Control-Request-Method is not a preflight",
			cfg:  full,
			req:  &request{method: "OPTIONS", headers: [][2]string{{"Origin", "https://app.example.com"}}},
			want: "Vary: Origin\nAccess-Control-Allow-Origin: https://app.example.com\nAccess-Control-Allow-Credentials: true\nAccess-Control-Expose-Headers: X-Total-Count, RateLimit-Remaining\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			p := newPolicy(t, tt.cfg, rep)
			if reply := p.Handle(tt.req); reply != nil {
				t.Fatalf("answered %d, want forwarded", reply.Status)
			}
			if got := show(tt.req.resp); got != tt.want {
				t.Errorf("response headers:\n%s\nwant:\n%s", got, tt.want)
			}
			if got := strings.Join(rep.list, "; "); got != tt.wantReport {
				t.Errorf("reports %q, want %q", got, tt.wantReport)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		cfg  Settings
		want string
	}{
		{Settings{}, "cors: allow_origins is empty"},
		{Settings{AllowOrigins: []string{"*"}, AllowCredentials: true}, `cors: allow_origins "*" cannot be used with allow_credentials`},
		{Settings{AllowOrigins: []string{"example.com"}}, `cors: invalid origin "example.com"`},
		{Settings{AllowOrigins: []string{"https://*.a.*.com"}}, `cors: invalid origin pattern "https://*.a.*.com"`},
		{Settings{AllowOrigins: []string{"https://a.com"}, AllowMethods: []string{"GE T"}}, `cors: invalid method "GE T"`},
		{Settings{AllowOrigins: []string{"https://a.com"}, AllowHeaders: []string{"X:Y"}}, `cors: invalid header name "X:Y"`},
	} {
		if _, err := New(tt.cfg, "api", nil); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.cfg, err, tt.want)
		}
	}
}

func TestSimpleAllocations(t *testing.T) {
	p := newPolicy(t, full, nil)
	for _, origin := range []string{"https://app.example.com", "https://evil.test", ""} {
		r := &request{method: "GET", resp: make([][2]string, 0, 8)}
		if origin != "" {
			r.headers = [][2]string{{"Origin", origin}}
		}
		allocs := testing.AllocsPerRun(1000, func() {
			r.resp = r.resp[:0]
			p.Handle(r)
		})
		if allocs != 0 {
			t.Errorf("origin %q: %.1f allocations per request, want 0", origin, allocs)
		}
	}
}

func BenchmarkCORSPreflight(b *testing.B) {
	p := newPolicy(b, full, nil)
	r := preflight("https://app.example.com", "PUT", "content-type, x-request-id")
	r.resp = make([][2]string, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		r.resp = r.resp[:0]
		if reply := p.Handle(r); reply == nil || reply.Status != 204 {
			b.Fatal("preflight not answered")
		}
	}
}

func BenchmarkCORSSimple(b *testing.B) {
	p := newPolicy(b, full, nil)
	r := &request{method: "GET", headers: [][2]string{{"Origin", "https://app.example.com"}}, resp: make([][2]string, 0, 8)}
	b.ReportAllocs()
	for b.Loop() {
		r.resp = r.resp[:0]
		if p.Handle(r) != nil {
			b.Fatal("answered")
		}
	}
}

func (r *request) DelResponseHeader(name string) {}
