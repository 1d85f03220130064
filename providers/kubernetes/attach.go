package kubernetes

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// parent is a route's parentRef to a Gateway of this controller, with
// the hostnames the route serves through it.
type parent struct {
	ref      gwv1.ParentReference
	gen      int64
	accepted bool
	reason   string
	msg      string
	hosts    []string // "" serves any host
	// listeners are those the route attaches to, with the hostnames
	// it serves through each.
	listeners []attached
}

type attached struct {
	gw    *gwv1.Gateway
	l     *gwv1.Listener
	hosts []string
}

// attach finds, for each parentRef naming a Gateway this controller
// serves, the listeners the route attaches to. Parents of other
// controllers are left out: their status is not ours to write.
func (t *translator) attach(ns, kind string, gen int64, refs []gwv1.ParentReference, hostnames []gwv1.Hostname) []parent {
	var out []parent
	for _, ref := range refs {
		if ref.Group != nil && *ref.Group != gwv1.GroupName || ref.Kind != nil && *ref.Kind != "Gateway" {
			continue
		}
		gwNS := ns
		if ref.Namespace != nil {
			gwNS = string(*ref.Namespace)
		}
		gw := t.gateway(gwNS, string(ref.Name))
		if gw == nil || !t.ours(gw) {
			continue
		}
		p := parent{ref: ref, gen: gen}
		p.attachListeners(t, gw, ns, kind, hostnames)
		out = append(out, p)
	}
	return out
}

func (t *translator) gateway(ns, name string) *gwv1.Gateway {
	for _, gw := range t.w.Gateways {
		if gw.Namespace == ns && gw.Name == name {
			return gw
		}
	}
	return nil
}

func (p *parent) attachListeners(t *translator, gw *gwv1.Gateway, ns, kind string, hostnames []gwv1.Hostname) {
	st := t.res.Status.Gateways[key(gw.Namespace, gw.Name)]
	matched, allowed := false, false
	for i := range gw.Spec.Listeners {
		l := &gw.Spec.Listeners[i]
		if p.ref.SectionName != nil && *p.ref.SectionName != l.Name || p.ref.Port != nil && *p.ref.Port != l.Port {
			continue
		}
		matched = true
		if !routeFits(kind, l.Protocol) || !programmed(st, i) || !allowsRoute(l, gw.Namespace, ns, kind) {
			continue
		}
		allowed = true
		hosts := intersect(hostOf(l.Hostname), hostnames)
		if len(hosts) > 0 {
			p.listeners = append(p.listeners, attached{gw: gw, l: l, hosts: hosts})
		}
		for _, h := range hosts {
			if !slices.Contains(p.hosts, h) {
				p.hosts = append(p.hosts, h)
			}
		}
		st.Listeners[i].AttachedRoutes++
	}
	switch {
	case !matched:
		p.reason, p.msg = string(gwv1.RouteReasonNoMatchingParent), "no listener matches the parentRef"
	case !allowed:
		p.reason, p.msg = string(gwv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no programmed listener allows a %s from namespace %s", kind, ns)
	case len(p.hosts) == 0:
		p.reason, p.msg = string(gwv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches a listener's"
	default:
		p.accepted, p.reason = true, string(gwv1.RouteReasonAccepted)
	}
}

func programmed(st *GatewayStatus, i int) bool {
	if st == nil || i >= len(st.Listeners) {
		return false
	}
	for _, c := range st.Listeners[i].Conditions {
		if c.Type == "Programmed" {
			return c.Status == "True"
		}
	}
	return false
}

// allowsRoute applies a listener's allowedRoutes: namespaces Same
// (default) or All (a Selector needs namespace labels, which are not
// watched: it allows none), and kinds.
func allowsRoute(l *gwv1.Listener, gwNS, ns, kind string) bool {
	from := gwv1.NamespacesFromSame
	if ar := l.AllowedRoutes; ar != nil {
		if ar.Namespaces != nil && ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		if len(ar.Kinds) > 0 && !slices.ContainsFunc(ar.Kinds, func(k gwv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
			return false
		}
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return gwNS == ns
	}
	return false
}

// intersect is the hostnames a route serves through a listener: the
// listener's (lh, "" for any) narrowed by the route's, each the more
// specific of the two when a wildcard matches the other.
func intersect(lh string, route []gwv1.Hostname) []string {
	if len(route) == 0 {
		return []string{lh}
	}
	var out []string
	for _, r := range route {
		rh := strings.ToLower(string(r))
		switch {
		case lh == "" || lh == rh:
			out = append(out, rh)
		case wildcardCovers(lh, rh):
			out = append(out, rh)
		case wildcardCovers(rh, lh):
			out = append(out, lh)
		}
	}
	return out
}

// wildcardCovers: w is "*.suffix" and h is a name (or narrower wildcard)
// with at least one more label before the suffix.
func wildcardCovers(w, h string) bool {
	if !strings.HasPrefix(w, "*.") {
		return false
	}
	suffix := w[1:]
	return len(h) > len(suffix) && strings.HasSuffix(h, suffix)
}

// parentStatuses turns parents into route status entries, with
// ResolvedRefs from the route's backend references.
func parentStatuses(ps []parent, resolved bool, rReason, rMsg string) []gwv1.RouteParentStatus {
	var out []gwv1.RouteParentStatus
	for _, p := range ps {
		out = append(out, gwv1.RouteParentStatus{
			ParentRef:      p.ref,
			ControllerName: ControllerName,
			Conditions: append([]metav1.Condition{cond("Accepted", p.accepted, p.reason, p.msg, p.gen)},
				cond("ResolvedRefs", resolved, rReason, rMsg, p.gen)),
		})
	}
	return out
}
