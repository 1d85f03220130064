package jwt

import (
	"slices"
	"testing"

	"github.com/rustygate/rustygate/config"
)

func TestSettingsResolveValidate(t *testing.T) {
	s := defaults().(*Settings)
	if s.ForwardAuthorization == nil || !*s.ForwardAuthorization || s.RequireExp == nil || !*s.RequireExp || s.Leeway != defaultLeeway {
		t.Errorf("defaults: %+v", s)
	}
	var got []string
	report := func(field, msg string) { got = append(got, field+": "+msg) }
	s.Validate(config.NewSettingsCheck(true, false, nil, report))
	if !slices.Equal(got, []string{": one of secret, secret_file, public_key_file or jwks_url is required"}) {
		t.Errorf("no key: %q", got)
	}
	s.Secret, s.JWKSURL = "0123456789abcdef0123456789abcdef", "https://idp/keys"
	s.Resolve()
	if !slices.Equal(s.Algorithms, []string{"HS256", "RS256", "ES256"}) {
		t.Errorf("algorithms %q", s.Algorithms)
	}
	got = nil
	s.Validate(config.NewSettingsCheck(true, false, nil, report))
	if len(got) != 0 {
		t.Errorf("valid settings: %q", got)
	}
}
