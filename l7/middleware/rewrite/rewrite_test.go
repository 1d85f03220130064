package rewrite

import (
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware/middlewaretest"
)

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
		s    Settings
		want string
	}{
		{"regex", Settings{Regex: `^/api/v1/(?P<rest>.*)$`, Replacement: "/v1/${rest}"}, ""},
		{"query", Settings{Query: QueryOps{Set: map[string]string{"a": "b c"}, Remove: []string{"x"}}}, ""},
		{"nothing", Settings{}, ": nothing to rewrite"},
		{"bad regex", Settings{Regex: `^/(a`, Replacement: "/b"}, "regex: invalid regex"},
		{"unknown capture", Settings{Regex: `^/(a)`, Replacement: "/$3"}, "replacement: replacement names ${3}"},
		{"no replacement", Settings{Regex: `^/(a)`}, "replacement: regex needs a replacement"},
		{"query in replacement", Settings{Regex: `^/(a)`, Replacement: "/b?c=1"}, "has a '?'"},
		{"relative", Settings{Regex: `^/(a)`, Replacement: "b"}, "is not a path"},
		{"prefix", Settings{StripPrefix: "api"}, "strip_prefix: invalid prefix"},
		{"dot prefix", Settings{AddPrefix: "/a/../b"}, "add_prefix: invalid prefix"},
		{"empty param", Settings{Query: QueryOps{Remove: []string{""}}}, "query.remove[0]: empty parameter name"},
		{"control in value", Settings{Query: QueryOps{Add: map[string]string{"a": "b\nc"}}}, "query.add.a: control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := validate(&tt.s)
			switch {
			case tt.want == "" && len(got) > 0:
				t.Fatalf("problems: %q", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Fatalf("problems %q, want one with %q", got, tt.want)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name   string
		s      Settings
		target string
		want   string // "" : unchanged; "400": refused
	}{
		{"regex", Settings{Regex: `^/api/v1/(.*)$`, Replacement: "/v1/$1"}, "/api/v1/users?id=3", "/v1/users?id=3"},
		{"named", Settings{Regex: `^/u/(?P<id>\d+)$`, Replacement: "/users/${id}/profile"}, "/u/42", "/users/42/profile"},
		{"no match", Settings{Regex: `^/api/(.*)$`, Replacement: "/$1"}, "/other", ""},
		{"strip", Settings{StripPrefix: "/api"}, "/api/users?x", "/users?x"},
		{"strip all", Settings{StripPrefix: "/api/"}, "/api", "/"},
		{"strip needs a segment", Settings{StripPrefix: "/api"}, "/apix/users", ""},
		{"add", Settings{AddPrefix: "/backend/"}, "/users", "/backend/users"},
		{"strip and add", Settings{StripPrefix: "/api", AddPrefix: "/v2"}, "/api/a", "/v2/a"},
		{"query ops", Settings{Query: QueryOps{
			Set: map[string]string{"lang": "en", "page": "1"}, Add: map[string]string{"tag": "a b&c"}, Remove: []string{"debug", "x y"},
		}}, "/s?debug=1&q=go&lang=fr&x+y=2&Lang=de&&page", "/s?q=go&Lang=de&lang=en&page=1&tag=a+b%26c"},
		{"query added", Settings{Query: QueryOps{Add: map[string]string{"a": "1"}}}, "/s", "/s?a=1"},
		{"query emptied", Settings{Query: QueryOps{Remove: []string{"a"}}}, "/s?a=1", "/s"},
		// What the path may not carry raw gets encoded, existing escapes
		// stay, and the result never starts with //.
		{"encoded", Settings{Regex: `^/(.*)$`, Replacement: "/x/é/$1"}, "/a%20b/%zz", "/x/%C3%A9/a%20b/%25zz"},
		{"leading slashes", Settings{Regex: `^/go(.*)$`, Replacement: "$1"}, "/go//evil.example/a", "/evil.example/a"},
		{"dot segment", Settings{Regex: `^/a(.*)$`, Replacement: "/$1"}, "/a./x", "400"},
		{"encoded dot segment", Settings{Regex: `^/a(.*)$`, Replacement: "/b/$1"}, "/a%2E%2e/x", "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := validate(&tt.s); len(p) > 0 {
				t.Fatalf("invalid settings: %q", p)
			}
			h, err := New(&tt.s)
			if err != nil {
				t.Fatal(err)
			}
			r := middlewaretest.NewRequest(tt.target)
			reply := h.Handle(r)
			switch {
			case tt.want == "400":
				if reply == nil || reply.Status != 400 || r.URISet {
					t.Fatalf("reply %+v, target %q: want a 400 and no rewrite", reply, r.Target)
				}
			case reply != nil:
				t.Fatalf("reply %d %s", reply.Status, reply.Body)
			case tt.want == "" && r.URISet:
				t.Fatalf("rewritten to %q, want unchanged", r.Target)
			case tt.want != "" && r.Target != tt.want:
				t.Fatalf("target %q, want %q", r.Target, tt.want)
			}
		})
	}
}

// A path the regex does not match costs no allocation.
func TestNoMatchAllocations(t *testing.T) {
	h, err := New(&Settings{Regex: `^/api/(.*)$`, Replacement: "/$1"})
	if err != nil {
		t.Fatal(err)
	}
	r := uriOnly{middlewaretest.NewRequest("/other/path?q=1")}
	if n := testing.AllocsPerRun(100, func() { h.Handle(r) }); n > 0 || r.URISet {
		t.Fatalf("%.0f allocations, rewritten %v", n, r.URISet)
	}
}

var otherURI = []byte("/other/path?q=1")

// uriOnly is a request whose URI costs nothing to read.
type uriOnly struct{ *middlewaretest.Request }

func (uriOnly) URI() []byte { return otherURI }
