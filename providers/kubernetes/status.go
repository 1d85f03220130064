package kubernetes

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Status is what a translation found about each object: the status the
// provider writes back.
type Status struct {
	// Classes by name.
	Classes map[string][]metav1.Condition
	// Gateways by "namespace/name".
	Gateways map[string]*GatewayStatus
	// HTTPRoutes, GRPCRoutes, TLSRoutes and TCPRoutes by "namespace/name": one entry per parent
	// Gateway of this controller.
	HTTPRoutes map[string][]gwv1.RouteParentStatus
	GRPCRoutes map[string][]gwv1.RouteParentStatus
	TLSRoutes  map[string][]gwv1.RouteParentStatus
	TCPRoutes  map[string][]gwv1.RouteParentStatus
}

// GatewayStatus is a Gateway's conditions and its listeners'.
type GatewayStatus struct {
	Generation int64
	Conditions []metav1.Condition
	Listeners  []gwv1.ListenerStatus
}

func newStatus() Status {
	return Status{
		Classes:    map[string][]metav1.Condition{},
		Gateways:   map[string]*GatewayStatus{},
		HTTPRoutes: map[string][]gwv1.RouteParentStatus{},
		GRPCRoutes: map[string][]gwv1.RouteParentStatus{},
		TLSRoutes:  map[string][]gwv1.RouteParentStatus{},
		TCPRoutes:  map[string][]gwv1.RouteParentStatus{},
	}
}

func cond(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen}
}
