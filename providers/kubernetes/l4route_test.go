package kubernetes

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
)

// l4World is testWorld with a Gateway of TCP and TLS (passthrough)
// listeners, and one TLS listener terminating TLS.
func l4World() *World {
	w := testWorld()
	pass, term := gwv1.TLSModePassthrough, gwv1.TLSModeTerminate
	w.Gateways = append(w.Gateways, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "l4", CreationTimestamp: metav1.NewTime(time.Unix(10, 0))},
		Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{
			{Name: "tcp", Port: 5432, Protocol: gwv1.TCPProtocolType},
			{Name: "tls", Port: 8443, Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{Mode: &pass}},
			{Name: "term", Port: 9443, Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{Mode: &term}},
		}}})
	return w
}

func l4Ref(name string, weight int32) gwv1.BackendRef {
	return gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr.To[gwv1.PortNumber](80)}, Weight: ptr.To(weight)}
}

func l4Parent(section string) gwv1.CommonRouteSpec {
	return gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "l4", SectionName: ptr.To(gwv1.SectionName(section))}}}
}

func tlsRoute(name string, age int64, hosts []gwv1.Hostname, refs ...gwv1.BackendRef) *gwv1.TLSRoute {
	return &gwv1.TLSRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(time.Unix(age, 0))},
		Spec: gwv1.TLSRouteSpec{CommonRouteSpec: l4Parent("tls"), Hostnames: hosts, Rules: []gwv1.TLSRouteRule{{BackendRefs: refs}}}}
}

func l4Listener(t *testing.T, res *Result, port string) config.L4Listener {
	t.Helper()
	for _, l := range res.L4 {
		if l.Listen == ":"+port {
			return l
		}
	}
	t.Fatalf("no l4 listener on port %s in %+v", port, res.L4)
	return config.L4Listener{}
}

func TestTranslateTCPRoute(t *testing.T) {
	w := l4World()
	w.TCPRoutes = []*gwv1.TCPRoute{{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "db", Generation: 2},
		Spec: gwv1.TCPRouteSpec{CommonRouteSpec: l4Parent("tcp"), Rules: []gwv1.TCPRouteRule{{BackendRefs: []gwv1.BackendRef{l4Ref("a", 1), l4Ref("b", 3)}}}}}}
	res := Translate(w, Options{GatewayClass: "rustygate"})
	l := l4Listener(t, res, "5432")
	want := []config.L4Backend{{Addr: "10.0.0.1:8080", Weight: 420}, {Addr: "10.0.0.2:8080", Weight: 420}, {Addr: "10.0.1.1:8080", Weight: 2520}}
	if !slices.Equal(l.Backends, want) || l.Strategy != config.StrategyWeightedRoundRobin || l.Name != "gateway/apps/l4/5432" {
		t.Fatalf("listener %+v, want backends %v weighted", l, want)
	}
	ps := res.Status.TCPRoutes["apps/db"]
	if len(ps) != 1 || !meta.IsStatusConditionTrue(ps[0].Conditions, "Accepted") || !meta.IsStatusConditionTrue(ps[0].Conditions, "ResolvedRefs") {
		t.Fatalf("status %+v", ps)
	}
	// The file's validation takes the listener as translated.
	cfg := &config.Config{L4: []config.L4Listener{l}}
	cfg.L4[0].Listen = "127.0.0.1:5432"
	cfg.Admin.Listen = "off"
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTranslateTCPRouteUnresolved(t *testing.T) {
	w := l4World()
	w.TCPRoutes = []*gwv1.TCPRoute{{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "db", Generation: 1},
		Spec: gwv1.TCPRouteSpec{CommonRouteSpec: l4Parent("tls"), Rules: []gwv1.TCPRouteRule{{BackendRefs: []gwv1.BackendRef{l4Ref("missing", 1)}}}}}}
	res := Translate(w, Options{GatewayClass: "rustygate"})
	c := meta.FindStatusCondition(res.Status.TCPRoutes["apps/db"][0].Conditions, "Accepted")
	r := meta.FindStatusCondition(res.Status.TCPRoutes["apps/db"][0].Conditions, "ResolvedRefs")
	if c.Status != "False" || c.Reason != string(gwv1.RouteReasonNotAllowedByListeners) || r.Reason != string(gwv1.RouteReasonBackendNotFound) {
		t.Fatalf("a TCPRoute on a TLS listener with a missing Service: %+v %+v", c, r)
	}
	if len(res.L4) != 0 {
		t.Fatalf("l4 listeners without routes: %+v", res.L4)
	}
}

func TestTranslateTLSRoute(t *testing.T) {
	w := l4World()
	w.TLSRoutes = []*gwv1.TLSRoute{
		tlsRoute("newer", 300, []gwv1.Hostname{"a.example.com", "c.example.com"}, l4Ref("b", 1)),
		tlsRoute("older", 200, []gwv1.Hostname{"a.example.com", "*.example.org"}, l4Ref("a", 1)),
		tlsRoute("any", 400, nil, l4Ref("b", 1)),
	}
	res := Translate(w, Options{GatewayClass: "rustygate"})
	l := l4Listener(t, res, "8443")
	if len(l.Routes) != 2 || l.Routes[0].Name != "tlsroute/apps/older/tls" || !slices.Equal(l.Routes[0].SNI, []string{"a.example.com", "*.example.org"}) ||
		!slices.Equal(l.Routes[1].SNI, []string{"c.example.com"}) || len(l.Routes[1].Backends) != 1 {
		t.Fatalf("routes %+v: the older route keeps a.example.com", l.Routes)
	}
	if !slices.Equal(l.Backends, []config.L4Backend{{Addr: "10.0.1.1:8080", Weight: 840}}) {
		t.Fatalf("a route without hostnames takes the rest: %+v", l.Backends)
	}
	for _, k := range []string{"apps/newer", "apps/older", "apps/any"} {
		if ps := res.Status.TLSRoutes[k]; len(ps) != 1 || !meta.IsStatusConditionTrue(ps[0].Conditions, "Accepted") {
			t.Fatalf("%s: %+v", k, ps)
		}
	}
	gs := res.Status.Gateways["apps/l4"]
	term := meta.FindStatusCondition(gs.Listeners[2].Conditions, "Accepted")
	if term.Status != "False" || term.Reason != string(gwv1.ListenerReasonUnsupportedValue) || gs.Listeners[1].AttachedRoutes != 3 {
		t.Fatalf("listeners %+v", gs.Listeners)
	}
	if k := gs.Listeners[1].SupportedKinds; len(k) != 1 || k[0].Kind != "TLSRoute" {
		t.Fatalf("supported kinds %+v", k)
	}
}

// A second Gateway's TCP listener on a port an older Gateway holds is not
// accepted; the older keeps it.
func TestTranslateL4PortTaken(t *testing.T) {
	w := l4World()
	w.Gateways = append(w.Gateways, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "late", CreationTimestamp: metav1.NewTime(time.Unix(20, 0))},
		Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{{Name: "tcp", Port: 5432, Protocol: gwv1.TCPProtocolType}}}})
	res := Translate(w, Options{GatewayClass: "rustygate"})
	c := meta.FindStatusCondition(res.Status.Gateways["apps/late"].Listeners[0].Conditions, "Accepted")
	if c.Status != "False" || c.Reason != string(gwv1.ListenerReasonPortUnavailable) {
		t.Fatalf("late listener: %+v", c)
	}
	if !meta.IsStatusConditionTrue(res.Status.Gateways["apps/l4"].Listeners[0].Conditions, "Programmed") {
		t.Fatal("the older Gateway lost its port")
	}
}

// A TCP or TLS Gateway listener on a port of the gateway's own listeners
// (Options.Reserved) is not programmed, says which listener holds it,
// and gives no l4 listener; the others are unaffected.
func TestTranslateL4PortReserved(t *testing.T) {
	w := l4World()
	res := Translate(w, Options{GatewayClass: "rustygate", Reserved: map[int32]string{5432: `l4 listener "pg"`}})
	gs := res.Status.Gateways["apps/l4"]
	c := meta.FindStatusCondition(gs.Listeners[0].Conditions, "Accepted")
	if c.Status != "False" || c.Reason != string(gwv1.ListenerReasonPortUnavailable) || c.Message != `port 5432 is the gateway's l4 listener "pg"` {
		t.Fatalf("listener on a reserved port: %+v", c)
	}
	if meta.IsStatusConditionTrue(gs.Listeners[0].Conditions, "Programmed") || meta.IsStatusConditionTrue(gs.Conditions, "Programmed") {
		t.Fatalf("listener on a reserved port programmed: %+v", gs)
	}
	if !meta.IsStatusConditionTrue(gs.Listeners[1].Conditions, "Programmed") {
		t.Fatalf("listener on a free port: %+v", gs.Listeners[1].Conditions)
	}
	for _, l := range res.L4 {
		if l.Listen == ":5432" {
			t.Fatalf("l4 listener on a reserved port: %+v", l)
		}
	}
}
