package e2e_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rustygate/rustygate/internal/testpki"
)

// echoService answers UnaryCall with its payload and the caller's
// x-who metadata in a trailer, and echoes FullDuplexCall messages.
type echoService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, r *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetTrailer(ctx, metadata.Pairs("x-who", strings.Join(md.Get("x-who"), ",")))
	return &testgrpc.SimpleResponse{Payload: r.GetPayload()}, nil
}

func (echoService) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPCMutualTLSBackend: the gateway binary carries gRPC calls from
// h2c clients to a grpc-go backend that requires a client certificate
// (protocol h2, the route's tls settings), checks it with grpc.health.v1,
// answers a call with no route with UNIMPLEMENTED, and logs grpc_status.
func TestGRPCMutualTLSBackend(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "backend CA")
	caFile := ca.WriteCA(t, dir, "ca")
	clientCA := testpki.NewCA(t, "client CA")
	clientCert, clientKey := clientCA.Issue(t, testpki.Spec{CN: "gateway", Client: true}).WriteFiles(t, dir, "client")
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, testpki.Spec{CN: "backend", Hosts: []string{"127.0.0.1"}}).TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool,
		NextProtos:   []string{"h2"},
	})))
	testgrpc.RegisterTestServiceServer(srv, echoService{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	forEachEngine(t, func(t *testing.T, engine string) {
		routes := fmt.Sprintf(`  - path: /grpc.testing.TestService/
    backend: "https://%s"
    protocol: h2
    tls: { ca_file: %q, client_cert_file: %q, client_key_file: %q }
    health_check: { type: grpc, interval: 200ms, timeout: 100ms }
`, ln.Addr(), caFile, clientCert, clientKey)
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		cc, err := grpc.NewClient("passthrough:///"+g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		cl := testgrpc.NewTestServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		var trailer metadata.MD
		resp, err := cl.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-who", "me"),
			&testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}, grpc.Trailer(&trailer))
		if err != nil || string(resp.GetPayload().GetBody()) != "hi" || strings.Join(trailer.Get("x-who"), "") != "me" {
			t.Fatalf("unary: %v %v %v", resp, trailer, err)
		}
		bidi, err := cl.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := []byte(fmt.Sprint("m", i))
			if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}}); err != nil {
				t.Fatal(err)
			}
			if m, err := bidi.Recv(); err != nil || string(m.GetPayload().GetBody()) != string(msg) {
				t.Fatalf("bidi %d: %v %v", i, m, err)
			}
		}
		bidi.CloseSend()
		if _, err := bidi.Recv(); err != io.EOF {
			t.Fatalf("bidi end: %v", err)
		}
		_, err = testgrpc.NewUnimplementedServiceClient(cc).UnimplementedCall(ctx, &testgrpc.Empty{})
		if s, _ := status.FromError(err); s.Code() != codes.Unimplemented || s.Message() != "no route" {
			t.Fatalf("no route: %v", err)
		}

		deadline := time.Now().Add(8 * time.Second)
		var statuses []any
		for time.Now().Before(deadline) {
			statuses = statuses[:0]
			for _, l := range g.lines() {
				if l["msg"] == "access" {
					statuses = append(statuses, l["grpc_status"])
				}
			}
			if len(statuses) == 3 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if fmt.Sprint(statuses) != "[0 0 12]" {
			t.Fatalf("access grpc_status %v, want [0 0 12]\n%s", statuses, g.logs.String())
		}
		if strings.Contains(g.logs.String(), "backend down") {
			t.Fatalf("the grpc health check failed:\n%s", g.logs.String())
		}
		// NOT_SERVING over the mutual TLS health check marks it down.
		hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		defer hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		for !strings.Contains(g.logs.String(), "not SERVING") {
			if time.Now().After(deadline) {
				t.Fatalf("not marked down:\n%s", g.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
