package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// ACME challenge types, the values of ACME.Challenges.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Directories of Let's Encrypt, the default CA.
const (
	LetsEncryptProduction = certmagic.LetsEncryptProductionCA
	LetsEncryptStaging    = certmagic.LetsEncryptStagingCA
)

// acmeTLSProto is the ALPN protocol of the tls-alpn-01 challenge.
const acmeTLSProto = "acme-tls/1"

// ACME configures certificates obtained and renewed automatically from an
// ACME CA (Let's Encrypt by default), for the names no certificate file
// covers.
type ACME struct {
	// Hosts are the names to obtain certificates for (exact DNS names).
	// Names a certificate file covers are skipped. Handshakes for other
	// names never trigger an order.
	Hosts []string
	// Email is the account's contact address (optional).
	Email string
	// CA is the ACME directory URL (default LetsEncryptProduction).
	CA string
	// Storage is the directory of accounts, certificates, keys and
	// locks; processes sharing it share certificates and never order the
	// same one twice at once.
	Storage string
	// Challenges are the challenge types offered to the CA (default
	// http-01 and tls-alpn-01).
	Challenges []string
	// CARootFile holds PEM certificates trusted for the CA's HTTPS
	// directory instead of the system roots (private or test CAs).
	CARootFile string
	// HTTPPort and TLSALPNPort are the ports the CA connects to for
	// http-01 and tls-alpn-01 (default 80 and 443). When the proxy
	// listens there it answers the challenges itself (HandleHTTPChallenge,
	// TLSConfig); when nothing does, a solver listens there for the
	// duration of a challenge.
	HTTPPort, TLSALPNPort int

	// renewCheck is how often certificates are checked for renewal
	// (default: certmagic's, 10 minutes); retry are the delays between
	// failed attempts to obtain a certificate (default acmeRetry).
	renewCheck time.Duration
	retry      []time.Duration
}

// acmeRetry are the delays between attempts to obtain a certificate that
// failed, the last one repeating: quick enough to recover from a DNS
// record set late, slow enough for the CA's rate limits on failed
// validations.
var acmeRetry = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}

// acmeHandshakeWait bounds how long a handshake for an ACME host waits
// for the first attempt to get its certificate.
const acmeHandshakeWait = 30 * time.Second

func (a *ACME) challenge(c string) bool { return slices.Contains(a.Challenges, c) }

// acmeSource obtains, renews and serves the ACME certificates.
type acmeSource struct {
	opts     ACME
	onChange func()
	// hosts maps each host to a channel closed when the first attempt to
	// get its certificate (from storage or the CA) has ended.
	hosts   map[string]chan struct{}
	log     *slog.Logger
	cache   *certmagic.Cache
	managed *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	// alpn answers tls-alpn-01 handshakes (nil when that challenge is off).
	alpn *tls.Config

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// checkACME checks o and fills its defaults.
func checkACME(o *ACME) error {
	if len(o.Hosts) == 0 {
		return errors.New("certs: acme: no host to obtain a certificate for")
	}
	if o.Storage == "" {
		return errors.New("certs: acme: no storage directory")
	}
	if o.CA == "" {
		o.CA = LetsEncryptProduction
	}
	if len(o.Challenges) == 0 {
		o.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	for _, c := range o.Challenges {
		if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
			return fmt.Errorf("certs: acme: unknown challenge %q (supported: %s, %s)", c, ChallengeHTTP01, ChallengeTLSALPN01)
		}
	}
	if err := os.MkdirAll(o.Storage, 0o700); err != nil {
		return fmt.Errorf("certs: acme: storage: %w", err)
	}
	return nil
}

// checkACMEOptions checks o (creating the storage directory) without
// starting anything.
func checkACMEOptions(o ACME) error {
	if err := checkACME(&o); err != nil {
		return err
	}
	if o.CARootFile != "" {
		if _, err := LoadClientCAs(o.CARootFile); err != nil {
			return fmt.Errorf("certs: acme: ca_root: %w", err)
		}
	}
	return nil
}

// newACMESource prepares the ACME certificates of o; start begins
// obtaining them. onChange runs after a certificate was obtained or
// renewed.
func newACMESource(o ACME, log *slog.Logger, onChange func()) (*acmeSource, error) {
	if err := checkACME(&o); err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if o.CARootFile != "" {
		var err error
		if roots, err = LoadClientCAs(o.CARootFile); err != nil {
			return nil, fmt.Errorf("certs: acme: ca_root: %w", err)
		}
	}
	s := &acmeSource{opts: o, hosts: make(map[string]chan struct{}, len(o.Hosts)), log: log, onChange: onChange}
	for _, h := range o.Hosts {
		s.hosts[strings.ToLower(h)] = make(chan struct{})
	}
	zl := newZapLogger(log)
	s.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return s.managed, nil },
		RenewCheckInterval: o.renewCheck,
		Logger:             zl,
	})
	base := certmagic.Config{Storage: &certmagic.FileStorage{Path: o.Storage}, Logger: zl}
	tmpl := certmagic.ACMEIssuer{
		// TestCA: o.CA keeps certmagic from falling back to Let's
		// Encrypt's staging directory after failures.
		CA: o.CA, TestCA: o.CA, Email: o.Email, Agreed: true,
		DisableHTTPChallenge:    !o.challenge(ChallengeHTTP01),
		DisableTLSALPNChallenge: !o.challenge(ChallengeTLSALPN01),
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSALPNPort,
		TrustedRoots:            roots,
		Logger:                  zl,
	}
	s.managed = certmagic.New(s.cache, base)
	s.issuer = certmagic.NewACMEIssuer(s.managed, tmpl)
	s.managed.Issuers = []certmagic.Issuer{s.issuer}
	if o.challenge(ChallengeTLSALPN01) {
		s.alpn = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{acmeTLSProto},
			GetCertificate: s.managed.GetCertificate,
		}
	}
	return s, nil
}

// start obtains (or loads from storage) the certificate of every host in
// the background and keeps it renewed until close.
func (s *acmeSource) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for h, first := range s.hosts {
		s.wg.Add(1)
		go s.manage(ctx, h, first)
	}
	if s.onChange != nil {
		s.wg.Add(1)
		go s.watchCache(ctx)
	}
}

// watchCache calls onChange when the certificates served change: one
// obtained, renewed here, or renewed by another process on the storage
// (certmagic has no hook for all three). A look at the cache costs a map
// lookup per host.
func (s *acmeSource) watchCache(ctx context.Context) {
	defer s.wg.Done()
	every := min(orDefault(s.opts.renewCheck, time.Second), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var last []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.servedHashes()
		if !slices.Equal(now, last) {
			last = now
			s.onChange()
		}
	}
}

// servedHashes lists the hashes of the certificates cached per host.
func (s *acmeSource) servedHashes() []string {
	var out []string
	for h := range s.hosts {
		for _, c := range s.cache.AllMatchingCertificates(h) {
			out = append(out, c.Hash())
		}
	}
	slices.Sort(out)
	return out
}

// manage obtains host's certificate, retrying after failures, and hands
// it to the cache's renewal. It closes first after the first attempt.
func (s *acmeSource) manage(ctx context.Context, host string, first chan struct{}) {
	defer s.wg.Done()
	var once sync.Once
	defer once.Do(func() { close(first) })
	retry := s.opts.retry
	if retry == nil {
		retry = acmeRetry
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := s.managed.ManageSync(ctx, []string{host})
		once.Do(func() { close(first) })
		if err == nil {
			s.log.Info("acme certificate ready", "host", host, "took", time.Since(start).Round(time.Millisecond).String())
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait := retry[min(attempt, len(retry)-1)]
		s.log.Error("acme certificate not obtained", "host", host, "err", err.Error(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// covers reports whether name is an ACME host.
func (s *acmeSource) covers(name string) bool {
	if name == "" {
		return false
	}
	_, ok := s.hosts[strings.ToLower(name)]
	return ok
}

// getCertificate serves an ACME host. A handshake that comes before the
// first attempt to get the certificate has ended waits for it (at most
// acmeHandshakeWait); it never starts an order of its own, so clients
// cannot multiply orders, failed ones included.
func (s *acmeSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	first := s.hosts[strings.ToLower(hello.ServerName)]
	select {
	case <-first:
	default:
		t := time.NewTimer(acmeHandshakeWait)
		defer t.Stop()
		select {
		case <-first:
		case <-t.C:
		case <-done(hello.Context()):
			return nil, hello.Context().Err()
		}
	}
	return s.managed.GetCertificate(hello)
}

// isChallenge reports whether hello is a tls-alpn-01 validation.
func isChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLSProto
}

// handleHTTP answers an http-01 validation request for an ACME host.
func (s *acmeSource) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	if !s.opts.challenge(ChallengeHTTP01) || !certmagic.LooksLikeHTTPChallenge(r) {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !s.covers(host) {
		return false
	}
	return s.issuer.HandleHTTPChallenge(w, r)
}

// certificates describes the ACME certificates held now, by host.
func (s *acmeSource) certificates() []CertInfo {
	var out []CertInfo
	seen := make(map[string]bool)
	hosts := slices.Sorted(func(yield func(string) bool) {
		for h := range s.hosts {
			if !yield(h) {
				return
			}
		}
	})
	for _, h := range hosts {
		for _, c := range s.cache.AllMatchingCertificates(h) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, CertInfo{
				ACME: true, Name: h, Names: slices.Clone(c.Names),
				Serial:      c.Leaf.SerialNumber.Text(16),
				NotBefore:   c.Leaf.NotBefore,
				NotAfter:    c.Leaf.NotAfter,
				OCSPStapled: len(c.OCSPStaple) > 0,
			})
		}
	}
	return out
}

// close stops obtaining and renewing; the certificates stay in storage.
func (s *acmeSource) close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.cache.Stop()
}

// startACME starts serving o (nil: no ACME), replacing the source in
// place; the caller closes the previous one. Hosts a pair covers are
// left to the pair. m.mu is held, or m is not shared yet.
func (m *Manager) startACME(o *ACME) error {
	if o == nil {
		m.acme.Store(nil)
		return nil
	}
	oc := *o
	oc.Hosts = nil
	t := m.tab.Load()
	for _, h := range o.Hosts {
		if t.lookup(h, nil) >= 0 {
			m.log.Info("acme host covered by a certificate file, not ordering", "host", h)
			continue
		}
		oc.Hosts = append(oc.Hosts, h)
	}
	if len(oc.Hosts) == 0 {
		m.acme.Store(nil)
		return nil
	}
	s, err := newACMESource(oc, m.log, m.opts.OnChange)
	if err != nil {
		return err
	}
	s.start()
	m.acme.Store(s)
	return nil
}

// sameACME reports whether two ACME settings are equal.
func sameACME(a, b *ACME) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Hosts, b.Hosts) && a.Email == b.Email && a.CA == b.CA &&
		a.Storage == b.Storage && slices.Equal(a.Challenges, b.Challenges) &&
		a.CARootFile == b.CARootFile && a.HTTPPort == b.HTTPPort && a.TLSALPNPort == b.TLSALPNPort
}

// HandleHTTPChallenge answers the CA's http-01 validation requests
// (GET /.well-known/acme-challenge/<token> for an ACME host) and reports
// whether it did; the plain-HTTP listener calls it before routing and
// routes the request when it returns false. It is safe on a Manager
// without ACME (always false).
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	a := m.acme.Load()
	return a != nil && a.handleHTTP(w, r)
}

// done is ctx.Done(), nil (never ready) for a nil ctx.
func done(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}
