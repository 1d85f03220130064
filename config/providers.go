package config

import (
	"fmt"
	"strings"
)

// Providers are sources of routes besides this file. Their routes are
// added to the file's on every load and reload, and go through the same
// all-or-nothing reload.
type Providers struct {
	// Kubernetes reads Gateway API objects and Ingresses (see
	// providers/kubernetes). nil: off.
	Kubernetes *KubernetesProvider `yaml:"kubernetes"`
}

// KubernetesProvider configures the Kubernetes provider.
type KubernetesProvider struct {
	// Kubeconfig is a kubeconfig file. Exclusive with InCluster.
	Kubeconfig string `yaml:"kubeconfig"`
	// InCluster uses the pod's service account. Exclusive with Kubeconfig.
	InCluster bool `yaml:"in_cluster"`
	// Namespaces watched; empty: all.
	Namespaces []string `yaml:"namespaces"`
	// GatewayClass is the name of the GatewayClass whose Gateways are
	// served. Default "rustygate".
	GatewayClass string `yaml:"gateway_class"`
	// IngressClass is the ingressClassName of the Ingresses served.
	// Default "rustygate".
	IngressClass string `yaml:"ingress_class"`
	// Debounce is how long a burst of changes is collected before one
	// reload. Default 100ms.
	Debounce Duration `yaml:"debounce"`
	// StatusAddress is the address written in the status of Gateways and
	// Ingresses ("": none).
	StatusAddress string `yaml:"status_address"`
	// LeaderElection makes only one replica write status. Default true.
	LeaderElection *bool `yaml:"leader_election"`
	// LeaseNamespace holds the leader election Lease. Default "default",
	// or the pod's namespace in cluster.
	LeaseNamespace string `yaml:"lease_namespace"`
}

// LeaderElectionEnabled reports whether leader election is on (default true).
func (k *KubernetesProvider) LeaderElectionEnabled() bool {
	return k.LeaderElection == nil || *k.LeaderElection
}

const (
	defaultKubernetesClass    = "rustygate"
	defaultKubernetesDebounce = Duration(100e6)
	maxKubernetesDebounce     = Duration(10e9)
)

func defaultProviders(p *Providers) {
	k := p.Kubernetes
	if k == nil {
		return
	}
	setString(&k.GatewayClass, defaultKubernetesClass)
	setString(&k.IngressClass, defaultKubernetesClass)
	if k.Debounce == 0 {
		k.Debounce = defaultKubernetesDebounce
	}
}

func validateProviders(c *Config, st *vstate) {
	k := c.Providers.Kubernetes
	if k == nil {
		return
	}
	const p = "providers.kubernetes"
	if k.InCluster && k.Kubeconfig != "" {
		st.add(p+".in_cluster", "exclusive with kubeconfig: set one of them")
	}
	if !k.InCluster && k.Kubeconfig == "" {
		st.add(p, "set kubeconfig (a file) or in_cluster: true")
	}
	for i, ns := range k.Namespaces {
		if !validDNSLabel(ns) {
			st.add(fmt.Sprintf("%s.namespaces[%d]", p, i), "%q is not a namespace name", ns)
		}
	}
	for key, v := range map[string]string{"gateway_class": k.GatewayClass, "ingress_class": k.IngressClass} {
		if !validDNSSubdomain(v) {
			st.add(p+"."+key, "%q is not a class name (lower-case DNS name)", v)
		}
	}
	if k.Debounce < 0 || k.Debounce > maxKubernetesDebounce {
		st.add(p+".debounce", "must be between 0 and %s (got %s)", maxKubernetesDebounce, k.Debounce)
	}
	if k.LeaseNamespace != "" && !validDNSLabel(k.LeaseNamespace) {
		st.add(p+".lease_namespace", "%q is not a namespace name", k.LeaseNamespace)
	}
}

// validDNSSubdomain: a Kubernetes object name such as a class name.
func validDNSSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !validDNSLabel(l) {
			return false
		}
	}
	return true
}

// validDNSLabel: a Kubernetes namespace name (RFC 1123 label).
func validDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
