package limits

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware/middlewaretest"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "10k": 10 << 10, "10K": 10 << 10, "1m": 1 << 20, "2g": 2 << 30,
		"3KiB": 3 << 10, "5 MiB": 5 << 20, "1GiB": 1 << 30, "8KB": 8000, "2MB": 2e6, "1GB": 1e9,
	} {
		if got, err := ParseSize(in); err != nil || int64(got) != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5m", "10 mb", "m", "9999999999g"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("%q: %d, want an error", in, got)
		}
	}
	var v struct {
		S Size `yaml:"s"`
	}
	if err := yaml.Unmarshal([]byte("s: 10m"), &v); err != nil || v.S != 10<<20 {
		t.Fatalf("yaml: %d %v", v.S, err)
	}
	if err := yaml.Unmarshal([]byte("s: [1]"), &v); err == nil || !strings.Contains(err.Error(), "expected a size") {
		t.Fatalf("yaml list: %v", err)
	}
}

func validate(s *Settings, written ...string) []string {
	var got []string
	c := config.NewSettingsCheck(true, false, func(f string) bool {
		return strings.Contains(strings.Join(written, ","), f)
	}, func(field, msg string) { got = append(got, field+": "+msg) })
	s.Validate(c)
	return got
}

func TestValidate(t *testing.T) {
	def := func() Settings { return Settings{ServerHeader: "keep", ViaPseudonym: "rustygate"} }
	tests := []struct {
		name    string
		edit    func(*Settings)
		written string
		want    string
	}{
		{"defaults", func(s *Settings) {}, "", ""},
		{"all", func(s *Settings) {
			s.MaxRequestBody, s.ServerHeader, s.Via, s.ViaPseudonym = 1<<20, "edge", true, "edge-1"
		}, "via_pseudonym", ""},
		{"negative", func(s *Settings) { s.MaxRequestBody = -1 }, "", "max_request_body: must not be negative"},
		{"server control", func(s *Settings) { s.ServerHeader = "a\r\nb" }, "", "server_header: control character"},
		{"server empty", func(s *Settings) { s.ServerHeader = "" }, "", "server_header: empty value"},
		{"pseudonym", func(s *Settings) { s.Via, s.ViaPseudonym = true, "a b" }, "via_pseudonym", `via_pseudonym: invalid pseudonym "a b"`},
		{"pseudonym without via", func(s *Settings) { s.ViaPseudonym = "edge" }, "via_pseudonym", "via_pseudonym: via_pseudonym without via"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := def()
			tt.edit(&s)
			got := validate(&s, tt.written)
			switch {
			case tt.want == "" && len(got) > 0:
				t.Fatalf("problems: %q", got)
			case tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)):
				t.Fatalf("problems %q, want one starting with %q", got, tt.want)
			}
		})
	}
}

type reporter struct{ list []string }

func (r *reporter) Rejected(policy, route, reason string, client netip.Addr) {
	r.list = append(r.list, fmt.Sprint(policy, " ", route, " ", reason, " ", client))
}

func TestBodyLimit(t *testing.T) {
	rep := &reporter{}
	h := New(&Settings{MaxRequestBody: 100, ServerHeader: "keep"}, "api", rep)
	for _, tt := range []struct {
		length int64
		status int
	}{{-1, 0}, {0, 0}, {100, 0}, {101, 413}} {
		r := middlewaretest.NewRequest("/")
		r.ContentLength = tt.length
		reply := h.Handle(r)
		switch {
		case tt.status == 0 && reply != nil:
			t.Errorf("length %d: reply %d", tt.length, reply.Status)
		case tt.status != 0 && (reply == nil || reply.Status != tt.status):
			t.Errorf("length %d: reply %+v, want %d", tt.length, reply, tt.status)
		case r.BodyLimit != 100:
			t.Errorf("length %d: limit %d passed to the request", tt.length, r.BodyLimit)
		}
	}
	if want := []string{"limits api body_too_large 192.0.2.1"}; fmt.Sprint(rep.list) != fmt.Sprint(want) {
		t.Fatalf("reported %q, want %q", rep.list, want)
	}
	// No limit: the request is not bounded.
	r := middlewaretest.NewRequest("/")
	r.ContentLength = 1 << 40
	if reply := New(&Settings{ServerHeader: "keep"}, "api", nil).Handle(r); reply != nil || r.BodyLimit != 0 {
		t.Fatalf("reply %+v, limit %d", reply, r.BodyLimit)
	}
}

func TestServerAndVia(t *testing.T) {
	tests := []struct {
		s       Settings
		deleted string
		added   string
	}{
		{Settings{ServerHeader: "keep"}, "[]", "[]"},
		{Settings{ServerHeader: "remove"}, "[Server]", "[]"},
		{Settings{ServerHeader: "edge"}, "[Server]", "[[Server edge]]"},
		{Settings{ServerHeader: "keep", Via: true, ViaPseudonym: "rustygate"}, "[]", "[[Via 1.1 rustygate]]"},
		{Settings{ServerHeader: "remove", Via: true, ViaPseudonym: "edge-1"}, "[Server]", "[[Via 1.1 edge-1]]"},
	}
	for _, tt := range tests {
		r := middlewaretest.NewRequest("/")
		New(&tt.s, "api", nil).Handle(r)
		if fmt.Sprint(r.RespDeleted) != tt.deleted || fmt.Sprint(r.RespAdded) != tt.added {
			t.Errorf("%+v: deleted %q added %q, want %s %s", tt.s, r.RespDeleted, r.RespAdded, tt.deleted, tt.added)
		}
	}
}
