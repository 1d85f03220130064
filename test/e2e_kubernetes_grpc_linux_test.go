//go:build kubernetes

package e2e_test

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// listen opens a TCP listener on addr inside the namespace. The socket
// is made on a thread switched into the namespace, which is then left
// locked so that it dies with its goroutine rather than serving others.
func (n *kubeNet) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		h, err := netns.GetFromName(n.ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{nil, err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.ns, r.err)
	}
	return r.ln
}

// testKubeGRPCRoute: a GRPCRoute matching one method carries a grpc-go
// call to a gRPC server behind a Service; other methods are not routed.
func testKubeGRPCRoute(t *testing.T, k *kube, n *kubeNet, g *kubeGateway, ns string) {
	n.addr(t, "203.0.113.19")
	ln := n.listen(t, "203.0.113.19:8080")
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("shop", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	k.service(t, ns, "grpc", "kubernetes.io/h2c", "203.0.113.19")
	k.create(t, &gwv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "health"},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"grpc.example.com"},
			Rules: []gwv1.GRPCRouteRule{{
				Matches: []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: ptr.To("grpc.health.v1.Health"), Method: ptr.To("Check")}}},
				BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
					Name: "grpc", Port: ptr.To[gwv1.PortNumber](80)}}}}}}}})
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("grpc.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	var resp *healthpb.HealthCheckResponse
	waitFor(t, 5*time.Second, "the gRPC call through the GRPCRoute", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "shop"})
		return err == nil
	})
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check: %v", resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := hc.List(ctx, &healthpb.HealthListRequest{}); err == nil {
		t.Errorf("List, which no rule matches, reached the backend")
	}
}
