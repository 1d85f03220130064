package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBackendLabelsJoin: rustygate_backend_up, rustygate_backend_failures_total
// and rustygate_backend_connections name a backend the same way (its URL),
// so that PromQL can join them.
func TestBackendLabelsJoin(t *testing.T) {
	live := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}).URL
	dead := "http://" + closedAddr(t)
	yaml := fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
log:
  access: false
routes:
  - name: join
    path: /join
    backends: [ { url: %q }, { url: %q } ]
    health_check: { path: /, interval: 100ms, timeout: 50ms }
`, live, dead)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := hrStart(t, cfg)
	c := newClient(t)
	for range 4 {
		get(t, c, p.url()+"/join/x")
	}
	// The connection gauges are refreshed every 5 s.
	deadline := time.Now().Add(12 * time.Second)
	for {
		m := upScrape(t, c, p.admin)
		_, conns := upMetricSum(m, "rustygate_backend_connections", map[string]string{"backend": live, "state": "idle"})
		_, up := upMetricSum(m, "rustygate_backend_up", map[string]string{"route": "join", "backend": live})
		_, deadUp := upMetricSum(m, "rustygate_backend_up", map[string]string{"route": "join", "backend": dead})
		if conns == 1 && up == 1 && deadUp == 1 {
			for _, s := range m {
				switch s.name {
				case "rustygate_backend_connections", "rustygate_backend_up", "rustygate_backend_failures_total":
					if b := s.labels["backend"]; b != live && b != dead {
						t.Errorf("%s has backend=%q, want %q or %q", s.name, b, live, dead)
					}
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 12s: backend_connections{backend=%q} %d series, backend_up %d and %d series", live, conns, up, deadUp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
