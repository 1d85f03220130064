package headers

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware/jwt"
	"github.com/rustygate/rustygate/l7/middleware/middlewaretest"
)

// validate runs Validate and returns the problems as "field: message".
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
		want string // a substring of the only problem; "" for none
	}{
		{"ok", Settings{Request: Ops{Set: map[string]string{"X-Client": "{client_ip} {jwt.sub} {header.User-Agent} {{x}}"}}}, ""},
		{"unknown placeholder", Settings{Request: Ops{Set: map[string]string{"X-A": "{client}"}}}, "request.set.X-A: unknown placeholder {client}"},
		{"unclosed", Settings{Response: Ops{Add: map[string]string{"X-A": "a{host"}}}, "response.add.X-A: unclosed placeholder"},
		{"stray brace", Settings{Response: Ops{Add: map[string]string{"X-A": "a}"}}}, "unbalanced '}'"},
		{"bad header placeholder", Settings{Request: Ops{Set: map[string]string{"X-A": "{header.a b}"}}}, "unknown placeholder {header.a b}"},
		{"bad name", Settings{Request: Ops{Set: map[string]string{"X A": "v"}}}, `request.set.X A: invalid header name "X A"`},
		{"framing", Settings{Response: Ops{Set: map[string]string{"Content-Length": "1"}}}, "managed by the proxy"},
		{"host", Settings{Request: Ops{Add: map[string]string{"host": "evil"}}}, "managed by the proxy"},
		{"remove framing", Settings{Request: Ops{Remove: []string{"X-Ok", "Transfer-Encoding"}}}, "request.remove[1]: header Transfer-Encoding is managed"},
		{"xff", Settings{Request: Ops{Set: map[string]string{"X-Forwarded-For": "1.2.3.4"}}}, "managed by the proxy"},
		{"control", Settings{Request: Ops{Set: map[string]string{"X-A": "a\r\nb"}}}, "control character"},
		{"case twice", Settings{Request: Ops{Set: map[string]string{"X-A": "1", "x-a": "2"}}}, "is also written as"},
		{"trusted", Settings{TrustedProxies: []string{"10.0.0.0/8", "nope"}}, `trusted_proxies[1]: invalid trusted proxy "nope"`},
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

func newHandler(t *testing.T, s *Settings) *Handler {
	t.Helper()
	if p := validate(s); len(p) > 0 {
		t.Fatalf("invalid settings: %q", p)
	}
	h, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRequestOperations(t *testing.T) {
	h := newHandler(t, &Settings{
		TrustedProxies: []string{"192.0.2.0/24"},
		Request: Ops{
			Remove: []string{"X-Debug"},
			Set: map[string]string{
				"X-Client":  "{client_ip}",
				"X-Id":      "id={request_id}",
				"X-Origin":  "{scheme}://{host}{path} {method}",
				"X-User":    "{jwt.sub}",
				"X-Aud":     "{jwt.aud}",
				"X-Level":   "{jwt.level}",
				"X-Missing": "{jwt.nope}",
				"X-Agent":   "ua={header.user-agent} {{literal}}",
				"X-Const":   "constant",
			},
			Add: map[string]string{"X-Tag": "two"},
		},
	})
	r := middlewaretest.NewRequest("/a/b?q=1",
		"X-Debug", "1", "x-debug", "2", "X-Forwarded-For", "203.0.113.9, 192.0.2.50",
		"User-Agent", "curl/8", "X-Missing", "from client", "x-const", "client", "X-Tag", "one")
	r.SchemeVal = "https"
	r.SetValue(claimsKey, map[string]any{"sub": "alice", "aud": []any{"a", map[string]any{}, "b"}, "level": 3.0})
	if reply := h.Handle(r); reply != nil {
		t.Fatalf("reply %+v", reply)
	}
	want := map[string][]string{
		"X-Debug":   nil,
		"X-Client":  {"203.0.113.9"},
		"X-Id":      {"id=req-1"},
		"X-Origin":  {"https://example.com/a/b GET"},
		"X-User":    {"alice"},
		"X-Aud":     {"a, b"},
		"X-Level":   {"3"},
		"X-Missing": nil,
		"X-Agent":   {"ua=curl/8 {literal}"},
		"X-Const":   {"constant"},
		"X-Tag":     {"one", "two"},
	}
	for name, vs := range want {
		if got := r.HeaderValues(name); !slices.Equal(got, vs) {
			t.Errorf("%s = %q, want %q", name, got, vs)
		}
	}
}

func TestClientIPUntrustedPeer(t *testing.T) {
	h := newHandler(t, &Settings{Request: Ops{Set: map[string]string{"X-Client": "{client_ip}"}}})
	r := middlewaretest.NewRequest("/", "X-Forwarded-For", "203.0.113.9")
	r.Peer = netip.MustParseAddr("::ffff:198.51.100.7")
	h.Handle(r)
	if got := r.HeaderValues("X-Client"); !slices.Equal(got, []string{"198.51.100.7"}) {
		t.Fatalf("X-Client = %q: a header from an untrusted peer was believed", got)
	}
}

// A claim is whatever the token's issuer put there: a value with a line
// break must not reach a header.
func TestClaimWithControlCharacter(t *testing.T) {
	h := newHandler(t, &Settings{
		Request:  Ops{Set: map[string]string{"X-User": "{jwt.sub}", "X-Both": "u={jwt.sub}"}},
		Response: Ops{Add: map[string]string{"X-User": "{jwt.sub}"}},
	})
	r := middlewaretest.NewRequest("/", "X-User", "client")
	r.SetValue(claimsKey, map[string]any{"sub": "a\r\nX-Admin: 1"})
	h.Handle(r)
	if got := r.HeaderValues("X-User"); got != nil {
		t.Fatalf("X-User = %q", got)
	}
	if got := r.HeaderValues("X-Both"); got != nil {
		t.Fatalf("X-Both = %q", got)
	}
	if len(r.RespAdded) != 0 {
		t.Fatalf("response headers %q", r.RespAdded)
	}
}

func TestResponseOperations(t *testing.T) {
	h := newHandler(t, &Settings{Response: Ops{
		Remove: []string{"X-Powered-By"},
		Set:    map[string]string{"Cache-Control": "no-store", "X-Req": "{request_id}"},
		Add:    map[string]string{"X-Frame-Options": "DENY"},
	}})
	r := middlewaretest.NewRequest("/")
	h.Handle(r)
	if want := []string{"X-Powered-By", "Cache-Control", "X-Req"}; !slices.Equal(r.RespDeleted, want) {
		t.Fatalf("deleted %q, want %q", r.RespDeleted, want)
	}
	got := fmt.Sprint(r.RespAdded)
	if want := "[[Cache-Control no-store] [X-Req req-1] [X-Frame-Options DENY]]"; got != want {
		t.Fatalf("added %s, want %s", got, want)
	}
}

func TestParseTemplateConstant(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "a {{b}} c": "a {b} c", "": ""} {
		tp, err := parseTemplate(in)
		if err != nil || tp.parts != nil || tp.constant != want {
			t.Errorf("%q: %+v %v, want constant %q", in, tp, err, want)
		}
	}
}

// {jwt.CLAIM} reads the claims where the jwt middleware stores them.
func TestClaimsKey(t *testing.T) {
	if claimsKey != jwt.ClaimsKey {
		t.Fatalf("claims read under %q, stored by jwt under %q", claimsKey, jwt.ClaimsKey)
	}
}
