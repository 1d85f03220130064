package l4

import (
	"bytes"
	"testing"
)

// BenchmarkClientHello reads the server name of a real hello (Go's client:
// post-quantum key share, ALPN) with readClientHello, and with crypto/tls's
// server as the baseline of the same run.
func BenchmarkClientHello(b *testing.B) {
	hello := clientHello(b, "db.example.com")
	b.Run("readClientHello", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(hello)))
		for b.Loop() {
			if _, sni, err := readClientHello(bytes.NewReader(hello)); err != nil || sni != "db.example.com" {
				b.Fatal(sni, err)
			}
		}
	})
	b.Run("crypto_tls", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(hello)))
		for b.Loop() {
			if name, ok := stdlibServerName(hello); !ok || name != "db.example.com" {
				b.Fatal(name)
			}
		}
	})
}

// BenchmarkSNIMatch picks a route for an exact name, a name two labels
// below a wildcard and an unknown name.
func BenchmarkSNIMatch(b *testing.B) {
	g := &group{name: "g"}
	r := &sniRoutes{exact: map[string]*group{"db.example.com": g}, wildcard: map[string]*group{"apps.example.com": g}}
	for _, name := range []string{"db.example.com", "a.b.apps.example.com", "unknown.example.org"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.match(name)
			}
		})
	}
}
