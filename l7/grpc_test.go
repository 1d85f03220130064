package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rustygate/rustygate/l7/middleware"
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
	// fail makes every unary call fail at once with this code.
	fail atomic.Int32
}

// startGRPCBackend serves the TestService, over TLS with cert when it is
// not nil, else in cleartext (h2c).
func startGRPCBackend(t testing.TB, cert *tls.Certificate) *grpcBackend {
	t.Helper()
	return startGRPCBackendWith(t, cert, nil)
}

// startGRPCBackendWith is startGRPCBackend with more services, which
// register registers before the server starts.
func startGRPCBackendWith(t testing.TB, cert *tls.Certificate, register func(*grpc.Server)) *grpcBackend {
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
	if register != nil {
		register(b.srv)
	}
	go b.srv.Serve(ln)
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *grpcBackend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	if c := b.fail.Load(); c != 0 {
		return nil, status.Error(codes.Code(c), "refused")
	}
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

// grpcCalls returns rustygate_grpc_requests_total of a route and code.
func (g *logGateway) grpcCalls(t testing.TB, route, code string) float64 {
	t.Helper()
	mfs, err := g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rustygate_grpc_requests_total" {
			continue
		}
		for _, m := range mf.Metric {
			if label(m, "route") == route && label(m, "grpc_status") == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestGRPCGatewayErrors: what the gateway answers itself to a gRPC call
// is a gRPC status a client reads (HTTP 200, trailers-only), never an
// HTTP error page: no route, a backend down, a route whose backends speak
// HTTP/1.1, a rate limit, a missing token. The access line and the
// metrics carry the status.
func TestGRPCGatewayErrors(t *testing.T) {
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			be := startGRPCBackend(t, nil)
			dead, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			deadURL := "http://" + dead.Addr().String()
			dead.Close()
			secret := strings.Repeat("k", 32)
			routes := fmt.Sprintf(`  - { name: down, path: /grpc.testing.TestService/EmptyCall, backend: %q, protocol: h2c, retries: { attempts: 0 } }
  - { name: h1, path: /grpc.testing.TestService/StreamingOutputCall, backend: %q }
  - name: limited
    path: /grpc.testing.TestService/StreamingInputCall
    backend: %q
    protocol: h2c
    middlewares: [ { name: rate_limit, limit: 1, window: 60 } ]
  - name: auth
    path: /grpc.testing.TestService/FullDuplexCall
    backend: %q
    protocol: h2c
    middlewares: [ { name: jwt, secret: %q, algorithms: [HS256] } ]
  - { name: ok, path: /grpc.testing.TestService/UnaryCall, backend: %q, protocol: h2c }
`, deadURL, be.url, be.url, be.url, secret, be.url)
			g := startLogGateway(t, engine, routes)
			cl := grpcClient(t, g.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			_, err = cl.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if err != nil {
				t.Fatalf("routed call: %v", err)
			}
			_, err = cl.UnimplementedCall(ctx, &testgrpc.Empty{})
			wantStatus(t, "no route", err, codes.Unimplemented, "no route")
			_, err = cl.EmptyCall(ctx, &testgrpc.Empty{})
			wantStatus(t, "backend down", err, codes.Unavailable, "backend unreachable")
			so, err := cl.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
			if err == nil {
				_, err = so.Recv()
			}
			wantStatus(t, "HTTP/1.1 backend", err, codes.Unimplemented, "HTTP/2")

			for i := range 2 {
				si, err := cl.StreamingInputCall(ctx)
				if err == nil {
					_, err = si.CloseAndRecv()
				}
				if i == 0 && err != nil {
					t.Fatalf("first call under the limit: %v", err)
				}
				if i == 1 {
					wantStatus(t, "rate limited", err, codes.ResourceExhausted, "")
				}
			}
			bidi, err := cl.FullDuplexCall(ctx)
			if err == nil {
				_, err = bidi.Recv()
			}
			wantStatus(t, "no token", err, codes.Unauthenticated, "")

			logs := g.log()
			if !strings.Contains(logs, `"route":"down"`) || !strings.Contains(logs, `"grpc_status":14`) || !strings.Contains(logs, `"grpc_status":0`) {
				t.Errorf("access lines lack grpc_status:\n%s", logs)
			}
			if n := g.grpcCalls(t, "down", "14"); n != 1 {
				t.Errorf("rustygate_grpc_requests_total{route=down,grpc_status=14} = %v, want 1", n)
			}
			if n := g.grpcCalls(t, "ok", "0"); n != 1 {
				t.Errorf("rustygate_grpc_requests_total{route=ok,grpc_status=0} = %v, want 1", n)
			}
		})
	}
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), msg) {
		t.Errorf("%s: got %v, want %v containing %q", what, err, code, msg)
	}
}

// h2cBackend serves h over HTTP/2 with prior knowledge.
func h2cBackend(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// grpcFrame is an empty gRPC message.
var grpcFrame = []byte{0, 0, 0, 0, 0}

// TestGRPCTimeout: a call's grpc-timeout is its deadline at the gateway:
// a backend slower than it (and that ignores it) is cut off, the backend
// stream cancelled, and the client gets DEADLINE_EXCEEDED within bounds.
func TestGRPCTimeout(t *testing.T) {
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			cancelled := make(chan struct{}, 1)
			url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
					cancelled <- struct{}{}
				case <-time.After(5 * time.Second):
				}
			})
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: /svc, backend: %q, protocol: h2c }\n", url))
			req, _ := http.NewRequest("POST", "http://"+gw.addr+"/svc/Slow", bytes.NewReader(grpcFrame))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			req.Header.Set("Grpc-Timeout", "300m")
			start := time.Now()
			resp, err := h2cClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			st := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status")
			if resp.StatusCode != 200 || st != "4" {
				t.Fatalf("status %d grpc-status %q, want 200 and 4 (DEADLINE_EXCEEDED)", resp.StatusCode, st)
			}
			if took < 250*time.Millisecond || took > 2*time.Second {
				t.Fatalf("answered after %v, want about 300ms", took)
			}
			select {
			case <-cancelled:
			case <-time.After(2 * time.Second):
				t.Fatal("the backend stream was not cancelled")
			}
		})
	}
}

// TestGRPCCancel: a client that cancels a call resets its stream; the
// gateway cancels the backend's stream.
func TestGRPCCancel(t *testing.T) {
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			be := startGRPCBackend(t, nil)
			gw := startGateway(t, engine, grpcRoute(be, "h2c", ""))
			cl := grpcClient(t, gw.addr)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			so, err := cl.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 10e6}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := so.Recv(); err != nil {
				t.Fatal(err)
			}
			cancel()
			if _, err := so.Recv(); grpcCode(err) != codes.Canceled {
				t.Fatalf("after cancel: %v", err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for be.cancelled.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the backend's call was not cancelled")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestGRPCGoAway: a backend that stops gracefully (GOAWAY) in the middle
// of a load loses no call: the calls it had finish, the next ones go to
// the other backend.
func TestGRPCGoAway(t *testing.T) {
	a, b := startGRPCBackend(t, nil), startGRPCBackend(t, nil)
	a.delay.Store(int64(20 * time.Millisecond))
	gw := startGateway(t, "fast", fmt.Sprintf("  - { path: /grpc.testing.TestService, backends: [ { url: %q }, { url: %q } ], protocol: h2c, retries: { budget: 1 } }\n", a.url, b.url))
	cl := grpcClient(t, gw.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 60 {
				if _, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
					failed.Add(1)
					t.Log(err)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	for a.calls.Load() < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	a.srv.GracefulStop()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() != 240 {
		t.Fatalf("%d calls failed, %d succeeded", failed.Load(), ok.Load())
	}
	if b.calls.Load() == 0 {
		t.Fatal("no call reached the other backend")
	}
}

// TestH2BackendGarbage: a backend that does not speak HTTP/2 gives a 502
// (UNAVAILABLE to a gRPC call), counted as a backend failure, promptly.
func TestH2BackendGarbage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + strings.Repeat("\xff", 64)))
				io.Copy(io.Discard, c)
			})
		}
	}()
	url := "http://" + ln.Addr().String()
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: /svc, backend: %q, protocol: h2c, retries: { attempts: 0 } }\n", url))
	start := time.Now()
	st, raw := g.get(t, "/svc/x")
	if st != 502 || time.Since(start) > 2*time.Second {
		t.Fatalf("got %d after %v:\n%s", st, time.Since(start), raw)
	}
	if n := g.failures(t, url, reasonInvalid); n != 1 {
		t.Fatalf("failures{reason=invalid_response} = %v, want 1\n%s", n, g.log())
	}
	req, _ := http.NewRequest("POST", "http://"+g.addr+"/svc/Call", bytes.NewReader(grpcFrame))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" {
		t.Fatalf("gRPC call: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestH2BackendFromHTTP1: an HTTP/1.1 client on either engine reaches an
// h2c backend: request body, streamed response (chunked to the client)
// and trailers.
func TestH2BackendFromHTTP1(t *testing.T) {
	url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		fmt.Fprintf(w, "%s %s %s te=%q|", r.Proto, r.URL.RequestURI(), body, r.Header.Get("Te"))
		w.(http.Flusher).Flush()
		io.WriteString(w, "second")
		w.Header().Set("X-Sum", "42")
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: /h2, backend: %q, protocol: h2c }\n", url))
			raw, _ := rawExchange(t, gw.addr, "POST /h2/x?q=1 HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
			if statusOf(raw) != 200 || !strings.Contains(raw, "Transfer-Encoding: chunked") ||
				!strings.Contains(raw, `HTTP/2.0 /h2/x?q=1 hello te="trailers"|`) || !strings.Contains(raw, "second") ||
				!strings.Contains(raw, "X-Sum: 42") {
				t.Fatalf("got:\n%s", raw)
			}
		})
	}
}

// TestH2GoAwayUnprocessed: a backend that answers a stream with GOAWAY
// saying it processed none gets the request again on a new connection,
// body included, and the client sees only the answer.
func TestH2GoAwayUnprocessed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h2s := &http2.Server{}
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	var first atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				if !first.Swap(true) {
					goAwayAtOnce(c)
					return
				}
				h2s.ServeConn(c, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					fmt.Fprintf(w, "got %q", body)
				})})
			})
		}
	}()
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			first.Store(false)
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: /svc, backend: %q, protocol: h2c, retries: { attempts: 0 } }\n", "http://"+ln.Addr().String()))
			req, _ := http.NewRequest("POST", "http://"+gw.addr+"/svc/x", io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")))
			resp, err := h2cClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != `got "hello"` {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
		})
	}
}

// goAwayAtOnce plays an HTTP/2 server that reads the first request's
// HEADERS and answers GOAWAY with last stream 0: nothing processed.
func goAwayAtOnce(c net.Conn) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			io.Copy(io.Discard, c)
			return
		}
	}
}

// waitLog waits for a log line containing all of parts.
func waitLog(t *testing.T, g *logGateway, from int, parts ...string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := g.log()
		for i, l := range strings.Split(logs[from:], "\n") {
			found := true
			for _, p := range parts {
				found = found && strings.Contains(l, p)
			}
			if found {
				return from + len(strings.Join(strings.Split(logs[from:], "\n")[:i+1], "\n"))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", parts, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGRPCHealthCheck: `type: grpc` health checks call grpc.health.v1 on
// each backend, over h2c and over TLS: NOT_SERVING marks a backend down
// (calls get UNAVAILABLE from the gateway), SERVING marks it up again.
// An HTTP check of an h2c pool speaks HTTP/2.
func TestGRPCHealthCheck(t *testing.T) {
	pki := newTestPKI(t)
	for _, c := range []struct {
		name, proto, extra string
		cert               *tls.Certificate
	}{
		{"h2c", "h2c", "", nil},
		{"h2", "h2", fmt.Sprintf(", tls: { ca_file: %q }", pki.caFile), &pki.server.TLS},
	} {
		t.Run(c.name, func(t *testing.T) {
			hs := health.NewServer()
			be := startGRPCBackendWith(t, c.cert, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })
			hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_NOT_SERVING)
			hc := ", health_check: { type: grpc, service: grpc.testing.TestService, interval: 100ms, timeout: 80ms, unhealthy_threshold: 1, healthy_threshold: 1 }"
			g := startLogGateway(t, "fast", grpcRoute(be, c.proto, c.extra+hc))
			at := waitLog(t, g, 0, `"msg":"backend down"`, be.url, "not SERVING")
			cl := grpcClient(t, g.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			wantStatus(t, "backend down", err, codes.Unavailable, "no healthy backend")
			hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
			waitLog(t, g, at, `"msg":"backend up"`, be.url)
			if _, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("after up: %v", err)
			}
		})
	}
	t.Run("http over h2c", func(t *testing.T) {
		var protos sync.Map
		url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
			protos.Store(r.Proto, true)
			w.WriteHeader(503)
		})
		g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: /x, backend: %q, protocol: h2c, health_check: { path: /health, interval: 100ms, timeout: 80ms, unhealthy_threshold: 1 } }\n", url))
		waitLog(t, g, 0, `"msg":"backend down"`, "unexpected status 503")
		if _, ok := protos.Load("HTTP/2.0"); !ok {
			t.Fatal("the probe did not speak HTTP/2")
		}
	})
}

// TestGRPCRetryOn: a call a backend refuses at once with a status of
// retries.grpc_on goes to another backend (body included, streamed or
// not); another status is relayed as it is.
func TestGRPCRetryOn(t *testing.T) {
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			a, b := startGRPCBackend(t, nil), startGRPCBackend(t, nil)
			a.fail.Store(int32(codes.Unavailable))
			g := startLogGateway(t, engine, fmt.Sprintf("  - { path: /grpc.testing.TestService, backends: [ { url: %q }, { url: %q } ], protocol: h2c, outlier_detection: { consecutive_failures: 0 }, retries: { attempts: 1, budget: 1, grpc_on: [unavailable] } }\n", a.url, b.url))
			cl := grpcClient(t, g.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 6 {
				resp, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(fmt.Sprint("call ", i))}})
				if err != nil || string(resp.GetPayload().GetBody()) != fmt.Sprint("call ", i) {
					t.Fatalf("call %d: %v %v", i, resp, err)
				}
			}
			if a.calls.Load() == 0 {
				t.Fatal("the refusing backend got no call")
			}
			a.fail.Store(int32(codes.Internal))
			failed := 0
			for range 4 {
				if _, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{}); grpcCode(err) == codes.Internal {
					failed++
				}
			}
			if failed == 0 {
				t.Fatal("INTERNAL, not in grpc_on, was retried")
			}
		})
	}
}

// TestH2StreamLimit: a backend's SETTINGS_MAX_CONCURRENT_STREAMS is
// honoured: when its connections are full the gateway opens another one
// rather than queueing.
func TestH2StreamLimit(t *testing.T) {
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		inFlight.Add(-1)
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2}
	srv.Start()
	t.Cleanup(srv.Close)
	gw := startGateway(t, "fast", fmt.Sprintf("  - { path: /s, backend: %q, protocol: h2c }\n", srv.URL))
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			rawExchange(t, gw.addr, "GET /s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for peak.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if peak.Load() != 5 || conns.Load() < 3 {
		t.Fatalf("%d requests at once on %d connections, want 5 on at least 3", peak.Load(), conns.Load())
	}
}

// TestH2AutoFallback: with protocol auto, an https:// backend that offers
// only HTTP/1.1 by ALPN is spoken to over HTTP/1.1; one that offers h2
// over HTTP/2.
func TestH2AutoFallback(t *testing.T) {
	pki := newTestPKI(t)
	h1 := startTLSBackendHandler(t, pki.server.TLS, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) },
		func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	h2 := startTLSBackendHandler(t, pki.server.TLS, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }, nil)
	gw := startGateway(t, "fast", fmt.Sprintf("  - { path: /one, backend: %q, protocol: auto, tls: { ca_file: %q } }\n  - { path: /two, backend: %q, protocol: auto, tls: { ca_file: %q } }\n", h1.URL, pki.caFile, h2.URL, pki.caFile))
	for path, want := range map[string]string{"/one": "HTTP/1.1", "/two": "HTTP/2.0"} {
		for range 2 {
			raw, _ := rawExchange(t, gw.addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if statusOf(raw) != 200 || !strings.HasSuffix(raw, want) {
				t.Fatalf("%s: got\n%s\nwant %s", path, raw, want)
			}
		}
	}
}

// upperPolicy needs the response body and rewrites it in upper case.
type upperPolicy struct{ stampPolicy }

func (upperPolicy) ResponseNeeds(ex middleware.Exchange) middleware.ResponseNeeds {
	return middleware.NeedBody
}

func (upperPolicy) OnResponse(ex middleware.Exchange) error {
	ex.SetResponseBody([]byte(strings.ToUpper(string(ex.ResponseBody()))))
	return nil
}

// TestH2ResponsePhase: the middlewares' response phase runs on responses
// of HTTP/2 backends as on HTTP/1.1 ones: headers set, a body rewritten,
// a failure replacing the response.
func TestH2ResponsePhase(t *testing.T) {
	url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, "made")
		w.(http.Flusher).Flush()
		io.WriteString(w, " here")
	})
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q, protocol: h2c }\n", url))
			caps := middleware.Capabilities{Phases: middleware.PhaseRequest | middleware.PhaseResponse}
			set := func(h middleware.Handler) {
				for _, rt := range gw.srv.Snapshot().Routes {
					rt.chain = []middleware.Instance{{Handler: h, Caps: caps}}
				}
			}
			set(stampPolicy{})
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 201 || !strings.Contains(out, "X-Stamp: 201\r\n") || !strings.Contains(out, "here") {
				t.Fatalf("stamped response:\n%s", out)
			}
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nX-Fail: 1\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 502 || strings.Contains(out, "made") || !strings.HasSuffix(out, `{"error":"stamp"}`) {
				t.Fatalf("failed response phase:\n%s", out)
			}
			set(upperPolicy{})
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 201 || !strings.Contains(out, "Content-Length: 9\r\n") || !strings.HasSuffix(out, "\r\n\r\nMADE HERE") {
				t.Fatalf("rewritten body:\n%s", out)
			}
		})
	}
}

// TestH2PingLiveness: a backend connection that goes silent is checked
// with a PING; unanswered, the connection is closed and the next request
// opens a new one.
func TestH2PingLiveness(t *testing.T) {
	idle, ping := h2ReadIdle, h2PingTimeout
	h2ReadIdle, h2PingTimeout = 100*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { h2ReadIdle, h2PingTimeout = idle, ping })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	closed := make(chan time.Time, 4)
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			deaf := n.Add(1) == 1 // the first connection never answers PINGs
			conns.Go(func() {
				defer c.Close()
				mode := ""
				if deaf {
					mode = "deaf"
				}
				minimalH2(c, mode)
				closed <- time.Now()
			})
		}
	}()
	gw := startGateway(t, "fast", fmt.Sprintf("  - { path: /p, backend: %q, protocol: h2c }\n", "http://"+ln.Addr().String()))
	get := func() {
		t.Helper()
		raw, _ := rawExchange(t, gw.addr, "GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if statusOf(raw) != 204 {
			t.Fatalf("got:\n%s", raw)
		}
	}
	get()
	start := time.Now()
	select {
	case at := <-closed:
		if d := at.Sub(start); d > 2*time.Second {
			t.Fatalf("silent connection closed after %v", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the silent connection was not closed")
	}
	get()
	if n.Load() != 2 {
		t.Fatalf("%d backend connections, want 2", n.Load())
	}
}

// minimalH2 is an HTTP/2 server that answers every request 204; in mode
// "deaf" it never answers a PING; in "garbage" it answers 200 and sends a
// frame HTTP/2 forbids, in "reset" 200 and then RST_STREAM. It returns
// when the client closes.
func minimalH2(c net.Conn, mode string) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if mode != "deaf" && !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.HeadersFrame:
			hb.Reset()
			if mode == "garbage" || mode == "reset" {
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
				if mode == "reset" {
					fr.WriteRSTStream(f.StreamID, http2.ErrCodeCancel)
				} else {
					c.Write([]byte("\x00\x00\x05\x00\x00\x00\x00\x00\x00hello")) // DATA on stream 0
				}
				continue
			}
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "204"})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		}
	}
}

// TestH2BackendGarbageMidStream: a backend that breaks HTTP/2 after the
// response head ends the call with UNAVAILABLE in trailers (an HTTP/1.1
// client's response is cut short), promptly, counted as an invalid
// response.
func TestH2BackendGarbageMidStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				minimalH2(c, "garbage")
			})
		}
	}()
	url := "http://" + ln.Addr().String()
	g := startLogGateway(t, "fast", fmt.Sprintf("  - { path: /svc, backend: %q, protocol: h2c, retries: { attempts: 0 } }\n", url))
	start := time.Now()
	req, _ := http.NewRequest("POST", "http://"+g.addr+"/svc/Call", bytes.NewReader(grpcFrame))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Trailer.Get("Grpc-Status") != "14" || time.Since(start) > 2*time.Second {
		t.Fatalf("gRPC call: %d trailers %v after %v", resp.StatusCode, resp.Trailer, time.Since(start))
	}
	if st, raw := g.get(t, "/svc/x"); st != 200 || strings.HasSuffix(raw, "0\r\n\r\n") {
		t.Fatalf("HTTP/1.1 response not cut short:\n%q", raw)
	}
	// The second failure is counted as the exchange ends, which may come
	// after the client has read the cut response.
	for wait := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n := g.failures(t, url, reasonInvalid)
		if n == 2 {
			break
		}
		if n > 2 || time.Now().After(wait) {
			t.Fatalf("failures{reason=invalid_response} = %v, want 2\n%s", n, g.log())
		}
	}
}

// TestH2BidiFromHTTP1: an HTTP/1.1 client's chunked request body keeps
// flowing to an HTTP/2 backend while the response streams back, on every
// engine: each chunk's echo arrives before the next chunk is sent.
func TestH2BidiFromHTTP1(t *testing.T) {
	url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				fmt.Fprintf(w, "echo:%s;", buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: /bidi, backend: %q, protocol: h2c }\n", url))
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "POST /bidi HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			for _, m := range []string{"one", "two", "three"} {
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(m), m)
				want := "echo:" + m + ";"
				got := make([]byte, len(want))
				if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
					t.Fatalf("after sending %q: read %q, %v", m, got, err)
				}
			}
			io.WriteString(c, "0\r\n\r\n")
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("end: %q %v", rest, err)
			}
		})
	}
}

// TestH2BackendReset: a backend that resets a call's stream ends the
// call: UNAVAILABLE in trailers for a gRPC client, a reset stream for
// another HTTP/2 client.
func TestH2BackendReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				minimalH2(c, "reset")
			})
		}
	}()
	gw := startGateway(t, "standard", fmt.Sprintf("  - { path: /svc, backend: %q, protocol: h2c, retries: { attempts: 0 } }\n", "http://"+ln.Addr().String()))
	req, _ := http.NewRequest("POST", "http://"+gw.addr+"/svc/Call", bytes.NewReader(grpcFrame))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get("Grpc-Status") != "14" || !strings.Contains(resp.Trailer.Get("Grpc-Message"), "stream") {
		t.Fatalf("gRPC call: %d trailers %v", resp.StatusCode, resp.Trailer)
	}
	resp, err = h2cClient(t).Get("http://" + gw.addr + "/svc/x")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	var se http2.StreamError
	if !errors.As(err, &se) {
		t.Fatalf("plain HTTP/2 request: %v, want a reset stream", err)
	}
}

// BenchmarkProxyBackendH2: one client's serial requests through the fast
// engine to the same Go backend over HTTP/1.1 and over h2c (compare the
// two in one run: the HTTP/2 client's cost per request).
func BenchmarkProxyBackendH2(b *testing.B) {
	body := strings.Repeat("x", 64)
	url := h2cBackend(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	for _, p := range []string{"http1", "h2c"} {
		b.Run(p, func(b *testing.B) {
			benchmarkGET(b, startGateway(b, "fast", fmt.Sprintf("  - { path: \"/\", backend: %q, protocol: %s }\n", url, p)).addr)
		})
	}
}

// TestH2BodyFilter: a response body filter (compress is one) runs on the
// responses of an HTTP/2 backend as on HTTP/1.1 ones: streamed through
// the filter, Content-Length dropped, the head with the filter's first
// output.
func TestH2BodyFilter(t *testing.T) {
	url := h2cBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "26")
		io.WriteString(w, "abcdefghijklmnopqrstuvwxyz")
	})
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q, protocol: h2c }\n", url))
			u := &upperFilter{hold: 10}
			phases := middleware.PhaseRequest | middleware.PhaseResponse | middleware.PhaseResponseBody
			useChain(gw, middleware.Instance{Handler: u, Caps: middleware.Capabilities{Phases: phases}})
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, body := parseRaw(t, out)
			if string(body) != "ABCDEFGHIJKLMNOPQRSTUVWXYZ" || resp.Header.Get("X-Filter") != "decided-after-26" || resp.ContentLength != -1 {
				t.Fatalf("filtered response from an h2c backend:\n%s", out)
			}
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nX-No-Filter: 1\r\nConnection: close\r\n\r\n")
			if resp, body := parseRaw(t, out); string(body) != "abcdefghijklmnopqrstuvwxyz" || resp.Header.Get("X-Filter") != "declined" {
				t.Fatalf("declined filter:\n%s", out)
			}
			if u.closes.Load() != 1 || u.clean.Load() != 1 {
				t.Fatalf("filters closed %d times, %d complete; want 1, 1", u.closes.Load(), u.clean.Load())
			}
		})
	}
}
