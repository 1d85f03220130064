package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// PairFiles names one certificate and its key.
type PairFiles struct {
	CertFile, KeyFile string
}

// Options configures a Manager.
type Options struct {
	// Certificates are the pairs served, at least one unless ACME is
	// set. When several name the same host, the first listed wins.
	Certificates []PairFiles
	// ACME, when set, obtains and renews certificates for the hosts no
	// pair covers.
	ACME *ACME
	// Default is the pair for handshakes whose SNI matches no
	// certificate, or that send none: a CertFile of Certificates, or a
	// host name one of them covers. Empty: the first pair, unless
	// StrictSNI.
	Default string
	// StrictSNI fails those handshakes instead (Default must be empty).
	StrictSNI bool
	// MinVersion is tls.VersionTLS12 (default) or tls.VersionTLS13.
	MinVersion uint16
	// TicketKeyRotation is how often a new session ticket key is made
	// (default DefaultTicketKeyRotation).
	TicketKeyRotation time.Duration
	// OCSPStapling fetches and staples OCSP responses for certificates
	// that name a responder.
	OCSPStapling bool
	// OCSPTimeout bounds one OCSP request (default 10s).
	OCSPTimeout time.Duration
	// ClientAuth, when set, asks clients for certificates.
	ClientAuth *ClientAuth
	// Watch reloads a pair when its files change.
	Watch bool
	// OnChange is called after the served certificates changed (a pair
	// was reloaded; an ACME certificate was obtained or renewed, by this
	// process or another on the storage, seen within a second), e.g. to
	// republish expiry metrics. It must not block.
	OnChange func()
	// OnHandshake is called for every handshake that succeeded (resumed
	// or not), e.g. to count handshakes by version; failures are the
	// listener's Handshake errors (ErrNoCertificate for strict SNI). It
	// runs on the handshake path and must be cheap.
	OnHandshake func(tls.ConnectionState)
	// Logger receives reload, OCSP and handshake failure lines (default
	// slog.Default()).
	Logger *slog.Logger

	// Test knobs: OCSP refresh floor and first retry delay.
	ocspMinRefresh, ocspRetry time.Duration
}

// Manager serves a set of certificate pairs to TLS handshakes.
type Manager struct {
	log        *slog.Logger
	tickets    *ticketKeys
	ocspClient *http.Client
	// rotation is the ticket key rotation period (nanoseconds).
	rotation atomic.Int64

	tab atomic.Pointer[table]
	// acme serves the ACME hosts (nil without ACME).
	acme atomic.Pointer[acmeSource]

	// mu serialises writers (reloads, updates, staples, configs) and
	// guards the fields below.
	mu sync.Mutex
	settings
	configs []*serverConfig

	lastStrictLog atomic.Int64

	stop       chan struct{}
	ticketWake chan struct{}
	watchWake  chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// settings is what Options turn into; Update replaces it whole.
type settings struct {
	opts       Options
	pairs      []*pairState
	def        int // the default pair, -1 for strict SNI
	minVersion uint16
	clientAuth tls.ClientAuthType
	clientCAs  *x509.CertPool
}

// pairState is one configured pair and what it serves now.
type pairState struct {
	files  PairFiles
	pair   *Pair            // the pair loaded last
	served *tls.Certificate // pair.Certificate, or a copy with a staple
	// stopStaple ends the OCSP stapler of pair (nil without one).
	stopStaple context.CancelFunc
	// failedCert, failedKey and failedErr are the contents refused last
	// and why, so a burst of events for one bad file logs once.
	failedCert, failedKey []byte
	failedErr             string
}

// New loads every pair and starts the background work (ticket key
// rotation, OCSP stapling, file watching) that Close stops. It fails,
// naming each file and reason, when any pair is invalid.
func New(opts Options) (*Manager, error) {
	s, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		log:        opts.Logger,
		tickets:    newTicketKeys(time.Now()),
		stop:       make(chan struct{}),
		ticketWake: make(chan struct{}, 1),
		watchWake:  make(chan struct{}, 1),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.ocspClient = &http.Client{
		Timeout:   orDefault(opts.OCSPTimeout, 10*time.Second),
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true},
	}
	m.mu.Lock()
	m.apply(s)
	m.mu.Unlock()
	if err := m.startACME(opts.ACME); err != nil {
		m.Close()
		return nil, err
	}
	m.wg.Add(1)
	go m.rotateTickets()
	if opts.Watch {
		w, err := m.newWatcher()
		if err != nil {
			m.Close()
			return nil, err
		}
		m.wg.Add(1)
		go m.watch(w)
	}
	return m, nil
}

// Update replaces the served pairs and the policy (default, strict SNI,
// minimum version, client certificates, OCSP) with those of opts, for a
// configuration reload: the configs handed out by TLSConfig serve the new
// settings from the next handshake on, and keep their session ticket
// keys; pairs whose files did not change keep their OCSP staples. Nothing
// changes when a pair of opts is invalid. Watch, Logger, OnChange,
// OnHandshake and OCSPTimeout keep the values New was given.
func (m *Manager) Update(opts Options) error {
	p, err := Prepare(opts)
	if err != nil {
		return err
	}
	return m.Apply(p)
}

// Prepared is an Update loaded and checked but not applied: the pairs and
// client CAs are read and valid, and no manager serves them yet.
type Prepared struct {
	s *settings
}

// Prepare loads and checks what Update(opts) would serve, changing
// nothing, for a reload that applies every part only once all are ready.
func Prepare(opts Options) (*Prepared, error) {
	s, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	return &Prepared{s: s}, nil
}

// Apply serves what Prepare loaded, as Update does. It fails only when
// the manager is closed, or p was applied already.
func (m *Manager) Apply(p *Prepared) error {
	m.mu.Lock()
	select {
	case <-m.stop:
		m.mu.Unlock()
		return errors.New("certs: manager closed")
	default:
	}
	s := p.s
	if s == nil {
		m.mu.Unlock()
		return errors.New("certs: prepared settings applied already")
	}
	p.s = nil
	s.opts.Watch, s.opts.Logger, s.opts.OnChange, s.opts.OnHandshake = m.opts.Watch, m.opts.Logger, m.opts.OnChange, m.opts.OnHandshake
	var old *acmeSource
	restart := !sameACME(m.opts.ACME, s.opts.ACME)
	m.carryOver(s)
	m.apply(s)
	if restart {
		old = m.acme.Load()
		if err := m.startACME(s.opts.ACME); err != nil {
			m.log.Error("acme settings not applied", "err", err.Error())
			old = nil
		}
	}
	for _, sc := range m.configs {
		sc.live.Store(m.buildConfig(sc.nextProtos))
	}
	onChange := m.opts.OnChange
	m.mu.Unlock()
	if old != nil {
		old.close()
	}
	m.kick(m.ticketWake)
	m.kick(m.watchWake)
	if onChange != nil {
		onChange()
	}
	return nil
}

// carryOver keeps the state of the pairs s loads unchanged (same files,
// same contents, same stapling setting): their OCSP staple and stapler go
// on, so a configuration reload neither drops staples nor queries the
// responders again. The staplers of the other pairs stop. m.mu is held.
func (m *Manager) carryOver(s *settings) {
	old := make(map[PairFiles]*pairState, len(m.pairs))
	for _, ps := range m.pairs {
		old[ps.files] = ps
	}
	for i, ps := range s.pairs {
		o := old[ps.files]
		if o != nil && o.pair.sameFiles(ps.pair.certPEM, ps.pair.keyPEM) && s.opts.OCSPStapling == m.opts.OCSPStapling {
			s.pairs[i] = o
			delete(old, ps.files)
		}
	}
	for _, o := range old {
		m.stopStapler(o)
	}
}

// prepare loads and checks everything opts name.
func prepare(opts Options) (*settings, error) {
	if len(opts.Certificates) == 0 && opts.ACME == nil {
		return nil, errors.New("certs: no certificate configured")
	}
	s := &settings{opts: opts, minVersion: opts.MinVersion}
	if s.minVersion == 0 {
		s.minVersion = tls.VersionTLS12
	}
	if s.minVersion != tls.VersionTLS12 && s.minVersion != tls.VersionTLS13 {
		return nil, fmt.Errorf("certs: unsupported minimum TLS version %#x", s.minVersion)
	}
	var errs []error
	now := time.Now()
	for _, f := range opts.Certificates {
		p, err := LoadPair(f.CertFile, f.KeyFile, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.pairs = append(s.pairs, &pairState{files: f, pair: p, served: p.Certificate})
	}
	if opts.ACME != nil {
		if err := checkACMEOptions(*opts.ACME); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var err error
	if s.def, err = resolveDefault(opts, s.pairs); err != nil {
		return nil, err
	}
	if ca := opts.ClientAuth; ca != nil {
		if s.clientAuth, err = tlsClientAuth(ca.Mode); err != nil {
			return nil, err
		}
		if s.clientCAs, err = LoadClientCAs(ca.CAFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// apply makes s current: it publishes the table and starts the OCSP
// staplers. m.mu is held.
func (m *Manager) apply(s *settings) {
	m.settings = *s
	m.rotation.Store(int64(orDefault(s.opts.TicketKeyRotation, DefaultTicketKeyRotation)))
	m.publish()
	if s.opts.OCSPStapling {
		for _, ps := range m.pairs {
			m.startStapler(ps)
		}
	}
}

// resolveDefault returns the index of the default pair, -1 for strict
// SNI.
func resolveDefault(opts Options, pairs []*pairState) (int, error) {
	switch {
	case opts.StrictSNI && opts.Default != "":
		return 0, errors.New("certs: a default certificate and strict SNI exclude each other")
	case opts.StrictSNI:
		return -1, nil
	case opts.Default == "" && len(pairs) == 0:
		return -1, nil
	case opts.Default == "":
		return 0, nil
	}
	if i := DefaultIndex(opts.Default, loadedPairs(pairs)); i >= 0 {
		return i, nil
	}
	return 0, fmt.Errorf("certs: default certificate %q is neither a configured cert_file nor a name one of them covers", opts.Default)
}

func loadedPairs(ps []*pairState) []*Pair {
	out := make([]*Pair, len(ps))
	for i, p := range ps {
		out[i] = p.pair
	}
	return out
}

// DefaultIndex returns the index of the pair a default_certificate value
// designates: the pair loaded from that cert file, else the first pair
// whose SANs cover that name (exactly, else by wildcard); -1 for none.
func DefaultIndex(def string, pairs []*Pair) int {
	for i, p := range pairs {
		if filepath.Clean(p.CertFile) == filepath.Clean(def) {
			return i
		}
	}
	t := buildTable(pairs, nil, -1)
	if a, err := netip.ParseAddr(def); err == nil {
		if i, ok := t.ips[a.Unmap()]; ok {
			return i
		}
		return -1
	}
	return t.lookup(def, nil)
}

// publish builds and swaps in the table of what is served now. m.mu is
// held.
func (m *Manager) publish() {
	pairs := make([]*Pair, len(m.pairs))
	served := make([]*tls.Certificate, len(m.pairs))
	for i, ps := range m.pairs {
		pairs[i], served[i] = ps.pair, ps.served
	}
	m.tab.Store(buildTable(pairs, served, m.def))
}

// GetCertificate selects the certificate for a handshake: the pair that
// names the SNI exactly, else one whose "*." SAN covers it, else (no SNI)
// one whose IP SAN is the address the client dialled, else the ACME
// certificate of an ACME host (waiting, at start, for the first attempt
// to get it), else the default.
// With strict SNI and no match it fails the handshake, logging the name
// (at most once a second). It takes no lock and allocates nothing on
// success; it is tls.Config.GetCertificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := m.tab.Load()
	i := t.lookup(hello.ServerName, localAddr(hello))
	if i < 0 {
		if a := m.acme.Load(); a != nil && a.covers(hello.ServerName) {
			return a.getCertificate(hello)
		}
		i = t.def
	}
	if i < 0 {
		return nil, m.noCertificate(hello)
	}
	return t.certs[i], nil
}

// ErrNoCertificate is returned (wrapped) for a handshake refused by
// strict SNI.
var ErrNoCertificate = errors.New("no certificate for this server name (strict_sni)")

func (m *Manager) noCertificate(hello *tls.ClientHelloInfo) error {
	now := time.Now().Unix()
	if last := m.lastStrictLog.Load(); now > last && m.lastStrictLog.CompareAndSwap(last, now) {
		attrs := []any{"sni", hello.ServerName, "reason", "no certificate for this name and strict_sni is on"}
		if hello.Conn != nil {
			attrs = append(attrs, "client", hello.Conn.RemoteAddr().String())
		}
		m.log.Warn("tls handshake refused", attrs...)
	}
	return fmt.Errorf("certs: %q: %w", hello.ServerName, ErrNoCertificate)
}

// CertInfo describes one served certificate, e.g. for the
// rustygate_tls_certificate_expiry_timestamp_seconds gauge.
type CertInfo struct {
	// CertFile and KeyFile name the pair's files (empty for ACME).
	CertFile, KeyFile string
	// ACME marks a certificate obtained from the ACME CA.
	ACME bool
	// Name is the first DNS SAN, else the first IP SAN.
	Name string
	// Names are all the DNS and IP SANs.
	Names []string
	// Serial is the leaf's serial number in hex.
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	// OCSPStapled reports whether a good OCSP response is stapled now.
	OCSPStapled bool
}

// Certificates describes the certificates served now: the pairs in
// configuration order, then the ACME certificates by host.
func (m *Manager) Certificates() []CertInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tab.Load()
	out := make([]CertInfo, len(m.pairs))
	for i, ps := range m.pairs {
		p := ps.pair
		names := slices.Clone(p.DNSNames)
		for _, a := range p.IPs {
			names = append(names, a.String())
		}
		out[i] = CertInfo{
			CertFile: p.CertFile, KeyFile: p.KeyFile,
			Name: names[0], Names: names,
			Serial:      p.Leaf().SerialNumber.Text(16),
			NotBefore:   p.Leaf().NotBefore,
			NotAfter:    p.Leaf().NotAfter,
			OCSPStapled: len(t.certs[i].OCSPStaple) > 0,
		}
	}
	if a := m.acme.Load(); a != nil {
		out = append(out, a.certificates()...)
	}
	return out
}

// Close stops the background work (rotation, stapling, watching). The
// configs handed out keep serving the last certificates.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.stop)
		for _, ps := range m.pairs {
			m.stopStapler(ps)
		}
		a := m.acme.Swap(nil)
		m.mu.Unlock()
		if a != nil {
			a.close()
		}
		m.wg.Wait()
	})
	return nil
}

// kick wakes a background goroutine without blocking.
func (m *Manager) kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
