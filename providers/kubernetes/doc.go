// Package kubernetes is the Kubernetes provider: it watches Gateway API
// objects (GatewayClass, Gateway, HTTPRoute, GRPCRoute, TLSRoute,
// TCPRoute, ReferenceGrant), Ingresses, Services, EndpointSlices and
// Secrets with client-go informers, and translates them into routes of the
// same configuration the file provider builds (config.Route), and the TCP
// and TLS (passthrough) Gateway listeners into l4 listeners
// (config.L4Listener: TCPRoute backends, TLSRoute hostnames as SNI
// routes). The gateway adds them to the file's routes and l4 listeners on
// every reload, so that both go through the one all-or-nothing reload; a
// burst of changes is debounced into one reload.
//
// Backends are the ready endpoints of a Service port, read from its
// EndpointSlices: a pool follows its pods, and a reload keeps the
// connections and health state of the endpoints that stay (upstream state
// is keyed by backend identity). An endpoint that is terminating leaves
// the pool: new requests stop going to it while those in flight finish.
//
// Translation (see Translate) is a pure function of the objects, so that
// it is tested and benchmarked without an API server. The routes of one
// object are parsed as the file's are (config.Parse), so defaults,
// validation and middlewares (the rustygate.io/middlewares annotation)
// are exactly the file's; an object whose routes do not validate is left
// out and its status says why.
//
// Status (Accepted, Programmed, ResolvedRefs with the spec's reasons) is
// written back by one replica only, the holder of a coordination.k8s.io
// Lease (client-go leader election).
package kubernetes
