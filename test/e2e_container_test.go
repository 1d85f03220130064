package e2e_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerConfig runs the gateway on the configuration baked into
// the container image (config/container.yaml), its listen addresses moved
// to free loopback ports: with no backend at all, GET / answers the
// banner, other paths a 404 (not a 502 for a backend the image lacks), and
// the probes answer.
func TestContainerConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "container.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(raw)
	for _, r := range []struct{ old, new string }{
		{`listen: ":8080"`, `listen: "127.0.0.1:0"`},
		{`listen: "0.0.0.0:8081"`, `listen: "127.0.0.1:0"`},
	} {
		if strings.Count(yaml, r.old) != 1 {
			t.Fatalf("config/container.yaml no longer has %s once:\n%s", r.old, yaml)
		}
		yaml = strings.Replace(yaml, r.old, r.new, 1)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUSTYGATE_ADMIN_TOKEN", "")
	p := hrStart(t, cfg)
	c := newClient(t)
	resp, body := get(t, c, p.url()+"/")
	if resp.StatusCode != http.StatusOK || string(body) != "RustyGate is running\n" {
		t.Errorf("GET /: %d %q, want 200 \"RustyGate is running\"", resp.StatusCode, body)
	}
	resp, body = get(t, c, p.url()+"/api/test")
	checkErrorResponse(t, resp, body, http.StatusNotFound)
	checkAdmin(t, c, p.admin, []adminCase{{"/livez", "", 200}, {"/readyz", "", 200}, {"/metrics", "", 200},
		{"/admin/bans", "", 403}, {"/debug/pprof/", "", 404}})
}
