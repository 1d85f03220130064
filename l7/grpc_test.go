package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcBackend is a grpc-go server of the TestService on loopback.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	srv  *grpc.Server
	addr string
	// url is its URL in a route ("http://" for h2c, "https://" for TLS).
	url string
	// cancelled counts calls whose context ended before the handler.
	cancelled atomic.Int64
	calls     atomic.Int64
	// delay makes every unary call wait this long (or for its end).
	delay atomic.Int64
}

// startGRPCBackend serves the TestService, over TLS with cert when it is
// not nil, else in cleartext (h2c).
func startGRPCBackend(t testing.TB, cert *tls.Certificate) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
		b.url = "https://" + b.addr
	}
	b.srv = grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go b.srv.Serve(ln)
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *grpcBackend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-echo", v[0]))
		grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+v[0], "x-bin-bin", string([]byte{0, 1, 2, 255})))
	}
	if d := time.Duration(b.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			b.cancelled.Add(1)
			return nil, ctx.Err()
		}
	}
	if s := req.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (b *grpcBackend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, st testgrpc.TestService_StreamingOutputCallServer) error {
	for i, p := range req.GetResponseParameters() {
		if p.GetIntervalUs() > 0 {
			select {
			case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
			case <-st.Context().Done():
				b.cancelled.Add(1)
				return st.Context().Err()
			}
		}
		body := []byte(fmt.Sprintf("msg %d %s", i, strings.Repeat("x", int(p.GetSize()))))
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (b *grpcBackend) StreamingInputCall(st testgrpc.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (b *grpcBackend) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		out := append([]byte("echo "), m.GetPayload().GetBody()...)
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: out}}); err != nil {
			return err
		}
	}
}

// grpcClient dials the gateway with HTTP/2 prior knowledge.
func grpcClient(t testing.TB, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// grpcRoute is a route to the TestService of b with the protocol p.
func grpcRoute(b *grpcBackend, p, extra string) string {
	return fmt.Sprintf("  - { path: /grpc.testing.TestService, backend: %q, protocol: %s%s }\n", b.url, p, extra)
}

// TestGRPCCallKinds: the four kinds of gRPC call pass through the
// gateway, on every engine, to cleartext (h2c) and TLS (h2) backends,
// with metadata, binary metadata and trailers; a bidirectional call
// exchanges messages one by one (the request body keeps flowing while
// the response streams); a backend's error status reaches the client.
func TestGRPCCallKinds(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		name, proto, extra string
		cert               *tls.Certificate
	}{
		{"h2c", "h2c", "", nil},
		{"h2", "h2", fmt.Sprintf(", tls: { ca_file: %q }", pki.caFile), &pki.server.TLS},
		{"auto", "auto", fmt.Sprintf(", tls: { ca_file: %q }", pki.caFile), &pki.server.TLS},
	}
	for _, c := range cases {
		for _, engine := range []string{"fast", "standard"} {
			t.Run(c.name+"/"+engine, func(t *testing.T) {
				be := startGRPCBackend(t, c.cert)
				gw := startGateway(t, engine, grpcRoute(be, c.proto, c.extra))
				checkGRPCCalls(t, grpcClient(t, gw.addr))
			})
		}
	}
}

func checkGRPCCalls(t *testing.T, cl testgrpc.TestServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var hdr, trl metadata.MD
	octx := metadata.AppendToOutgoingContext(ctx, "x-echo", "hello")
	resp, err := cl.UnaryCall(octx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatalf("unary: %v", err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" || first(hdr, "x-echo") != "hello" ||
		first(trl, "x-trailer") != "t-hello" || first(trl, "x-bin-bin") != string([]byte{0, 1, 2, 255}) {
		t.Fatalf("unary: body %q header %v trailer %v", resp.GetPayload().GetBody(), hdr, trl)
	}

	_, err = cl.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now ü"}})
	if s, _ := status.FromError(err); s.Code() != codes.FailedPrecondition || s.Message() != "not now ü" {
		t.Fatalf("backend status: %v", err)
	}

	params := []*testgrpc.ResponseParameters{{Size: 10}, {Size: 70000}, {Size: 3}}
	so, err := cl.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := range params {
		m, err := so.Recv()
		if err != nil || !strings.HasPrefix(string(m.GetPayload().GetBody()), fmt.Sprintf("msg %d ", i)) {
			t.Fatalf("server streaming message %d: %v", i, err)
		}
	}
	if _, err := so.Recv(); err != io.EOF {
		t.Fatalf("server streaming end: %v", err)
	}

	si, err := cl.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{5, 100000, 7} {
		if err := si.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := si.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 100012 {
		t.Fatalf("client streaming: %v %v", r, err)
	}

	bidi, err := cl.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		msg := fmt.Sprintf("m%d", i)
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatal(err)
		}
		// The answer arrives before the client sends more: both
		// directions stream at once.
		m, err := bidi.Recv()
		if err != nil || string(m.GetPayload().GetBody()) != "echo "+msg {
			t.Fatalf("bidi %d: %v %v", i, m, err)
		}
	}
	bidi.CloseSend()
	if _, err := bidi.Recv(); err != io.EOF {
		t.Fatalf("bidi end: %v", err)
	}
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

// grpcCode is the status code of err.
func grpcCode(err error) codes.Code {
	s, _ := status.FromError(err)
	return s.Code()
}

var _ = errors.New
