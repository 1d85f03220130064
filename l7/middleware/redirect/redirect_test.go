package redirect

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware/middlewaretest"
)

func defaults() Settings { return Settings{Status: 302, KeepQuery: true, Match: "path"} }

func validate(s *Settings) []string {
	var got []string
	c := config.NewSettingsCheck(true, false, nil, func(field, msg string) {
		got = append(got, field+": "+msg)
	})
	s.Validate(c)
	return got
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Settings)
		want string
	}{
		{"https", func(s *Settings) { s.Scheme = "https" }, ""},
		{"regex", func(s *Settings) { s.Regex, s.Replacement = `^/old/(?P<rest>.*)$`, "/new/${rest}?from=$1&p=$$" }, ""},
		{"absolute replacement", func(s *Settings) { s.Regex, s.Replacement = `^/(.*)$`, "https://example.org/$1" }, ""},
		{"nothing", func(s *Settings) {}, ": nothing to redirect to"},
		{"bad scheme", func(s *Settings) { s.Scheme = "ftp" }, `scheme: invalid scheme "ftp"`},
		{"bad status", func(s *Settings) { s.Scheme, s.Status = "https", 200 }, "status: invalid status 200"},
		{"bad regex", func(s *Settings) { s.Regex, s.Replacement = `^/(a`, "/b" }, "regex: invalid regex: error parsing regexp: missing closing )"},
		{"unknown capture", func(s *Settings) { s.Regex, s.Replacement = `^/(a)`, "/$2" }, "replacement: replacement names ${2}"},
		{"glued capture", func(s *Settings) { s.Regex, s.Replacement = `^/(a)`, "/$1x" }, "replacement names ${1x}"},
		{"no replacement", func(s *Settings) { s.Regex = `^/a` }, "replacement: regex needs a replacement"},
		{"relative replacement", func(s *Settings) { s.Regex, s.Replacement = `^/a`, "b" }, "neither a path"},
		{"replacement alone", func(s *Settings) { s.Replacement = "/b" }, "replacement: replacement without regex"},
		{"host with port", func(s *Settings) { s.Host = "a.example:8443" }, "host: invalid host"},
		{"bad port", func(s *Settings) { s.Port = 70000 }, "port: invalid port 70000"},
		{"scheme-relative path", func(s *Settings) { s.Path = "//evil.example" }, "path: invalid path"},
		{"bad match", func(s *Settings) { s.Regex, s.Replacement, s.Match = `^/a`, "/b", "query" }, `match: invalid match "query"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults()
			tt.edit(&s)
			got := validate(&s)
			switch {
			case tt.want == "" && len(got) > 0:
				t.Fatalf("problems: %q", got)
			case tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want) && !strings.Contains(got[0], tt.want)):
				t.Fatalf("problems %q, want one with %q", got, tt.want)
			}
		})
	}
}

func TestRedirect(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*Settings)
		method   string
		scheme   string
		host     string
		target   string
		status   int    // 0: forwarded
		location string // or, with status 400, nothing
	}{
		{"to https", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "example.com:8080", "/a?b=c", 302, "https://example.com/a?b=c"},
		{"already https", func(s *Settings) { s.Scheme = "https" }, "GET", "https", "example.com:8443", "/a", 0, ""},
		{"to https port", func(s *Settings) { s.Scheme, s.Port = "https", 8443 }, "GET", "http", "example.com:8080", "/a", 302, "https://example.com:8443/a"},
		{"default port left out", func(s *Settings) { s.Scheme, s.Port = "https", 443 }, "GET", "http", "example.com", "/", 302, "https://example.com/"},
		{"permanent", func(s *Settings) { s.Scheme, s.Status = "https", 301 }, "GET", "http", "example.com", "/", 301, "https://example.com/"},
		{"post keeps its method", func(s *Settings) { s.Scheme, s.Status = "https", 301 }, "POST", "http", "example.com", "/", 308, "https://example.com/"},
		{"post temporary", func(s *Settings) { s.Scheme = "https" }, "PUT", "http", "example.com", "/", 307, "https://example.com/"},
		{"host", func(s *Settings) { s.Host = "www.example.com" }, "GET", "http", "example.com:8080", "/a", 302, "http://www.example.com:8080/a"},
		{"same host", func(s *Settings) { s.Host = "www.example.com" }, "GET", "http", "WWW.example.com", "/a", 0, ""},
		{"path drops query", func(s *Settings) { s.Path, s.KeepQuery = "/new", false }, "GET", "http", "example.com", "/old?x=1", 302, "http://example.com/new"},
		{"same path", func(s *Settings) { s.Path = "/new" }, "GET", "http", "example.com", "/new?x=1", 0, ""},
		{"regex", func(s *Settings) { s.Regex, s.Replacement = `^/old/(?P<rest>.*)$`, "/new/${rest}/$1" }, "GET", "http", "example.com", "/old/a/b?q=1", 302, "/new/a/b/a/b?q=1"},
		{"regex no match", func(s *Settings) { s.Regex, s.Replacement = `^/old/(.*)$`, "/new/$1" }, "GET", "http", "example.com", "/other", 0, ""},
		{"regex on query", func(s *Settings) {
			s.Regex, s.Replacement, s.Match = `^/search\?q=(\w+)`, "/find/$1?src=old", "path_query"
		}, "GET", "http", "example.com", "/search?q=go&x=1", 302, "/find/go?src=old"},
		{"regex absolute", func(s *Settings) { s.Regex, s.Replacement = `^/docs/(.*)`, "https://docs.example.org/$1" }, "GET", "http", "example.com", "/docs/a", 302, "https://docs.example.org/a"},
		{"regex with base", func(s *Settings) { s.Regex, s.Replacement, s.Scheme = `^/(.*)`, "/v2/$1", "https" }, "GET", "http", "example.com", "/a", 302, "https://example.com/v2/a"},
		// Open redirects: nothing from the request may make the Location
		// point elsewhere.
		{"capture starting with //", func(s *Settings) { s.Regex, s.Replacement = `^/go(.*)$`, "$1" }, "GET", "http", "example.com", "/go//evil.example/x", 302, "/evil.example/x"},
		{"backslash", func(s *Settings) { s.Regex, s.Replacement = `^/go/(.*)$`, "/$1" }, "GET", "http", "example.com", `/go/\evil.example`, 302, "/evil.example"},
		{"captured authority", func(s *Settings) { s.Regex, s.Replacement = `^/u/([^/]*)(.*)$`, "https://$1.example.org$2" }, "GET", "http", "example.com", "/u/evil.example@x/y", 400, ""},
		{"request path //", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "example.com", "//evil.example/a", 302, "https://example.com/evil.example/a"},
		{"hostile host", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "evil.example/x?", "/", 400, ""},
		{"host with userinfo", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "a@evil.example", "/", 400, ""},
		{"no host", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "", "/", 400, ""},
		{"ipv6 host", func(s *Settings) { s.Scheme = "https" }, "GET", "http", "[2001:db8::1]:8080", "/", 302, "https://[2001:db8::1]/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults()
			tt.edit(&s)
			if p := validate(&s); len(p) > 0 {
				t.Fatalf("invalid settings: %q", p)
			}
			h, err := New(&s)
			if err != nil {
				t.Fatal(err)
			}
			r := middlewaretest.NewRequest(tt.target)
			r.MethodName, r.SchemeVal, r.HostName = tt.method, tt.scheme, tt.host
			reply := h.Handle(r)
			switch {
			case tt.status == 0 && reply != nil:
				t.Fatalf("reply %d %q, want the request forwarded", reply.Status, reply.Headers)
			case tt.status == 0:
			case reply == nil:
				t.Fatalf("forwarded, want %d", tt.status)
			case reply.Status != tt.status:
				t.Fatalf("status %d %q, want %d", reply.Status, reply.Headers, tt.status)
			case tt.status == 400 && len(reply.Headers) > 0 && reply.Headers[0][0] == "Location":
				t.Fatalf("Location %q on a refusal", reply.Headers[0][1])
			case tt.status != 400 && (len(reply.Headers) != 1 || reply.Headers[0] != [2]string{"Location", tt.location}):
				t.Fatalf("headers %q, want Location %q", reply.Headers, tt.location)
			}
		})
	}
}

// A request that is not redirected costs no allocation.
func TestPassThroughAllocations(t *testing.T) {
	for _, edit := range []func(*Settings){
		func(s *Settings) { s.Scheme = "https" },
		func(s *Settings) { s.Scheme, s.Host, s.Port = "https", "example.com", 8443 },
		func(s *Settings) { s.Regex, s.Replacement = `^/old/(.*)$`, "/new/$1" },
	} {
		s := defaults()
		edit(&s)
		h, err := New(&s)
		if err != nil {
			t.Fatal(err)
		}
		r := middlewaretest.NewRequest("/a?b=c")
		r.SchemeVal, r.HostName = "https", "example.com:8443"
		if reply := h.Handle(r); reply != nil {
			t.Fatalf("%+v: redirected to %q", s, reply.Headers)
		}
		if n := testing.AllocsPerRun(100, func() { h.Handle(noAllocRequest{r}) }); n > 0 {
			t.Errorf("%+v: %.0f allocations", s, n)
		}
	}
}

// noAllocRequest answers the calls of a pass-through from fixed slices.
type noAllocRequest struct{ *middlewaretest.Request }

var (
	uriBytes  = []byte("/a?b=c")
	hostBytes = []byte("example.com:8443")
)

func (noAllocRequest) URI() []byte    { return uriBytes }
func (noAllocRequest) Host() []byte   { return hostBytes }
func (noAllocRequest) Method() []byte { return []byte("GET") }

// Behind a proxy that terminated TLS, its X-Forwarded-Proto says whether
// the client used HTTPS; anybody else's is ignored.
func TestForwardedProto(t *testing.T) {
	s := defaults()
	s.Scheme, s.TrustedProxies = "https", []string{"10.0.0.0/8"}
	if p := validate(&s); len(p) > 0 {
		t.Fatal(p)
	}
	h, err := New(&s)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, proto string
		redirect    bool
	}{
		{"10.1.2.3", "https", false},
		{"10.1.2.3", "http", true},
		{"10.1.2.3", "", true},
		{"192.0.2.9", "https", true},
	} {
		r := middlewaretest.NewRequest("/a", "X-Forwarded-Proto", tc.proto)
		r.Peer = netip.MustParseAddr(tc.peer)
		if reply := h.Handle(r); (reply != nil) != tc.redirect {
			t.Errorf("peer %s proto %q: reply %+v, want redirect %v", tc.peer, tc.proto, reply, tc.redirect)
		}
	}
	s.TrustedProxies = []string{"10.0.0.0/33"}
	if p := validate(&s); len(p) != 1 || !strings.HasPrefix(p[0], "trusted_proxies[0]: invalid trusted proxy") {
		t.Fatalf("problems %q", p)
	}
}
