//go:build linux

package loader

import (
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// Benchmarks of kernel splicing against splice(2) on loopback, through
// the same rig (client -> proxy -> backend, all on 127.0.0.1):
//
//	go test -p 1 -run '^$' -bench 'BenchmarkSplice' -benchtime 3s ./loader/
func benchRig(b *testing.B, userspace bool) *spliceRig {
	s := requireSplice(b)
	r, err := newSpliceRig(s)
	if err != nil {
		b.Fatal(err)
	}
	r.userspace = userspace
	b.Cleanup(func() { r.close() })
	return r
}

func datapaths(b *testing.B, f func(b *testing.B, userspace bool)) {
	b.Run("splice", func(b *testing.B) { f(b, true) })
	b.Run("kernel", func(b *testing.B) { f(b, false) })
}

// BenchmarkSpliceBulk uploads b.N MiB on one connection.
func BenchmarkSpliceBulk(b *testing.B) {
	datapaths(b, func(b *testing.B, userspace bool) {
		r := benchRig(b, userspace)
		c, err := net.Dial("tcp", r.addr())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		if _, err := c.Write([]byte{'d'}); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		var out [8]byte
		if _, err := io.ReadFull(c, out[:]); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := binary.BigEndian.Uint64(out[:]); got != uint64(b.N)*uint64(len(buf)) {
			b.Fatalf("backend got %d bytes, want %d", got, b.N*len(buf))
		}
	})
}

// BenchmarkSpliceRTT sends 64 bytes and waits for their echo, b.N times
// on one connection, and reports the p50 and p99 round trip.
func BenchmarkSpliceRTT(b *testing.B) {
	datapaths(b, func(b *testing.B, userspace bool) {
		r := benchRig(b, userspace)
		c, err := net.Dial("tcp", r.addr())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, 64)
		got := make([]byte, 64)
		c.Write([]byte{'e'})
		// Warm up, and let the proxy splice the connection.
		for range 100 {
			c.Write(msg)
			io.ReadFull(c, got)
		}
		rtts := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil {
				b.Fatal(err)
			}
			rtts = append(rtts, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(rtts)
		b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-us")
		b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-us")
	})
}
