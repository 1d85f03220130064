package config

import (
	"strings"
	"testing"
)

func TestProvidersKubernetes(t *testing.T) {
	c, err := Parse("ok.yaml", []byte("providers:\n  kubernetes:\n    kubeconfig: /etc/kube.conf\n    namespaces: [apps, team-a]\n"))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Providers.Kubernetes
	if k.GatewayClass != "rustygate" || k.IngressClass != "rustygate" || k.Debounce.D().Milliseconds() != 100 || !k.LeaderElectionEnabled() {
		t.Errorf("defaults: %+v", k)
	}
	if c, _ := Parse("none.yaml", []byte("server: {listen: \":8080\"}\n")); c.Providers.Kubernetes != nil {
		t.Errorf("the provider is on without its section")
	}
	for _, tc := range []struct{ yaml, want string }{
		{"providers:\n  kubernetes:\n    namespaces: [apps]\n", `bad.yaml:2: providers.kubernetes: set kubeconfig (a file) or in_cluster: true`},
		{"providers:\n  kubernetes:\n    in_cluster: true\n    kubeconfig: /k\n", `bad.yaml:3: providers.kubernetes.in_cluster: exclusive with kubeconfig`},
		{"providers:\n  kubernetes:\n    in_cluster: true\n    namespaces: [Apps]\n", `bad.yaml:4: providers.kubernetes.namespaces[0]: "Apps" is not a namespace name`},
		{"providers:\n  kubernetes:\n    in_cluster: true\n    gateway_class: \"a_b\"\n", `bad.yaml:4: providers.kubernetes.gateway_class: "a_b" is not a class name`},
		{"providers:\n  kubernetes:\n    in_cluster: true\n    debounce: 1m\n", `bad.yaml:4: providers.kubernetes.debounce: must be between 0 and 10s`},
		{"providers:\n  kubernetes:\n    in_cluster: true\n    watch: all\n", `bad.yaml:4: unknown key "watch" at providers.kubernetes`},
	} {
		_, err := Parse("bad.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got: %v\nwant: %s", tc.yaml, err, tc.want)
		}
	}
}
