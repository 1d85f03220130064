package ratelimit

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testredis"
)

// BenchmarkLimiterStep: one request through the limiter, scope local
// against scope cluster (one EVALSHA in a redis-server on loopback), in
// parallel like a loaded gateway. Compare the two ns/op: the cluster
// step is a network round trip, the local one a locked table update.
func BenchmarkLimiterStep(b *testing.B) {
	s := Settings{Limit: 100000000, Burst: 100000000, Window: config.Duration(time.Minute), Key: "ip", MaxKeys: 1000, Scope: ScopeLocal, OnError: OnErrorLocal}
	run := func(b *testing.B, l *Limiter) {
		b.ReportAllocs()
		b.SetParallelism(16) // 32 goroutines on 2 CPUs: many clients in flight
		b.RunParallel(func(pb *testing.PB) {
			req := &request{peer: netip.MustParseAddr("203.0.113.1")}
			for pb.Next() {
				req.resp = req.resp[:0]
				if l.Handle(req) != nil {
					b.Error("rejected")
					return
				}
			}
		})
	}
	b.Run("local", func(b *testing.B) {
		l, err := NewWithStore(s, "api", nil, Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		run(b, l)
	})
	b.Run("cluster", func(b *testing.B) {
		r := testredis.Start(b)
		s := s
		s.Scope = ScopeCluster
		l := sharedLimiters(b, 1, r.Addr(), s)[0]
		run(b, l)
		if !l.shared.cl.Up() {
			b.Error("Redis was marked down during the run: the figure mixes in the fallback")
		}
	})
}
