// Command grpcload measures unary gRPC calls per second and their latency,
// through RustyGate against the same calls made directly to the backend
// (the gRPC rows of test/bench/peer.sh, or by hand).
//
//	grpcload -serve 127.0.0.1:18051                 # the backend: TestService.UnaryCall echoes its payload
//	grpcload -direct 127.0.0.1:18051 -via 127.0.0.1:18080 -c 32 -d 5s -rounds 3
//
// Each of -c workers makes calls one after another on one shared client
// connection (HTTP/2 multiplexing, as gRPC clients do) for -d, first
// directly, then through the gateway, -rounds times; the medians are
// reported. The last line is machine-readable:
//
//	result direct_cps=41000 via_cps=30500 ratio=0.74 added_p50_ms=0.35 added_p99_ms=1.20
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

type echo struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echo) UnaryCall(_ context.Context, r *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Payload: r.GetPayload()}, nil
}

// run is one measurement: calls per second and the sorted latencies.
type run struct {
	cps  float64
	lat  []time.Duration
	errs int
	// firstErr is the first failed call's error (nil: none failed).
	firstErr error
}

func main() {
	serve := flag.String("serve", "", "serve the backend on this address")
	direct := flag.String("direct", "127.0.0.1:18051", "the backend's address")
	via := flag.String("via", "127.0.0.1:18080", "the gateway's address")
	conc := flag.Int("c", 32, "concurrent calls")
	dur := flag.Duration("d", 5*time.Second, "duration of one measurement")
	rounds := flag.Int("rounds", 3, "measurements of each target")
	size := flag.Int("size", 64, "payload bytes")
	flag.Parse()
	if *serve != "" {
		if err := serveBackend(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := compare(*direct, *via, *conc, *dur, *rounds, *size); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serveBackend(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, echo{})
	return s.Serve(ln)
}

func compare(direct, via string, conc int, dur time.Duration, rounds, size int) error {
	var d, v []run
	for i := range rounds {
		rd, err := measure(direct, conc, dur, size)
		if err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		rv, err := measure(via, conc, dur, size)
		if err != nil {
			return fmt.Errorf("via the gateway: %w", err)
		}
		fmt.Printf("round %d: direct %.0f calls/s p50 %.3f ms p99 %.3f ms; via %.0f calls/s p50 %.3f ms p99 %.3f ms (errors %d/%d)\n",
			i+1, rd.cps, ms(pct(rd.lat, 50)), ms(pct(rd.lat, 99)), rv.cps, ms(pct(rv.lat, 50)), ms(pct(rv.lat, 99)), rd.errs, rv.errs)
		for _, e := range []error{rd.firstErr, rv.firstErr} {
			if e != nil {
				fmt.Printf("  first error: %v\n", e)
			}
		}
		d, v = append(d, rd), append(v, rv)
	}
	md, mv := median(d), median(v)
	fmt.Printf("result direct_cps=%.0f via_cps=%.0f ratio=%.2f added_p50_ms=%.3f added_p99_ms=%.3f\n",
		md.cps, mv.cps, mv.cps/md.cps, ms(pct(mv.lat, 50)-pct(md.lat, 50)), ms(pct(mv.lat, 99)-pct(md.lat, 99)))
	return nil
}

// measure makes calls to addr from conc workers for dur.
func measure(addr string, conc int, dur time.Duration, size int) (run, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return run{}, err
	}
	defer cc.Close()
	cl := testgrpc.NewTestServiceClient(cc)
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, size)}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = cl.UnaryCall(ctx, req) // warm the connection
	cancel()
	if err != nil {
		return run{}, err
	}
	var mu sync.Mutex
	var r run
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			for time.Now().Before(end) {
				t := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cl.UnaryCall(ctx, req)
				cancel()
				if err != nil {
					if errs == 0 {
						mu.Lock()
						if r.firstErr == nil {
							r.firstErr = err
						}
						mu.Unlock()
					}
					errs++
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			r.lat = append(r.lat, lat...)
			r.errs += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(r.lat)
	r.cps = float64(len(r.lat)) / time.Since(start).Seconds()
	if len(r.lat) == 0 {
		return r, errors.New("no call completed")
	}
	return r, nil
}

func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[(len(lat)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// median returns the run with the median calls per second.
func median(rs []run) run {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b run) int {
		switch {
		case a.cps < b.cps:
			return -1
		case a.cps > b.cps:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}
