package kubernetes

import (
	"fmt"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
)

// grpcRoute translates a GRPCRoute: a method match is the path
// /service/method (exact) or /service (prefix), and the backends are
// spoken to over HTTP/2 in cleartext.
func (t *translator) grpcRoute(r *gwv1.GRPCRoute) {
	k := key(r.Namespace, r.Name)
	parents := t.attach(r.Namespace, "GRPCRoute", r.Generation, r.Spec.ParentRefs, r.Spec.Hostnames)
	if len(parents) == 0 {
		return
	}
	hosts := acceptedHosts(parents)
	extra, err := annotationMiddlewares(r.Annotations)
	resolved := refs{ok: true, reason: string(gwv1.RouteReasonResolvedRefs)}
	var docs []routeDoc
	for ri := range r.Spec.Rules {
		rule := &r.Spec.Rules[ri]
		brs := make([]gwv1.BackendRef, len(rule.BackendRefs))
		for i := range rule.BackendRefs {
			brs[i] = rule.BackendRefs[i].BackendRef
		}
		rr := t.backendRefs(r.Namespace, "GRPCRoute", brs)
		if !rr.ok && resolved.ok {
			resolved = rr
		}
		if len(rr.backends) == 0 {
			continue
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		for mi := range matches {
			d, merr := grpcMatch(&matches[mi])
			if merr != nil && err == nil {
				err = merr
			}
			d.Backends, d.Protocol, d.Strategy, d.Middlewares = rr.backends, "h2c", strategy(rr.backends), extra
			for _, h := range hosts {
				dd := d
				dd.Host, dd.Name = h, fmt.Sprintf("grpcroute/%s/r%dm%d/%s", k, ri, mi, h)
				docs = append(docs, dd)
			}
		}
	}
	t.finishRoute(k, "GRPCRoute", docs, err, parents, resolved, t.res.Status.GRPCRoutes)
}

func grpcMatch(m *gwv1.GRPCRouteMatch) (routeDoc, error) {
	d := routeDoc{Path: "/", Methods: []string{"POST"}}
	if mm := m.Method; mm != nil {
		if mm.Type != nil && *mm.Type != gwv1.GRPCMethodMatchExact {
			return d, fmt.Errorf("gRPC method match type %s is not supported", *mm.Type)
		}
		switch {
		case mm.Service != nil && mm.Method != nil:
			d.Path, d.match.Exact = "/"+*mm.Service+"/"+*mm.Method, true
		case mm.Service != nil:
			d.Path = "/" + *mm.Service
		case mm.Method != nil:
			return d, fmt.Errorf("a gRPC method match without a service is not supported")
		}
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gwv1.GRPCHeaderMatchExact {
			return d, fmt.Errorf("header match type %s is not supported", *h.Type)
		}
		d.match.Headers = append(d.match.Headers, config.NameValue{Name: string(h.Name), Value: h.Value})
	}
	return d, nil
}
