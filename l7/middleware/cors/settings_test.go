package cors

import (
	"slices"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// check runs Validate and returns "field: message" lines.
func check(s *Settings, enabled bool) []string {
	var out []string
	s.Validate(config.NewSettingsCheck(enabled, false, nil, func(field, msg string) {
		out = append(out, field+": "+msg)
	}))
	return out
}

func TestSettingsDefaultsResolveValidate(t *testing.T) {
	s := defaults().(*Settings)
	if !slices.Equal(s.AllowMethods, []string{"GET", "HEAD", "POST"}) {
		t.Errorf("default methods %q", s.AllowMethods)
	}
	if got := check(s, true); !slices.Equal(got, []string{"allow_origins: is required"}) {
		t.Errorf("enabled without origins: %q", got)
	}
	if got := check(s, false); len(got) != 0 {
		t.Errorf("disabled without origins: %q", got)
	}
	s = &Settings{AllowOrigins: []string{"HTTPS://A.example.COM", "*"}, AllowMethods: []string{"get"}, AllowCredentials: true}
	s.Resolve()
	if s.AllowOrigins[0] != "https://a.example.com" || s.AllowMethods[0] != "GET" {
		t.Errorf("Resolve: %+v", s)
	}
	want := []string{
		`allow_origins[1]: "*" allows every origin; list it alone`,
		`allow_credentials: cannot be true when allow_origins is "*" (list the origins instead)`,
	}
	if got := check(s, true); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
