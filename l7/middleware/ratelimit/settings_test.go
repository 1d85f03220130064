package ratelimit

import (
	"slices"
	"testing"

	"github.com/rustygate/rustygate/config"
)

func TestSettingsResolveOrderValidate(t *testing.T) {
	s := defaults().(*Settings)
	var got []string
	s.Validate(config.NewSettingsCheck(true, false, nil, func(field, msg string) { got = append(got, field+": "+msg) }))
	if !slices.Equal(got, []string{"limit: is required"}) {
		t.Errorf("defaults: %q", got)
	}
	s.Limit = 50
	s.Resolve()
	if s.Burst != 50 {
		t.Errorf("burst resolved to %d, want the limit", s.Burst)
	}
	if o := s.ChainOrder(Order); o != Order {
		t.Errorf("ip key: order %d", o)
	}
	s.Key = "jwt:sub"
	if o := s.ChainOrder(Order); o != ClaimOrder {
		t.Errorf("claim key: order %d, want %d (after jwt)", o, ClaimOrder)
	}
	// A written zero is checked as a value, not taken for "unset".
	s = &Settings{Limit: 0, Window: 0, Key: "ip", MaxKeys: 1}
	got = nil
	written := func(f string) bool { return f == "limit" }
	s.Validate(config.NewSettingsCheck(false, false, written, func(field, msg string) { got = append(got, field+": "+msg) }))
	want := []string{"limit: must be between 1 and 1000000000 (got 0)", "window: must be greater than 0 (got 0s)"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
