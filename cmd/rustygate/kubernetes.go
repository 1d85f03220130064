package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/providers/kubernetes"
)

// k8sSyncTimeout bounds the wait for the provider's first full view of
// the API server at start.
const k8sSyncTimeout = 60 * time.Second

// startKubernetes starts the Kubernetes provider when the file enables
// it; its routes are then part of every load. stop ends it.
func (g *gateway) startKubernetes(cfg *config.Config) (stop func(), err error) {
	kc := cfg.Providers.Kubernetes
	if kc == nil {
		return func() {}, nil
	}
	rc, err := kubernetes.RESTConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("providers.kubernetes: %w", err)
	}
	p, err := kubernetes.New(rc, kc, g.log)
	if err != nil {
		return nil, fmt.Errorf("providers.kubernetes: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Start(ctx, k8sSyncTimeout); err != nil {
		cancel()
		return nil, fmt.Errorf("providers.kubernetes: %w", err)
	}
	if g.k8sDir, err = os.MkdirTemp("", "rustygate-k8s-certs-"); err != nil {
		cancel()
		return nil, err
	}
	g.k8s = p
	return func() { cancel(); os.RemoveAll(g.k8sDir) }, nil
}

// runKubernetes reloads on every debounced change of the watched objects
// until ctx ends.
func (g *gateway) runKubernetes(ctx context.Context) {
	if g.k8s == nil {
		return
	}
	g.k8s.Run(ctx, func() {
		if !g.k8s.Changed() {
			return
		}
		if _, err := g.reload("kubernetes", false); err != nil {
			g.log.Warn("kubernetes: change not applied", "error", err.Error())
		}
	})
}

// withProviders adds the providers' routes and certificates to the
// file's configuration and checks the result. A provider route with the
// host, path and conditions of a file route is left out: the file wins.
func (g *gateway) withProviders(cfg *config.Config) (*config.Config, error) {
	if g.k8s == nil || cfg.Providers.Kubernetes == nil {
		return cfg, nil
	}
	reserved := reservedPorts(cfg)
	g.addBoundPorts(reserved, cfg)
	g.k8s.SetReserved(reserved)
	res := g.k8s.Translate()
	if errs := strings.Join(res.Errors, "; "); errs != g.k8sErrs {
		g.k8sErrs = errs
		for _, e := range res.Errors {
			g.log.Warn("kubernetes: object left out", "error", e)
		}
	}
	keys, names := map[string]bool{}, map[string]bool{}
	for i := range cfg.Routes {
		keys[kubernetes.RouteKey(&cfg.Routes[i])] = true
		names[cfg.Routes[i].Name] = true
	}
	for _, r := range res.Routes {
		if keys[kubernetes.RouteKey(&r)] || names[r.Name] {
			g.log.Warn("kubernetes: route shadowed by a route of the file", "route", r.Name)
			continue
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	g.withProviderL4(cfg, res.L4)
	if t := cfg.Server.TLS; t != nil {
		for _, c := range res.Certificates {
			tc, err := g.writeCert(c)
			if err != nil {
				return nil, err
			}
			t.Certificates = append(t.Certificates, tc)
		}
	} else if len(res.Certificates) > 0 {
		g.log.Warn("kubernetes: certificates of HTTPS listeners and Ingresses are not served: the file sets no server.tls")
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// reservedPorts lists the ports of the file's listeners, each with what
// holds it, for the status of the Gateway listeners that ask for them.
func reservedPorts(cfg *config.Config) map[int32]string {
	m := map[int32]string{}
	add := func(addr, what string) {
		if _, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
				reserve(m, int32(n), what)
			}
		}
	}
	add(cfg.Server.Listen, "server.listen")
	if t := cfg.Server.TLS; t != nil {
		add(t.Listen, "server.tls.listen")
	}
	add(cfg.Admin.Listen, "admin.listen")
	for _, l := range cfg.L4 {
		what := fmt.Sprintf("l4 listener %q", l.Name)
		r, err := config.ParseListenRange(l.Listen)
		if err != nil {
			add(l.Listen, what)
			continue
		}
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			reserve(m, int32(p), what)
		}
	}
	return m
}

// reserve records what holds port, unless something already does.
func reserve(m map[int32]string, port int32, what string) {
	if _, ok := m[port]; !ok {
		m[port] = what
	}
}

// addBoundPorts adds to m the ports the gateway's listeners are bound to
// (a configured port 0 is known only once bound), for those the
// configuration cfg keeps.
func (g *gateway) addBoundPorts(m map[int32]string, cfg *config.Config) {
	add := func(ln net.Listener, what string) {
		if ln == nil {
			return
		}
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.Port > 0 {
			reserve(m, int32(a.Port), what)
		}
	}
	if g.listenAddr == cfg.Server.Listen {
		add(g.ln, "server.listen")
	}
	if t := cfg.Server.TLS; t != nil && g.tlsAddr == t.Listen {
		add(g.tlsLn, "server.tls.listen")
	}
	add(g.adminLn, "admin.listen")
}

// withProviderL4 adds the provider's l4 listeners (TCP and TLS Gateway
// listeners) on the host of server.listen. One whose name or port a
// listener of the file already has is left out: the file wins.
func (g *gateway) withProviderL4(cfg *config.Config, ls []config.L4Listener) {
	host, _, _ := net.SplitHostPort(cfg.Server.Listen)
	taken := map[string]bool{}
	for _, addr := range []string{cfg.Server.Listen, cfg.Admin.Listen} {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			taken[port] = true
		}
	}
	if t := cfg.Server.TLS; t != nil {
		_, port, _ := net.SplitHostPort(t.Listen)
		taken[port] = true
	}
	for _, l := range cfg.L4 {
		_, port, _ := net.SplitHostPort(l.Listen)
		taken[l.Name], taken[port] = true, true
	}
	for _, l := range ls {
		_, port, _ := net.SplitHostPort(l.Listen)
		if taken[l.Name] || taken[port] {
			g.log.Warn("kubernetes: Gateway listener left out: its port is one of the file's listeners", "l4", l.Name, "port", port)
			continue
		}
		l.Listen = net.JoinHostPort(host, port)
		l.Backends, l.Routes = slices.Clone(l.Backends), slices.Clone(l.Routes)
		for i := range l.Routes {
			l.Routes[i].SNI, l.Routes[i].Backends = slices.Clone(l.Routes[i].SNI), slices.Clone(l.Routes[i].Backends)
		}
		cfg.L4 = append(cfg.L4, l)
	}
}

// writeCert writes a Secret's certificate and key where the certificate
// manager reads them, under names that change with the content, so that
// a reload sees a new file for a renewed certificate.
func (g *gateway) writeCert(c kubernetes.Certificate) (config.TLSCertificate, error) {
	sum := sha256.Sum256(append(append([]byte{}, c.Cert...), c.Key...))
	base := filepath.Join(g.k8sDir, hex.EncodeToString(sum[:8]))
	tc := config.TLSCertificate{CertFile: base + ".crt", KeyFile: base + ".key"}
	if _, err := os.Stat(tc.KeyFile); err == nil {
		return tc, nil
	}
	if err := os.WriteFile(tc.CertFile, c.Cert, 0o600); err != nil {
		return tc, err
	}
	return tc, os.WriteFile(tc.KeyFile, c.Key, 0o600)
}
