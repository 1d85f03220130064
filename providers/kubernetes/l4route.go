package kubernetes

import (
	"fmt"
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
)

// l4Port is the l4 listener of one port: the TCP or TLS listeners of the
// Gateway that claimed the port first, with the routes attached to them.
type l4Port struct {
	gw       string // "namespace/name" of the owning Gateway
	listener config.L4Listener
	sni      map[string]bool // server names taken, oldest route first
}

// claimPort gives the port of a TCP or TLS listener to its Gateway
// unless an older Gateway holds it (Gateways are taken oldest first).
// The listeners of one Gateway sharing a port share its l4 listener (a
// ProtocolConflict between TCP and TLS is found before).
func (t *translator) claimPort(gw *gwv1.Gateway, l *gwv1.Listener) bool {
	k := key(gw.Namespace, gw.Name)
	if t.l4 == nil {
		t.l4 = map[int32]*l4Port{}
	}
	if p, ok := t.l4[int32(l.Port)]; ok {
		return p.gw == k
	}
	t.l4[int32(l.Port)] = &l4Port{gw: k, sni: map[string]bool{}, listener: config.L4Listener{
		Name:   fmt.Sprintf("gateway/%s/%d", k, l.Port),
		Listen: fmt.Sprintf(":%d", l.Port),
	}}
	return true
}

// tcpRoute translates a TCPRoute: the endpoints of its backendRefs
// (weighted) become backends of the l4 listeners it attaches to.
func (t *translator) tcpRoute(r *gwv1.TCPRoute) {
	k := key(r.Namespace, r.Name)
	parents := t.attach(r.Namespace, "TCPRoute", r.Generation, r.Spec.ParentRefs, nil)
	if len(parents) == 0 {
		return
	}
	var brs []gwv1.BackendRef
	for _, rule := range r.Spec.Rules {
		brs = append(brs, rule.BackendRefs...)
	}
	rr := t.backendRefs(r.Namespace, "TCPRoute", brs)
	for _, a := range acceptedListeners(parents) {
		if p := t.l4[int32(a.l.Port)]; p != nil {
			p.listener.Backends = append(p.listener.Backends, l4Backends(rr.backends)...)
		}
	}
	t.res.Status.TCPRoutes[k] = parentStatuses(parents, rr.ok, rr.reason, rr.msg)
}

// tlsRoute translates a TLSRoute: its hostnames, narrowed by each
// listener's, become an SNI route of the listener's l4 listener; a
// route without hostnames on a listener without one takes the
// connections no SNI route takes. Of two routes claiming a server name
// on a port the older keeps it.
func (t *translator) tlsRoute(r *gwv1.TLSRoute) {
	k := key(r.Namespace, r.Name)
	parents := t.attach(r.Namespace, "TLSRoute", r.Generation, r.Spec.ParentRefs, r.Spec.Hostnames)
	if len(parents) == 0 {
		return
	}
	var brs []gwv1.BackendRef
	for _, rule := range r.Spec.Rules {
		brs = append(brs, rule.BackendRefs...)
	}
	rr := t.backendRefs(r.Namespace, "TLSRoute", brs)
	backends := l4Backends(rr.backends)
	for _, a := range acceptedListeners(parents) {
		p := t.l4[int32(a.l.Port)]
		if p == nil || len(backends) == 0 {
			continue
		}
		name := fmt.Sprintf("tlsroute/%s/%s", k, a.l.Name)
		if slices.ContainsFunc(p.listener.Routes, func(r config.L4Route) bool { return r.Name == name }) {
			continue
		}
		route := config.L4Route{Name: name, Backends: backends, Strategy: l4Strategy(backends)}
		for _, h := range a.hosts {
			switch {
			case h == "" && len(p.listener.Backends) == 0:
				p.listener.Backends = backends
			case h != "" && !p.sni[h]:
				p.sni[h] = true
				route.SNI = append(route.SNI, h)
			}
		}
		if len(route.SNI) > 0 {
			p.listener.Routes = append(p.listener.Routes, route)
		}
	}
	t.res.Status.TLSRoutes[k] = parentStatuses(parents, rr.ok, rr.reason, rr.msg)
}

func acceptedListeners(ps []parent) []attached {
	var out []attached
	for _, p := range ps {
		if p.accepted {
			out = append(out, p.listeners...)
		}
	}
	return out
}

// l4Backends turns endpoints into l4 backends, keeping their weights.
func l4Backends(bs []backendDoc) []config.L4Backend {
	out := make([]config.L4Backend, 0, len(bs))
	for _, b := range bs {
		out = append(out, config.L4Backend{Addr: strings.TrimPrefix(b.URL, "http://"), Weight: b.Weight})
	}
	return out
}

func l4Strategy(bs []config.L4Backend) string {
	for _, b := range bs {
		if b.Weight != bs[0].Weight {
			return config.StrategyWeightedRoundRobin
		}
	}
	return ""
}

// l4Listeners adds the l4 listeners that have backends or routes to the
// result, by port.
func (t *translator) l4Listeners() {
	ports := make([]int32, 0, len(t.l4))
	for port := range t.l4 {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	for _, port := range ports {
		l := t.l4[port].listener
		if len(l.Backends) == 0 && len(l.Routes) == 0 {
			continue
		}
		l.Strategy = l4Strategy(l.Backends)
		t.res.L4 = append(t.res.L4, l)
	}
}
