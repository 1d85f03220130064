package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
)

// ControllerName is the controllerName of the GatewayClasses RustyGate
// serves.
const ControllerName = "rustygate.io/gateway-controller"

// MiddlewaresAnnotation on an HTTPRoute, GRPCRoute or Ingress holds a
// YAML list of middleware entries, as a route's `middlewares:` in the
// file, added to each of the object's routes.
const MiddlewaresAnnotation = "rustygate.io/middlewares"

// World is the set of objects a translation reads: a consistent copy of
// the informers' caches.
type World struct {
	Classes    []*gwv1.GatewayClass
	Gateways   []*gwv1.Gateway
	HTTPRoutes []*gwv1.HTTPRoute
	GRPCRoutes []*gwv1.GRPCRoute
	TLSRoutes  []*gwv1.TLSRoute
	TCPRoutes  []*gwv1.TCPRoute
	Grants     []*gwv1.ReferenceGrant
	Ingresses  []*netv1.Ingress
	// Services and Secrets by "namespace/name".
	Services map[string]*corev1.Service
	Secrets  map[string]*corev1.Secret
	// Slices are the EndpointSlices of each Service, by "namespace/service".
	Slices map[string][]*discoveryv1.EndpointSlice
}

// Options are the provider settings a translation needs.
type Options struct {
	GatewayClass string
	IngressClass string
	// Reserved are the ports the gateway's own listeners hold (its
	// configuration file's), each with what holds it: a TCP or TLS
	// Gateway listener on one of them is not programmed (PortUnavailable).
	Reserved map[int32]string
}

// Result is a translation: the routes to add to the file's, the l4
// listeners of the TCP and TLS (passthrough) Gateway listeners, the
// certificates the HTTPS listener serves in addition to the file's, and
// the status each object should have.
type Result struct {
	Routes []config.Route
	// L4 listen on ":PORT" (the Gateway listener's port, every address);
	// the gateway may give them the host of its own listeners.
	L4           []config.L4Listener
	Certificates []Certificate
	Status       Status
	// Errors name the objects left out and why (an Ingress has no
	// condition to say it).
	Errors []string
}

// Certificate is a certificate and key from a kubernetes.io/tls Secret.
type Certificate struct {
	// Secret is "namespace/name".
	Secret      string
	Cert, Key   []byte
	ResourceVer string
}

func key(ns, name string) string { return ns + "/" + name }
