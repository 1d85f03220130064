package kubernetes

import (
	"fmt"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// weightScale spreads a backendRef's weight over its endpoints: each gets
// weight*weightScale/n, exact for up to 8 endpoints and close beyond.
const weightScale = 840

// backendRefs resolves a rule's backendRefs to endpoints. A reference to
// another namespace needs a ReferenceGrant there.
func (t *translator) backendRefs(ns, kind string, in []gwv1.BackendRef) refs {
	out := refs{ok: true, reason: string(gwv1.RouteReasonResolvedRefs)}
	fail := func(reason, format string, args ...any) {
		if out.ok {
			out.ok, out.reason, out.msg = false, reason, fmt.Sprintf(format, args...)
		}
	}
	for _, ref := range in {
		if ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service" {
			fail(string(gwv1.RouteReasonInvalidKind), "backendRef %s is not a Service", ref.Name)
			continue
		}
		refNS := ns
		if ref.Namespace != nil {
			refNS = string(*ref.Namespace)
		}
		if refNS != ns && !t.granted(gwv1.GroupName, kind, ns, "", "Service", refNS, string(ref.Name)) {
			fail(string(gwv1.RouteReasonRefNotPermitted), "no ReferenceGrant in %s allows a reference to Service %s", refNS, ref.Name)
			continue
		}
		svc := t.w.Services[key(refNS, string(ref.Name))]
		if svc == nil || ref.Port == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), "Service %s/%s (with a port) not found", refNS, ref.Name)
			continue
		}
		sp, ok := servicePort(svc, int32(*ref.Port), "")
		if !ok {
			fail(string(gwv1.RouteReasonBackendNotFound), "Service %s/%s has no port %d", refNS, ref.Name, *ref.Port)
			continue
		}
		w := 1
		if ref.Weight != nil {
			w = int(*ref.Weight)
		}
		eps := endpoints(t.w.Slices[key(refNS, string(ref.Name))], sp)
		if w == 0 || len(eps) == 0 {
			continue
		}
		if h2c(sp) {
			out.protocol = "h2c"
		}
		for _, e := range eps {
			out.backends = append(out.backends, backendDoc{URL: "http://" + e.addr, Weight: max(1, w*weightScale/len(eps))})
		}
	}
	return out
}

// mirrorURL is the first ready endpoint of a mirror's Service.
func (t *translator) mirrorURL(ns string, ref gwv1.BackendObjectReference) (string, error) {
	refNS := ns
	if ref.Namespace != nil {
		refNS = string(*ref.Namespace)
	}
	rr := t.backendRefs(ns, "HTTPRoute", []gwv1.BackendRef{{BackendObjectReference: gwv1.BackendObjectReference{
		Group: ref.Group, Kind: ref.Kind, Name: ref.Name, Namespace: ref.Namespace, Port: ref.Port}}})
	if !rr.ok {
		return "", fmt.Errorf("mirror: %s", rr.msg)
	}
	if len(rr.backends) == 0 {
		return "", fmt.Errorf("mirror: Service %s/%s has no ready endpoint", refNS, ref.Name)
	}
	return rr.backends[0].URL, nil
}
