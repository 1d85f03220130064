package deploy_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// The chart's cluster values and their example: three replicas with the
// cluster section filled in (node name from the pod, the Redis password
// from a Secret), a configuration the gateway accepts.
func TestHelmChartCluster(t *testing.T) {
	example := helmValue(t, []byte(pkgRead(t, filepath.Join("deploy", chartDir, "examples", "cluster-values.yaml"))))
	rendered, err := renderChart(t, example)
	if err != nil {
		t.Fatal(err)
	}
	kinds := byKind(manifests(t, rendered))
	if r := dig(kinds["Deployment"], "spec", "replicas"); fmt.Sprint(r) != "3" {
		t.Errorf("replicas %v, want 3", r)
	}
	env := dig(kinds["Deployment"], "spec", "template", "spec", "containers", 0, "env")
	pw := findNamed(env, "RUSTYGATE_REDIS_PASSWORD")
	if dig(pw, "valueFrom", "secretKeyRef", "name") != "rustygate-redis" || dig(pw, "valueFrom", "secretKeyRef", "key") != "password" {
		t.Errorf("RUSTYGATE_REDIS_PASSWORD: %v", pw)
	}
	text, _ := dig(kinds["ConfigMap"], "data", "config.yaml").(string)
	t.Setenv("POD_NAME", "edge-rustygate-abc12")
	t.Setenv("RUSTYGATE_REDIS_PASSWORD", "s3cret")
	t.Setenv("RUSTYGATE_ADMIN_TOKEN", "t")
	cfg, err := config.Parse("config.yaml", []byte(text))
	if err != nil {
		t.Fatalf("the rendered configuration does not load: %v\n%s", err, text)
	}
	cl := cfg.Cluster
	if !cl.Enabled() || cl.NodeName != "edge-rustygate-abc12" || cl.Redis.Password != "s3cret" || cl.Redis.Mode != "standalone" ||
		cl.Redis.Addrs[0] != "redis-master.redis.svc.cluster.local:6379" || cl.KeyPrefix != "rustygate:" {
		t.Errorf("cluster section %+v from:\n%s", cl, text)
	}
	if !strings.Contains(text, "scope: cluster") {
		t.Errorf("the example's rate limit is not of scope cluster:\n%s", text)
	}

	// Off by default; on without an address, the chart refuses.
	rendered, err = renderChart(t, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if text := dig(byKind(manifests(t, rendered))["ConfigMap"], "data", "config.yaml").(string); strings.Contains(text, "cluster:") {
		t.Errorf("cluster section rendered by default:\n%s", text)
	}
	if _, err := renderChart(t, map[string]any{"cluster": map[string]any{"enabled": true}}); err == nil || !strings.Contains(err.Error(), "cluster.redis.addrs") {
		t.Errorf("cluster.enabled without addrs: %v", err)
	}
}
