package certs

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// CipherSuites are the TLS 1.2 suites offered: the AEAD, forward-secret
// (ECDHE) suites of Mozilla's "intermediate" profile that crypto/tls
// implements. TLS 1.3 suites are not configurable in crypto/tls; all of
// them are AEAD.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ParseVersion reads a min_version value: "1.2" or "1.3".
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported TLS version %q (supported: 1.2, 1.3)", s)
}

// serverConfig is one config handed out by TLSConfig. The handed-out
// *tls.Config only forwards each handshake (GetConfigForClient) to live,
// which the Manager replaces or updates (new ticket keys); so a clone
// of the handed-out config, as net/http makes, still follows rotations.
type serverConfig struct {
	nextProtos []string
	live       atomic.Pointer[tls.Config]
}

// TLSConfig returns a server *tls.Config that serves the Manager's
// certificates: TLS 1.2 and 1.3 (or 1.3 only), the suites of
// CipherSuites, ALPN nextProtos in order of preference (e.g. "h2",
// "http/1.1"), session tickets under the rotated keys, OCSP staples and
// the client certificate policy. It also answers the CA's tls-alpn-01
// validations (ALPN "acme-tls/1") when ACME offers that challenge, so
// nextProtos need not list it. Every listener may have its own; all
// follow reloads and rotations until Close.
func (m *Manager) TLSConfig(nextProtos []string) *tls.Config {
	sc := &serverConfig{nextProtos: append([]string(nil), nextProtos...)}
	m.mu.Lock()
	defer m.mu.Unlock()
	live := m.buildConfig(sc.nextProtos)
	sc.live.Store(live)
	m.configs = append(m.configs, sc)
	front := live.Clone()
	front.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if isChallenge(hello) {
			if a := m.acme.Load(); a != nil && a.alpn != nil {
				return a.alpn, nil
			}
		}
		return sc.live.Load(), nil
	}
	return front
}

// buildConfig builds the config handshakes run with. m.mu is held.
func (m *Manager) buildConfig(nextProtos []string) *tls.Config {
	c := &tls.Config{
		MinVersion:     m.minVersion,
		MaxVersion:     tls.VersionTLS13,
		CipherSuites:   CipherSuites,
		NextProtos:     nextProtos,
		GetCertificate: m.GetCertificate,
		ClientAuth:     m.clientAuth,
		ClientCAs:      m.clientCAs,
	}
	if f := m.opts.OnHandshake; f != nil {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			f(cs)
			return nil
		}
	}
	c.SetSessionTicketKeys(m.tickets.current())
	return c
}

// setTicketKeys installs keys on every live config. m.mu is held.
func (m *Manager) setTicketKeys(keys [][32]byte) {
	for _, sc := range m.configs {
		sc.live.Load().SetSessionTicketKeys(keys)
	}
}
