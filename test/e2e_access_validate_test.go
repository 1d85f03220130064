package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lineOf returns the 1-based number of the line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in %q", s, text)
	return 0
}

// TestValidateAccessMiddlewares: `rustygate validate` reports a bad
// basic_auth, forward_auth, ip_filter or mirror entry with the file, the
// line of the value and its key path.
func TestValidateAccessMiddlewares(t *testing.T) {
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("# users\nalice:$apr1$salt$hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, entry, marker, want string
	}{
		{"unknown hash inline", "- name: basic_auth\n        users:\n          - \"ok:" + baBcrypt(t, "x") + "\"\n          - \"eve:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\"",
			"eve:", `routes[0].middlewares[0].users[1]: user "eve": unknown hash format (SHA-1)`},
		{"unknown hash in file", "- name: basic_auth\n        users_file: " + htpasswd,
			"users_file", "routes[0].middlewares[0].users_file: " + htpasswd + `:2: user "alice": unknown hash format (MD5 apr1)`},
		{"bad cidr", "- name: ip_filter\n        allow:\n          - 10.0.0.0/8\n          - 10.0.0.0/33",
			"/33", `routes[0].middlewares[0].allow[1]: invalid address "10.0.0.0/33"`},
		{"bad address", "- name: forward_auth\n        address: \"auth.internal:9000/check\"",
			"address:", `routes[0].middlewares[0].address: invalid URL "auth.internal:9000/check" (want http:// or https://)`},
		{"bad on_error", "- name: forward_auth\n        address: \"http://auth\"\n        on_error: 500",
			"on_error", `routes[0].middlewares[0].on_error: must be 502 or 503`},
		{"bad percentage", "- name: mirror\n        backend: \"http://shadow:8080\"\n        percentage: 150",
			"percentage", `routes[0].middlewares[0].percentage: must be between 0 and 100`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gatewayConfig("fast", fmt.Sprintf("  - path: \"/api\"\n    backend: \"http://127.0.0.1:9\"\n    middlewares:\n      %s\n", tc.entry))
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runValidate(t, path)
			want := fmt.Sprintf("%s:%d: %s", path, lineOf(t, cfg, tc.marker), tc.want)
			if code == 0 || !strings.Contains(stdout+stderr, want) {
				t.Errorf("validate: exit %d, output %q; want it to contain %q", code, stdout+stderr, want)
			}
		})
	}
}
