package kubernetes

import (
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpoint is one ready endpoint of a Service port.
type endpoint struct {
	addr string // host:port
}

// servicePort finds the port of svc named by number (or, when name is
// set, by name).
func servicePort(svc *corev1.Service, number int32, name string) (*corev1.ServicePort, bool) {
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if name != "" && p.Name == name || name == "" && p.Port == number {
			return p, true
		}
	}
	return nil, false
}

// endpoints are the ready endpoints of the Service port sp, from the
// Service's EndpointSlices, sorted so that a translation is stable.
// Endpoints that are terminating or not ready are left out: they drain.
func endpoints(ess []*discoveryv1.EndpointSlice, sp *corev1.ServicePort) []endpoint {
	seen := map[string]bool{}
	var out []endpoint
	for _, s := range ess {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if !ready(e.Conditions) {
				continue
			}
			for _, a := range e.Addresses {
				hp := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if !seen[hp] {
					seen[hp] = true
					out = append(out, endpoint{addr: hp})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return strings.Compare(a.addr, b.addr) })
	return out
}

// slicePort is the port of s that serves sp: the one of the same name
// (EndpointSlice ports are named after the Service's).
func slicePort(s *discoveryv1.EndpointSlice, sp *corev1.ServicePort) (int32, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name == sp.Name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// ready: an endpoint is ready unless it says otherwise, and never while
// terminating.
func ready(c discoveryv1.EndpointConditions) bool {
	if c.Terminating != nil && *c.Terminating {
		return false
	}
	return c.Ready == nil || *c.Ready
}

// h2c reports whether the Service port speaks HTTP/2 in cleartext.
func h2c(sp *corev1.ServicePort) bool {
	return sp.AppProtocol != nil && (*sp.AppProtocol == "kubernetes.io/h2c" || *sp.AppProtocol == "h2c" || *sp.AppProtocol == "grpc")
}
