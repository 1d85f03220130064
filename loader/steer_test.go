package loader

import (
	"net/url"
	"path/filepath"
	"testing"
)

func TestSteerPinDir(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"pg", "pg"},
		{"games-eu.1", "games-eu.1"},
		{"a/b", "a%2Fb"},
		{"../up", "..%2Fup"},
		{".", "%2E"},
		{"..", ".%2E"},
		{"with space", "with%20space"},
	} {
		got := SteerPinDir("/sys/fs/bpf/rustygate", tc.name)
		if want := filepath.Join("/sys/fs/bpf/rustygate", SteerSubdir, tc.want); got != want {
			t.Errorf("SteerPinDir(%q) = %q, want %q", tc.name, got, want)
		}
		if back, err := url.PathUnescape(filepath.Base(got)); err != nil || back != tc.name {
			t.Errorf("%q does not unescape to %q: %q, %v", got, tc.name, back, err)
		}
	}
}
