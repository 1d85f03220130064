package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAdminDefaults(t *testing.T) {
	c, err := Parse("a.yaml", []byte("routes: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Admin
	if a.Listen != "127.0.0.1:8081" || a.PProf || a.MetricsAuth || a.Token != "" || c.Server.DrainDelay != 0 {
		t.Errorf("defaults: admin %+v, drain_delay %v", a, c.Server.DrainDelay)
	}
}

func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("a.yaml", []byte("admin:\n  token_file: "+good+"\n  pprof: true\n  metrics_auth: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "s3cret-token" || !c.Admin.PProf || !c.Admin.MetricsAuth {
		t.Errorf("admin = %+v, want the file's token without its newline", c.Admin)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("a parsed configuration does not validate: %v", err)
	}
	// A rotated file is read again by the next load.
	if err := os.WriteFile(good, []byte("rotated\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Parse("a.yaml", []byte("admin:\n  token_file: "+good+"\n")); err != nil || c.Admin.Token != "rotated" {
		t.Errorf("after rotation: %v, %+v", err, c)
	}
}

func TestAdminErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	spaced := filepath.Join(dir, "spaced")
	os.WriteFile(empty, []byte("\n"), 0o600)
	os.WriteFile(spaced, []byte("a b\n"), 0o600)
	missing := filepath.Join(dir, "missing")
	tests := []struct{ yaml, want string }{
		{"admin:\n  listen: \"127.0.0.1:9\"\n  token_file: " + missing + "\n",
			"a.yaml:3: admin.token_file: cannot read the admin token: open " + missing + ": no such file or directory"},
		{"admin:\n  token: abc\n  token_file: " + empty + "\n", "a.yaml:3: admin.token_file: set either admin.token or admin.token_file, not both"},
		{"admin:\n  token_file: " + empty + "\n", "a.yaml:2: admin.token_file: " + empty + " is empty"},
		{"admin:\n  token_file: " + spaced + "\n", "a.yaml:2: admin.token_file: the token in " + spaced + " must not contain spaces or control characters"},
		{"admin:\n  pprof: true\n", "a.yaml:2: admin.pprof: needs admin.token or admin.token_file: the profiler is served only behind the token"},
		{"admin:\n  metrics_auth: true\n", "a.yaml:2: admin.metrics_auth: needs admin.token or admin.token_file"},
		{"server:\n  drain_delay: 11m\n", "a.yaml:2: server.drain_delay: must be between 0 and 10m0s (got 11m0s)"},
	}
	for _, tt := range tests {
		_, err := Parse("a.yaml", []byte(tt.yaml))
		if err == nil || strings.TrimSpace(err.Error()) != tt.want {
			t.Errorf("%q:\n got %v\nwant %s", tt.yaml, err, tt.want)
		}
	}
}

func TestDrainDelay(t *testing.T) {
	c, err := Parse("a.yaml", []byte("server:\n  drain_delay: 5s\n"))
	if err != nil || c.Server.DrainDelay.D() != 5*time.Second {
		t.Fatalf("%v %+v", err, c)
	}
}
