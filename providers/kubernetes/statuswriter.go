package kubernetes

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// LeaseName is the coordination.k8s.io Lease the replicas compete for:
// its holder writes status.
const LeaseName = "rustygate-status"

// runStatus writes the status of each published translation, as the
// leader (or alone when leader election is off), until ctx ends.
func (p *Provider) runStatus(ctx context.Context) {
	if !p.cfg.LeaderElectionEnabled() {
		p.writeStatusLoop(ctx)
		return
	}
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	ns := p.cfg.LeaseNamespace
	if ns == "" {
		ns = podNamespace()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: LeaseName},
		Client:     p.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true,
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					p.log.Info("kubernetes: leading; writing status", "lease", ns+"/"+LeaseName, "identity", id)
					p.writeStatusLoop(ctx)
				},
				OnStoppedLeading: func() { p.log.Info("kubernetes: no longer leading", "identity", id) },
			},
		})
		if err != nil {
			p.log.Error("kubernetes: leader election", "error", err.Error())
			return
		}
		le.Run(ctx)
	}
}

// podNamespace is the namespace of the pod the process runs in, else
// "default".
func podNamespace() string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	return "default"
}

func (p *Provider) writeStatusLoop(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second) // retries writes that conflicted
	defer tick.Stop()
	p.writeStatus(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.publishedCh:
		case <-tick.C:
		}
		p.writeStatus(ctx)
	}
}

// writeStatus writes the published status of every object whose stored
// status differs.
func (p *Provider) writeStatus(ctx context.Context) {
	p.mu.Lock()
	res := p.published
	p.mu.Unlock()
	if res == nil {
		return
	}
	w := p.World()
	for _, c := range w.Classes {
		if conds, ok := res.Status.Classes[c.Name]; ok {
			p.updateClass(ctx, c, conds)
		}
	}
	for _, gw := range w.Gateways {
		if st, ok := res.Status.Gateways[key(gw.Namespace, gw.Name)]; ok {
			p.updateGateway(ctx, gw, st)
		}
	}
	for _, r := range w.HTTPRoutes {
		if ps, ok := res.Status.HTTPRoutes[key(r.Namespace, r.Name)]; ok {
			p.updateHTTPRoute(ctx, r, ps)
		}
	}
	for _, r := range w.GRPCRoutes {
		if ps, ok := res.Status.GRPCRoutes[key(r.Namespace, r.Name)]; ok {
			p.updateGRPCRoute(ctx, r, ps)
		}
	}
	for _, r := range w.TLSRoutes {
		if ps, ok := res.Status.TLSRoutes[key(r.Namespace, r.Name)]; ok {
			p.updateTLSRoute(ctx, r, ps)
		}
	}
	for _, r := range w.TCPRoutes {
		if ps, ok := res.Status.TCPRoutes[key(r.Namespace, r.Name)]; ok {
			p.updateTCPRoute(ctx, r, ps)
		}
	}
}

// mergeConds sets conds in old, keeping the transition time of those
// whose status did not change.
func mergeConds(old, conds []metav1.Condition) []metav1.Condition {
	out := make([]metav1.Condition, len(old))
	copy(out, old)
	for _, c := range conds {
		meta.SetStatusCondition(&out, c)
	}
	return out
}

func (p *Provider) warn(err error, kind, name string) {
	if err != nil {
		p.log.Warn("kubernetes: status not written", "kind", kind, "object", name, "error", err.Error())
	}
}

func (p *Provider) updateClass(ctx context.Context, c *gwv1.GatewayClass, conds []metav1.Condition) {
	nc := c.DeepCopy()
	nc.Status.Conditions = mergeConds(c.Status.Conditions, conds)
	if equality.Semantic.DeepEqual(nc.Status, c.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().GatewayClasses().UpdateStatus(ctx, nc, metav1.UpdateOptions{})
	p.warn(err, "GatewayClass", c.Name)
}

func (p *Provider) updateGateway(ctx context.Context, gw *gwv1.Gateway, st *GatewayStatus) {
	ng := gw.DeepCopy()
	ng.Status.Conditions = mergeConds(gw.Status.Conditions, st.Conditions)
	ls := make([]gwv1.ListenerStatus, len(st.Listeners))
	for i, l := range st.Listeners {
		ls[i] = l
		for _, old := range gw.Status.Listeners {
			if old.Name == l.Name {
				ls[i].Conditions = mergeConds(old.Conditions, l.Conditions)
			}
		}
		ls[i].Conditions = mergeConds(nil, ls[i].Conditions)
	}
	ng.Status.Listeners = ls
	if p.cfg.StatusAddress != "" {
		t := gwv1.IPAddressType
		ng.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: &t, Value: p.cfg.StatusAddress}}
	}
	if equality.Semantic.DeepEqual(ng.Status, gw.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().Gateways(gw.Namespace).UpdateStatus(ctx, ng, metav1.UpdateOptions{})
	p.warn(err, "Gateway", key(gw.Namespace, gw.Name))
}

// routeParents replaces this controller's entries of a route status,
// keeping other controllers'.
func routeParents(old []gwv1.RouteParentStatus, ours []gwv1.RouteParentStatus) []gwv1.RouteParentStatus {
	var out []gwv1.RouteParentStatus
	for _, o := range old {
		if o.ControllerName != ControllerName {
			out = append(out, o)
		}
	}
	for _, n := range ours {
		for _, o := range old {
			if o.ControllerName == ControllerName && equality.Semantic.DeepEqual(o.ParentRef, n.ParentRef) {
				n.Conditions = mergeConds(o.Conditions, n.Conditions)
			}
		}
		n.Conditions = mergeConds(nil, n.Conditions)
		out = append(out, n)
	}
	return out
}

func (p *Provider) updateHTTPRoute(ctx context.Context, r *gwv1.HTTPRoute, ps []gwv1.RouteParentStatus) {
	nr := r.DeepCopy()
	nr.Status.Parents = routeParents(r.Status.Parents, ps)
	if equality.Semantic.DeepEqual(nr.Status, r.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().HTTPRoutes(r.Namespace).UpdateStatus(ctx, nr, metav1.UpdateOptions{})
	p.warn(err, "HTTPRoute", key(r.Namespace, r.Name))
}

func (p *Provider) updateGRPCRoute(ctx context.Context, r *gwv1.GRPCRoute, ps []gwv1.RouteParentStatus) {
	nr := r.DeepCopy()
	nr.Status.Parents = routeParents(r.Status.Parents, ps)
	if equality.Semantic.DeepEqual(nr.Status, r.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().GRPCRoutes(r.Namespace).UpdateStatus(ctx, nr, metav1.UpdateOptions{})
	p.warn(err, "GRPCRoute", key(r.Namespace, r.Name))
}

func (p *Provider) updateTLSRoute(ctx context.Context, r *gwv1.TLSRoute, ps []gwv1.RouteParentStatus) {
	nr := r.DeepCopy()
	nr.Status.Parents = routeParents(r.Status.Parents, ps)
	if equality.Semantic.DeepEqual(nr.Status, r.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().TLSRoutes(r.Namespace).UpdateStatus(ctx, nr, metav1.UpdateOptions{})
	p.warn(err, "TLSRoute", key(r.Namespace, r.Name))
}

func (p *Provider) updateTCPRoute(ctx context.Context, r *gwv1.TCPRoute, ps []gwv1.RouteParentStatus) {
	nr := r.DeepCopy()
	nr.Status.Parents = routeParents(r.Status.Parents, ps)
	if equality.Semantic.DeepEqual(nr.Status, r.Status) {
		return
	}
	_, err := p.gcs.GatewayV1().TCPRoutes(r.Namespace).UpdateStatus(ctx, nr, metav1.UpdateOptions{})
	p.warn(err, "TCPRoute", key(r.Namespace, r.Name))
}
