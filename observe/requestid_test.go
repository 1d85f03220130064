package observe

import (
	"sync"
	"testing"
)

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func TestRequestIDsUnique(t *testing.T) {
	const n = 1_000_000
	g := NewRequestIDs()
	seen := make(map[[32]byte]struct{}, n)
	buf := make([]byte, 0, 64)
	for range n {
		buf = g.Append(buf[:0])
		if len(buf) != 32 || !isLowerHex(buf) {
			t.Fatalf("bad id %q", buf)
		}
		id := [32]byte(buf)
		if _, dup := seen[id]; dup {
			t.Fatalf("duplicate id %s", buf)
		}
		seen[id] = struct{}{}
	}
}

func TestRequestIDsConcurrent(t *testing.T) {
	const goroutines, per = 8, 20000
	g := NewRequestIDs()
	ids := make([][][32]byte, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			var buf [32]byte
			for range per {
				ids[i] = append(ids[i], [32]byte(g.Append(buf[:0])))
			}
		})
	}
	wg.Wait()
	seen := make(map[[32]byte]struct{}, goroutines*per)
	for _, list := range ids {
		for _, id := range list {
			if _, dup := seen[id]; dup {
				t.Fatalf("duplicate id %s", id[:])
			}
			seen[id] = struct{}{}
		}
	}
}

func TestRequestIDsAppend(t *testing.T) {
	g := NewRequestIDs()
	a := g.Append([]byte("id="))
	if len(a) != 3+32 || string(a[:3]) != "id=" || !isLowerHex(a[3:]) {
		t.Errorf("Append kept no prefix or bad id: %q", a)
	}
	b := g.Append(nil)
	if string(a[3:3+16]) != string(b[:16]) {
		t.Errorf("per-process prefix changed: %s vs %s", a[3:], b)
	}
	if string(a[3:]) == string(b) {
		t.Error("same id twice")
	}
	if h := NewRequestIDs().Append(nil); string(h[:16]) == string(b[:16]) {
		t.Errorf("two generators share the random prefix %s", h[:16])
	}
}

func TestRequestIDsAllocs(t *testing.T) {
	g := NewRequestIDs()
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(1000, func() { buf = g.Append(buf[:0]) }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}

func BenchmarkRequestID(b *testing.B) {
	g := NewRequestIDs()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = g.Append(buf[:0])
	}
}

func BenchmarkRequestIDParallel(b *testing.B) {
	g := NewRequestIDs()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64)
		for pb.Next() {
			buf = g.Append(buf[:0])
		}
	})
}
