package deploy_test

import (
	"strings"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// TestHelmKubernetesProvider: with kubernetes.enabled the chart gives the
// pods a ServiceAccount whose ClusterRole grants exactly what the
// provider reads and writes, creates the classes, and the rendered
// configuration enables the provider and loads.
func TestHelmKubernetesProvider(t *testing.T) {
	rendered, err := renderChart(t, map[string]any{"mode": "daemonset", "kubernetes": map[string]any{"enabled": true, "namespaces": []any{"apps"}}})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]any{}
	for _, m := range manifests(t, rendered) {
		kind, _ := m["kind"].(string)
		kinds[kind] = m
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "GatewayClass", "IngressClass", "DaemonSet"} {
		if kinds[k] == nil {
			t.Errorf("no %s rendered", k)
		}
	}
	rbac := rendered["templates/rbac.yaml"]
	for _, want := range []string{"httproutes/status", "endpointslices", "leases", "[get, list, watch]"} {
		if !strings.Contains(rbac, want) {
			t.Errorf("ClusterRole lacks %q", want)
		}
	}
	if strings.Contains(rbac, "delete") || strings.Contains(rbac, "patch") || strings.Contains(rbac, `"*"`) {
		t.Errorf("ClusterRole grants more than the provider uses:\n%s", rbac)
	}
	pod := rendered["templates/daemonset.yaml"]
	if !strings.Contains(pod, "serviceAccountName: ") || !strings.Contains(pod, "automountServiceAccountToken: true") {
		t.Errorf("the pods do not use the ServiceAccount")
	}
	cm := rendered["templates/configmap.yaml"]
	i := strings.Index(cm, "config.yaml: |")
	if i < 0 {
		t.Fatalf("no config.yaml in the ConfigMap:\n%s", cm)
	}
	var lines []string
	for _, l := range strings.Split(cm[i:], "\n")[1:] {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	cfg, err := config.Parse("config.yaml", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("the rendered configuration does not load: %v", err)
	}
	if k := cfg.Providers.Kubernetes; k == nil || !k.InCluster || k.GatewayClass != "rustygate" || len(k.Namespaces) != 1 {
		t.Errorf("providers.kubernetes: %+v", k)
	}
}
