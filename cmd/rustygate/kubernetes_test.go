package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// The provider's l4 listeners listen on the host of server.listen; one
// on a port or with a name of the file's listeners is left out, and the
// provider's result is not changed by the defaults of the load.
func TestWithProviderL4(t *testing.T) {
	g := &gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg := &config.Config{
		Server: config.Server{Listen: "127.0.0.1:8080"},
		L4:     []config.L4Listener{{Name: "pg", Listen: "127.0.0.1:5432", Backends: []config.L4Backend{{Addr: "10.0.0.1:5432"}}}},
	}
	cfg.Admin.Listen = "off"
	route := config.L4Route{SNI: []string{"a.example.com"}, Backends: []config.L4Backend{{Addr: "10.0.0.2:443", Weight: 840}}}
	res := []config.L4Listener{
		{Name: "gateway/apps/l4/5432", Listen: ":5432", Backends: []config.L4Backend{{Addr: "10.0.0.3:5432", Weight: 840}}},
		{Name: "gateway/apps/l4/8080", Listen: ":8080", Backends: []config.L4Backend{{Addr: "10.0.0.3:80", Weight: 840}}},
		{Name: "gateway/apps/l4/8443", Listen: ":8443", Routes: []config.L4Route{route}},
	}
	g.withProviderL4(cfg, res)
	if len(cfg.L4) != 2 || cfg.L4[1].Name != "gateway/apps/l4/8443" || cfg.L4[1].Listen != "127.0.0.1:8443" {
		t.Fatalf("l4 listeners %+v: want the file's and the one on 8443", cfg.L4)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if res[2].Routes[0].Name != "" || res[2].Routes[0].Strategy != "" || res[2].Listen != ":8443" {
		t.Fatalf("the defaults of the load changed the provider's result: %+v", res[2])
	}
}

// The file's listeners' ports, port ranges included, are reserved for
// the provider's status.
func TestReservedPorts(t *testing.T) {
	cfg := &config.Config{
		Server: config.Server{Listen: "127.0.0.1:8080", TLS: &config.TLSConfig{Listen: ":8443"}},
		L4: []config.L4Listener{
			{Name: "pg", Listen: "127.0.0.1:5432"},
			{Name: "games", Listen: "0.0.0.0:9000-9002"},
		},
	}
	cfg.Admin.Listen = "off"
	m := reservedPorts(cfg)
	want := map[int32]string{8080: "server.listen", 8443: "server.tls.listen", 5432: `l4 listener "pg"`,
		9000: `l4 listener "games"`, 9001: `l4 listener "games"`, 9002: `l4 listener "games"`}
	if len(m) != len(want) {
		t.Fatalf("reserved %v, want %v", m, want)
	}
	for p, w := range want {
		if m[p] != w {
			t.Fatalf("port %d: %q, want %q (all: %v)", p, m[p], w, m)
		}
	}
}
