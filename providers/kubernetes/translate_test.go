package kubernetes

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
	_ "github.com/rustygate/rustygate/l7/middleware/standard"
)

func testWorld() *World {
	all := gwv1.NamespacesFromAll
	w := &World{
		Classes: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "rustygate"}, Spec: gwv1.GatewayClassSpec{ControllerName: ControllerName}}},
		Gateways: []*gwv1.Gateway{{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "gw"}, Spec: gwv1.GatewaySpec{
			GatewayClassName: "rustygate",
			Listeners: []gwv1.Listener{{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.example.com")),
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}}}}}}},
		Services: map[string]*corev1.Service{}, Secrets: map[string]*corev1.Secret{}, Slices: map[string][]*discoveryv1.EndpointSlice{},
	}
	addService(w, "apps", "a", "10.0.0.1", "10.0.0.2")
	addService(w, "apps", "b", "10.0.1.1")
	return w
}

func addService(w *World, ns, name string, addrs ...string) {
	w.Services[key(ns, name)] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	// A terminating endpoint never enters the pool.
	s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.9.9.9"},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}})
	w.Slices[key(ns, name)] = append(w.Slices[key(ns, name)], s)
}

func route(ns, name string, hosts []gwv1.Hostname, rules ...gwv1.HTTPRouteRule) *gwv1.HTTPRoute {
	return &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))},
		Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw", Namespace: ptr.To(gwv1.Namespace("apps"))}}},
			Hostnames: hosts, Rules: rules}}
}

func ref(ns, name string, weight int32) gwv1.HTTPBackendRef {
	r := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
		Name: gwv1.ObjectName(name), Port: ptr.To[gwv1.PortNumber](80)}, Weight: ptr.To(weight)}}
	if ns != "" {
		r.Namespace = ptr.To(gwv1.Namespace(ns))
	}
	return r
}

func routeCond(t *testing.T, res *Result, k, typ string) *metav1.Condition {
	t.Helper()
	ps := res.Status.HTTPRoutes[k]
	if len(ps) != 1 {
		t.Fatalf("%s: %d parents in status", k, len(ps))
	}
	return meta.FindStatusCondition(ps[0].Conditions, typ)
}

func TestTranslateHTTPRoute(t *testing.T) {
	w := testWorld()
	w.HTTPRoutes = []*gwv1.HTTPRoute{route("apps", "web", []gwv1.Hostname{"app.example.com", "other.org"},
		gwv1.HTTPRouteRule{
			Matches: []gwv1.HTTPRouteMatch{{
				Path:    &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchExact), Value: ptr.To("/x")},
				Headers: []gwv1.HTTPHeaderMatch{{Name: "X-A", Value: "1"}}, Method: ptr.To(gwv1.HTTPMethodPost)}},
			Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestHeaderModifier,
				RequestHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "X-From", Value: "k8s"}}}}},
			BackendRefs: []gwv1.HTTPBackendRef{ref("", "a", 3), ref("", "b", 1)}})}
	res := Translate(w, Options{GatewayClass: "rustygate", IngressClass: "rustygate"})
	if len(res.Routes) != 1 {
		t.Fatalf("routes: %+v", res.Routes)
	}
	r := res.Routes[0]
	if r.Host != "app.example.com" || r.Path != "/x" || !r.Match.Exact || r.Methods[0] != "POST" || r.Match.Headers[0] != (config.NameValue{Name: "X-A", Value: "1"}) {
		t.Errorf("route: %+v", r)
	}
	// 3:1 between the Services, spread over their endpoints; the
	// terminating endpoint is left out.
	want := map[string]int{"http://10.0.0.1:8080": 1260, "http://10.0.0.2:8080": 1260, "http://10.0.1.1:8080": 840}
	if len(r.Backends) != 3 || r.Strategy != config.StrategyWeightedRoundRobin {
		t.Fatalf("backends %+v strategy %s", r.Backends, r.Strategy)
	}
	for _, b := range r.Backends {
		if want[b.URL] != b.Weight {
			t.Errorf("backend %s weight %d, want %d", b.URL, b.Weight, want[b.URL])
		}
	}
	if len(r.Middlewares) != 1 || r.Middlewares[0].Name != "headers" {
		t.Errorf("middlewares: %+v", r.Middlewares)
	}
	if c := routeCond(t, res, "apps/web", "Accepted"); c.Status != "True" {
		t.Errorf("Accepted: %+v", c)
	}
	gs := res.Status.Gateways["apps/gw"]
	if gs == nil || gs.Listeners[0].AttachedRoutes != 1 || !meta.IsStatusConditionTrue(gs.Conditions, "Programmed") {
		t.Errorf("gateway status: %+v", gs)
	}
}

func TestTranslateRefsAndConflicts(t *testing.T) {
	w := testWorld()
	addService(w, "shared", "s", "10.0.2.1")
	older := route("apps", "older", []gwv1.Hostname{"app.example.com"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("", "a", 1)}})
	newer := route("apps", "newer", []gwv1.Hostname{"app.example.com"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("", "b", 1)}})
	newer.CreationTimestamp = metav1.NewTime(time.Unix(2000, 0))
	cross := route("apps", "cross", []gwv1.Hostname{"cross.example.com"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("shared", "s", 1)}})
	missing := route("apps", "missing", []gwv1.Hostname{"m.example.com"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("", "nope", 1)}})
	nohost := route("apps", "nohost", []gwv1.Hostname{"app.example.org"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("", "a", 1)}})
	w.HTTPRoutes = []*gwv1.HTTPRoute{newer, cross, older, missing, nohost}
	res := Translate(w, Options{GatewayClass: "rustygate"})
	if len(res.Routes) != 1 || !strings.Contains(res.Routes[0].Name, "apps/older") {
		t.Fatalf("the older route should win alone: %+v", res.Routes)
	}
	for _, c := range []struct{ route, typ, status, reason string }{
		{"apps/cross", "ResolvedRefs", "False", "RefNotPermitted"},
		{"apps/missing", "ResolvedRefs", "False", "BackendNotFound"},
		{"apps/nohost", "Accepted", "False", "NoMatchingListenerHostname"},
		{"apps/older", "Accepted", "True", "Accepted"},
	} {
		if got := routeCond(t, res, c.route, c.typ); got == nil || string(got.Status) != c.status || got.Reason != c.reason {
			t.Errorf("%s %s: %+v, want %s %s", c.route, c.typ, got, c.status, c.reason)
		}
	}
	w.Grants = []*gwv1.ReferenceGrant{{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "g"}, Spec: gwv1.ReferenceGrantSpec{
		From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: "apps"}},
		To:   []gwv1.ReferenceGrantTo{{Kind: "Service"}}}}}
	res = Translate(w, Options{GatewayClass: "rustygate"})
	if got := routeCond(t, res, "apps/cross", "ResolvedRefs"); got.Status != "True" || len(res.Routes) != 2 {
		t.Errorf("with a ReferenceGrant: %+v, %d routes", got, len(res.Routes))
	}
}

// routesWorld has n HTTPRoutes of one rule each.
func routesWorld(n int) *World {
	w := testWorld()
	for i := 0; i < n; i++ {
		w.HTTPRoutes = append(w.HTTPRoutes, route("apps", fmt.Sprintf("r%d", i), []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("h%d.example.com", i))},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchPathPrefix), Value: ptr.To("/api")}}},
				BackendRefs: []gwv1.HTTPBackendRef{ref("", "a", 1)}}))
	}
	return w
}

// BenchmarkTranslate1000Routes is the provider's share of the time a
// change takes to reach the data plane with 1,000 HTTPRoutes.
func BenchmarkTranslate1000Routes(b *testing.B) {
	w := routesWorld(1000)
	for b.Loop() {
		if res := Translate(w, Options{GatewayClass: "rustygate"}); len(res.Routes) != 1000 {
			b.Fatalf("%d routes", len(res.Routes))
		}
	}
}

// TestTranslateMiddlewaresAnnotation: the annotation's entries are
// validated as the file's; a bad entry leaves the route out with
// UnsupportedValue.
func TestTranslateMiddlewaresAnnotation(t *testing.T) {
	w := testWorld()
	r := route("apps", "limited", []gwv1.Hostname{"app.example.com"}, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{ref("", "a", 1)}})
	r.Annotations = map[string]string{MiddlewaresAnnotation: "- { name: rate_limit, limit: 5, window: 60 }\n- { name: cors, allow_origins: [\"https://app.example.com\"] }\n"}
	w.HTTPRoutes = []*gwv1.HTTPRoute{r}
	res := Translate(w, Options{GatewayClass: "rustygate"})
	if len(res.Routes) != 1 || len(res.Routes[0].Middlewares) != 2 || res.Routes[0].Middlewares[0].Name != "rate_limit" || res.Routes[0].Middlewares[0].Settings == nil {
		t.Fatalf("routes: %+v", res.Routes)
	}
	r.Annotations[MiddlewaresAnnotation] = "- { name: rate_limit, limit: -1 }\n"
	res = Translate(w, Options{GatewayClass: "rustygate"})
	c := routeCond(t, res, "apps/limited", "Accepted")
	if len(res.Routes) != 0 || c.Status != "False" || c.Reason != "UnsupportedValue" || !strings.Contains(c.Message, "limit") || len(res.Errors) != 1 {
		t.Errorf("a bad entry: %d routes, %+v, errors %v", len(res.Routes), c, res.Errors)
	}
}

// TestTranslateIngress: class, Exact and Prefix paths, default backend.
func TestTranslateIngress(t *testing.T) {
	w := testWorld()
	exact, prefix := netv1.PathTypeExact, netv1.PathTypePrefix
	be := netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "a", Port: netv1.ServiceBackendPort{Number: 80}}}
	ing := &netv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "i"}, Spec: netv1.IngressSpec{
		IngressClassName: ptr.To("rustygate"), DefaultBackend: &be,
		Rules: []netv1.IngressRule{{Host: "i.example.com", IngressRuleValue: netv1.IngressRuleValue{HTTP: &netv1.HTTPIngressRuleValue{
			Paths: []netv1.HTTPIngressPath{{Path: "/e", PathType: &exact, Backend: be}, {Path: "/p", PathType: &prefix, Backend: be}}}}}}}}
	other := ing.DeepCopy()
	other.Name, other.Spec.IngressClassName = "other", ptr.To("nginx")
	w.Ingresses = []*netv1.Ingress{ing, other}
	res := Translate(w, Options{GatewayClass: "rustygate", IngressClass: "rustygate"})
	got := map[string]bool{}
	for _, r := range res.Routes {
		got[fmt.Sprintf("%s%s exact=%v n=%d", r.Host, r.Path, r.Match.Exact, len(r.Backends))] = true
	}
	for _, want := range []string{"/ exact=false n=2", "i.example.com/e exact=true n=2", "i.example.com/p exact=false n=2"} {
		if !got[want] {
			t.Errorf("missing %q in %v", want, got)
		}
	}
	if len(res.Routes) != 3 {
		t.Errorf("%d routes (the other class must be ignored)", len(res.Routes))
	}
}
