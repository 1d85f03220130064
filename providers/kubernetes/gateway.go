package kubernetes

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// classes accepts the GatewayClass named opt.GatewayClass when it names
// this controller.
func (t *translator) classes() {
	for _, c := range t.w.Classes {
		if string(c.Spec.ControllerName) != ControllerName {
			continue
		}
		ok := c.Name == t.opt.GatewayClass
		reason, msg := "Accepted", "served by RustyGate"
		if !ok {
			reason, msg = "InvalidParameters", fmt.Sprintf("this RustyGate serves the GatewayClass %q", t.opt.GatewayClass)
		}
		t.res.Status.Classes[c.Name] = append(t.res.Status.Classes[c.Name],
			cond(string(gwv1.GatewayClassConditionStatusAccepted), ok, reason, msg, c.Generation))
	}
}

// ours reports whether the Gateway's class is the one served.
func (t *translator) ours(gw *gwv1.Gateway) bool {
	if string(gw.Spec.GatewayClassName) != t.opt.GatewayClass {
		return false
	}
	for _, c := range t.w.Classes {
		if c.Name == t.opt.GatewayClass {
			return string(c.Spec.ControllerName) == ControllerName
		}
	}
	return false
}

// gateways sets the status of the Gateways served and their listeners;
// certificates of HTTPS listeners go to the result.
func (t *translator) gateways() {
	slices.SortStableFunc(t.w.Gateways, byAge)
	for _, gw := range t.w.Gateways {
		if !t.ours(gw) {
			continue
		}
		st := &GatewayStatus{Generation: gw.Generation}
		conflicts := listenerConflicts(gw)
		allOK := true
		for i := range gw.Spec.Listeners {
			ls := t.listenerStatus(gw, &gw.Spec.Listeners[i], conflicts[i])
			allOK = allOK && ls.Conditions[len(ls.Conditions)-1].Status == "True"
			st.Listeners = append(st.Listeners, ls)
		}
		g := gw.Generation
		st.Conditions = append(st.Conditions, cond("Accepted", true, "Accepted", "", g))
		if allOK {
			st.Conditions = append(st.Conditions, cond("Programmed", true, "Programmed", "", g))
		} else {
			st.Conditions = append(st.Conditions, cond("Programmed", false, "Invalid", "some listeners are not programmed", g))
		}
		t.res.Status.Gateways[key(gw.Namespace, gw.Name)] = st
	}
}

// listenerConflicts finds listeners sharing a port with another
// protocol (a ProtocolConflict: HTTP and HTTPS cannot share a port) or
// with the same hostname (a HostnameConflict).
func listenerConflicts(gw *gwv1.Gateway) []string {
	out := make([]string, len(gw.Spec.Listeners))
	for i := range gw.Spec.Listeners {
		a := &gw.Spec.Listeners[i]
		for j := range gw.Spec.Listeners {
			b := &gw.Spec.Listeners[j]
			if i == j || a.Port != b.Port {
				continue
			}
			if a.Protocol != b.Protocol {
				out[i] = string(gwv1.ListenerReasonProtocolConflict)
			} else if hostOf(a.Hostname) == hostOf(b.Hostname) && out[i] == "" {
				out[i] = string(gwv1.ListenerReasonHostnameConflict)
			}
		}
	}
	return out
}

// isL4 reports a protocol served by an l4 listener on the listener's
// own port.
func isL4(p gwv1.ProtocolType) bool {
	return p == gwv1.TCPProtocolType || p == gwv1.TLSProtocolType
}

func hostOf(h *gwv1.Hostname) string {
	if h == nil {
		return ""
	}
	return strings.ToLower(string(*h))
}

func (t *translator) listenerStatus(gw *gwv1.Gateway, l *gwv1.Listener, conflict string) gwv1.ListenerStatus {
	g := gw.Generation
	ls := gwv1.ListenerStatus{Name: l.Name, SupportedKinds: supportedKinds(l.Protocol)}
	resolved, rReason, rMsg := true, "ResolvedRefs", ""
	accepted, aReason, aMsg := true, "Accepted", ""
	switch l.Protocol {
	case gwv1.HTTPProtocolType:
	case gwv1.HTTPSProtocolType:
		resolved, rReason, rMsg = t.listenerCerts(gw, l)
	case gwv1.TCPProtocolType:
	case gwv1.TLSProtocolType:
		if l.TLS == nil || l.TLS.Mode == nil || *l.TLS.Mode != gwv1.TLSModePassthrough {
			accepted, aReason = false, string(gwv1.ListenerReasonUnsupportedValue)
			aMsg = "a TLS listener is served in mode Passthrough (routed by SNI, not terminated); terminate TLS with an HTTPS listener"
		}
	default:
		accepted, aReason = false, string(gwv1.ListenerReasonUnsupportedProtocol)
	}
	if what, ok := t.opt.Reserved[int32(l.Port)]; accepted && conflict == "" && isL4(l.Protocol) && ok {
		accepted, aReason, aMsg = false, string(gwv1.ListenerReasonPortUnavailable), fmt.Sprintf("port %d is the gateway's %s", l.Port, what)
	}
	if accepted && conflict == "" && isL4(l.Protocol) && !t.claimPort(gw, l) {
		accepted, aReason, aMsg = false, string(gwv1.ListenerReasonPortUnavailable), "an older Gateway has a TCP or TLS listener on this port"
	}
	ls.Conditions = append(ls.Conditions, cond("Accepted", accepted, aReason, aMsg, g))
	ls.Conditions = append(ls.Conditions, cond("ResolvedRefs", resolved, rReason, rMsg, g))
	if conflict != "" {
		ls.Conditions = append(ls.Conditions, cond("Conflicted", true, conflict, "", g))
	} else {
		ls.Conditions = append(ls.Conditions, cond("Conflicted", false, "NoConflicts", "", g))
	}
	ok := accepted && resolved && conflict == ""
	reason := "Programmed"
	if !ok {
		reason = "Invalid"
	}
	ls.Conditions = append(ls.Conditions, cond("Programmed", ok, reason, "", g))
	return ls
}

func supportedKinds(p gwv1.ProtocolType) []gwv1.RouteGroupKind {
	grp := gwv1.Group(gwv1.GroupName)
	switch p {
	case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType:
		return []gwv1.RouteGroupKind{{Group: &grp, Kind: "HTTPRoute"}, {Group: &grp, Kind: "GRPCRoute"}}
	case gwv1.TLSProtocolType:
		return []gwv1.RouteGroupKind{{Group: &grp, Kind: "TLSRoute"}}
	case gwv1.TCPProtocolType:
		return []gwv1.RouteGroupKind{{Group: &grp, Kind: "TCPRoute"}}
	}
	return []gwv1.RouteGroupKind{}
}

// routeFits reports whether a route of kind attaches to a listener of
// protocol p.
func routeFits(kind string, p gwv1.ProtocolType) bool {
	for _, k := range supportedKinds(p) {
		if string(k.Kind) == kind {
			return true
		}
	}
	return false
}

// listenerCerts resolves an HTTPS listener's certificate Secrets.
func (t *translator) listenerCerts(gw *gwv1.Gateway, l *gwv1.Listener) (bool, string, string) {
	if l.TLS == nil || l.TLS.Mode != nil && *l.TLS.Mode != gwv1.TLSModeTerminate || len(l.TLS.CertificateRefs) == 0 {
		return false, string(gwv1.ListenerReasonInvalidCertificateRef), "an HTTPS listener terminates TLS with certificateRefs"
	}
	for _, ref := range l.TLS.CertificateRefs {
		if ref.Kind != nil && *ref.Kind != "Secret" || ref.Group != nil && *ref.Group != "" {
			return false, string(gwv1.ListenerReasonInvalidCertificateRef), "certificateRefs name Secrets"
		}
		ns := gw.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if ns != gw.Namespace && !t.granted("gateway.networking.k8s.io", "Gateway", gw.Namespace, "", "Secret", ns, string(ref.Name)) {
			return false, string(gwv1.ListenerReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in %s allows this Secret", ns)
		}
		s := t.w.Secrets[key(ns, string(ref.Name))]
		if s == nil || len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0 {
			return false, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s is missing or has no tls.crt and tls.key", ns, ref.Name)
		}
		t.addCert(s)
	}
	return true, "ResolvedRefs", ""
}

func (t *translator) addCert(s *corev1.Secret) {
	k := key(s.Namespace, s.Name)
	for _, c := range t.res.Certificates {
		if c.Secret == k {
			return
		}
	}
	t.res.Certificates = append(t.res.Certificates, Certificate{Secret: k, Cert: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]})
}

// granted reports whether a ReferenceGrant in toNS lets objects of
// fromGroup/fromKind in fromNS refer to toKind toName.
func (t *translator) granted(fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	for _, g := range t.w.Grants {
		if g.Namespace != toNS {
			continue
		}
		from := false
		for _, f := range g.Spec.From {
			from = from || string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		}
		if !from {
			continue
		}
		for _, to := range g.Spec.To {
			if string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || string(*to.Name) == toName) {
				return true
			}
		}
	}
	return false
}
