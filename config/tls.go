package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Values of server.tls.min_version and client_auth.mode.
const (
	TLSVersion12      = "1.2"
	TLSVersion13      = "1.3"
	ClientAuthRequire = "require"
	// ClientAuthOptional verifies a certificate when the client sends one.
	ClientAuthOptional = "optional"
)

// TLS defaults and limits.
const (
	defaultTLSMinVersion     = TLSVersion12
	defaultTicketKeyRotation = Duration(12 * time.Hour)
	minTicketKeyRotation     = Duration(time.Minute)
	// maxTicketKeyRotation is crypto/tls's ticket lifetime: a key kept
	// longer protects sessions no client may resume anyway.
	maxTicketKeyRotation  = Duration(7 * 24 * time.Hour)
	defaultClientAuthMode = ClientAuthRequire
	// defaultTLSListen is the HTTPS listener's address, beside the plain
	// server.listen (":8080"), as 443 is beside 80.
	defaultTLSListen = ":8443"
	// Default names of the headers that carry a verified client
	// certificate to the backends.
	DefaultClientSubjectHeader = "X-Client-Cert-Subject"
	DefaultClientSANHeader     = "X-Client-Cert-SAN"
)

// TLSConfig is server.tls: the HTTPS listener, beside the plain one.
type TLSConfig struct {
	// Listen is the address of the HTTPS listener (default ":8443");
	// server.listen stays the plain HTTP listener.
	Listen string `yaml:"listen"`
	// Certificates are the PEM certificate chains and keys served,
	// selected by SNI from their SANs (exact names, "*." wildcards).
	Certificates []TLSCertificate `yaml:"certificates"`
	// DefaultCertificate serves handshakes whose SNI matches no
	// certificate, or that send none: a cert_file of Certificates or a
	// host name one of them covers. Default: the first certificate,
	// unless StrictSNI.
	DefaultCertificate string `yaml:"default_certificate"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// StrictSNI fails the handshakes DefaultCertificate would serve.
	StrictSNI bool `yaml:"strict_sni"`
	// TicketKeyRotation is how often a new session ticket key is made;
	// the two previous keys still resume sessions. Default 12h.
	TicketKeyRotation Duration `yaml:"ticket_key_rotation"`
	// OCSPStapling staples OCSP responses for certificates that name a
	// responder. Default true.
	OCSPStapling *bool `yaml:"ocsp_stapling"`
	// ClientAuth asks clients for certificates.
	ClientAuth *ClientAuth `yaml:"client_auth"`
	// ACME obtains certificates automatically for the hosts Certificates
	// do not cover.
	ACME *ACMEConfig `yaml:"acme"`
	// HTTP3 also serves HTTP/3 (QUIC) on the UDP port of Listen, with
	// the same certificates, and advertises it with Alt-Svc on the
	// HTTP/1.1 and HTTP/2 responses of this listener. 0-RTT is refused.
	HTTP3 bool `yaml:"http3"`
}

// TLSCertificate is one certificate chain and its key.
type TLSCertificate struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ClientAuth asks TLS clients for a certificate.
type ClientAuth struct {
	// CAFile holds the PEM certificates of the CAs that issue accepted
	// client certificates (required).
	CAFile string `yaml:"ca_file"`
	// Mode is "require" (default: the handshake fails without a valid
	// certificate) or "optional" (a certificate is verified when given).
	Mode string `yaml:"mode"`
	// SubjectHeader and SANHeader name the request headers that carry the
	// verified certificate's subject and SANs to the backends (defaults
	// X-Client-Cert-Subject, X-Client-Cert-SAN). Headers of these names
	// sent by clients are removed on every listener.
	SubjectHeader string `yaml:"subject_header"`
	SANHeader     string `yaml:"san_header"`
}

// OCSPEnabled reports whether OCSP stapling is on (default true).
func (t *TLSConfig) OCSPEnabled() bool { return t.OCSPStapling == nil || *t.OCSPStapling }

// TLSFileChecker checks the files server.tls names. config imports no
// TLS code; the certs package registers its checker with
// SetTLSFileChecker, so every program that links certs (the gateway)
// checks the files when it loads or validates a configuration.
type TLSFileChecker interface {
	// CheckPair loads a certificate and its key and returns the DNS
	// names and IP addresses the certificate is valid for, or why the
	// pair cannot serve (unreadable, no certificate, mismatched key,
	// expired or not yet valid, no SANs). An error with a FaultyFile()
	// string method names the file at fault.
	CheckPair(certFile, keyFile string) ([]string, error)
	// CheckCAFile checks a file of PEM CA certificates.
	CheckCAFile(file string) error
	// CheckClientPair loads a client certificate and its key, as a
	// backend's `tls` names them: readable, matching, valid now (SANs
	// are not required). An error with FaultyFile() names the file.
	CheckClientPair(certFile, keyFile string) error
}

var tlsFileChecker atomic.Pointer[TLSFileChecker]

// SetTLSFileChecker registers the checker validation runs on the files
// server.tls names (nil: the files are not read).
func SetTLSFileChecker(c TLSFileChecker) {
	if c == nil {
		tlsFileChecker.Store(nil)
		return
	}
	tlsFileChecker.Store(&c)
}

func currentTLSFileChecker() TLSFileChecker {
	if p := tlsFileChecker.Load(); p != nil {
		return *p
	}
	return nil
}

// tlsDefaults fills the defaults of server.tls, when present.
func tlsDefaults(c *Config, unset func(string) bool) {
	for i := range c.Routes {
		if ca := c.Routes[i].ClientAuth; ca != nil {
			setString(&ca.Mode, ClientAuthRequire)
		}
	}
	t := c.Server.TLS
	if t == nil {
		return
	}
	setString(&t.Listen, defaultTLSListen)
	setString(&t.MinVersion, defaultTLSMinVersion)
	setDuration(&t.TicketKeyRotation, defaultTicketKeyRotation, unset("server.tls.ticket_key_rotation"))
	if t.OCSPStapling == nil {
		t.OCSPStapling = ptr(true)
	}
	if t.ClientAuth != nil {
		setString(&t.ClientAuth.Mode, defaultClientAuthMode)
		setString(&t.ClientAuth.SubjectHeader, DefaultClientSubjectHeader)
		setString(&t.ClientAuth.SANHeader, DefaultClientSANHeader)
	}
	acmeDefaults(c)
}

// validateTLS checks server.tls, including the files it names when a
// TLSFileChecker is registered.
func validateTLS(c *Config, st *vstate) {
	validateRouteClientAuth(c, st)
	t := c.Server.TLS
	if t == nil {
		if c.Server.RedirectHTTPS {
			st.add("server.redirect_https", "needs server.tls: the redirect sends clients to its listener")
		}
		return
	}
	const p = "server.tls"
	checkTLSListen(c, st)
	if !oneOf(t.MinVersion, TLSVersion12, TLSVersion13) {
		st.add(p+".min_version", "unsupported version %q (supported: %s, %s)", t.MinVersion, TLSVersion12, TLSVersion13)
	}
	if t.TicketKeyRotation < minTicketKeyRotation || t.TicketKeyRotation > maxTicketKeyRotation {
		st.add(p+".ticket_key_rotation", "must be between %s and %s (got %s)", minTicketKeyRotation, maxTicketKeyRotation, t.TicketKeyRotation)
	}
	checker := currentTLSFileChecker()
	names := checkTLSCertificates(t, p, checker, st)
	checkDefaultCertificate(t, p, names, checker != nil, st)
	if ca := t.ClientAuth; ca != nil {
		checkClientAuth(ca, p+".client_auth", checker, st)
	}
	if a := t.ACME; a != nil {
		validateACME(a, p+".acme", checker, st)
	}
}

// checkTLSCertificates checks each certificate entry and returns, per
// entry, the names its certificate covers (nil when unknown).
func checkTLSCertificates(t *TLSConfig, p string, checker TLSFileChecker, st *vstate) [][]string {
	if len(t.Certificates) == 0 && t.ACME == nil {
		st.add(p+".certificates", "at least one certificate is required (or acme)")
	}
	names := make([][]string, len(t.Certificates))
	seen := make(map[string]int)
	for i, cert := range t.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, i)
		ok := checkFileName(st, cp+".cert_file", cert.CertFile)
		ok = checkFileName(st, cp+".key_file", cert.KeyFile) && ok
		if !ok {
			continue
		}
		if first, dup := seen[filepath.Clean(cert.CertFile)]; dup {
			st.add(cp+".cert_file", "duplicate certificate %q (also certificates[%d])", cert.CertFile, first)
			continue
		}
		seen[filepath.Clean(cert.CertFile)] = i
		if checker == nil {
			continue
		}
		n, err := checker.CheckPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			field := ".cert_file"
			var ff interface{ FaultyFile() string }
			if errors.As(err, &ff) && ff.FaultyFile() == cert.KeyFile && cert.KeyFile != cert.CertFile {
				field = ".key_file"
			}
			st.add(cp+field, "%s", err.Error())
			continue
		}
		names[i] = n
	}
	return names
}

func checkFileName(st *vstate, path, file string) bool {
	switch {
	case file == "":
		st.add(path, "is required")
	case strings.ContainsFunc(file, isControl):
		st.add(path, "must not contain control characters")
	default:
		return true
	}
	return false
}

// checkDefaultCertificate checks that default_certificate designates a
// configured certificate, by cert_file or by a name one covers.
func checkDefaultCertificate(t *TLSConfig, p string, names [][]string, checked bool, st *vstate) {
	def := t.DefaultCertificate
	if def == "" {
		return
	}
	if t.StrictSNI {
		st.add(p+".strict_sni", "set only one of strict_sni and default_certificate (strict_sni fails the handshakes the default certificate would serve)")
		return
	}
	for _, c := range t.Certificates {
		if c.CertFile != "" && filepath.Clean(c.CertFile) == filepath.Clean(def) {
			return
		}
	}
	if !checked {
		if !validHostname(asciiLower(def), false) && !validIP(def) {
			st.add(p+".default_certificate", "%q is neither a cert_file of server.tls.certificates nor a host name", def)
		}
		return
	}
	for _, n := range names {
		if coversName(n, asciiLower(def)) {
			return
		}
	}
	st.add(p+".default_certificate", "%q is neither a cert_file of server.tls.certificates nor a name one of their certificates covers", def)
}

// coversName reports whether SANs (DNS names, "*." wildcards of one
// label, IP addresses) cover name.
func coversName(sans []string, name string) bool {
	for _, s := range sans {
		s = asciiLower(s)
		if s == name {
			return true
		}
		if parent, ok := strings.CutPrefix(s, "*."); ok {
			if i := strings.IndexByte(name, '.'); i > 0 && name[i+1:] == parent {
				return true
			}
		}
	}
	return false
}

func checkClientAuth(ca *ClientAuth, p string, checker TLSFileChecker, st *vstate) {
	if !oneOf(ca.Mode, ClientAuthRequire, ClientAuthOptional) {
		st.add(p+".mode", "unknown mode %q (supported: %s, %s)", ca.Mode, ClientAuthRequire, ClientAuthOptional)
	}
	for _, h := range [][2]string{{".subject_header", ca.SubjectHeader}, {".san_header", ca.SANHeader}} {
		if !isToken(h[1]) || strings.ContainsRune(h[1], '_') {
			st.add(p+h[0], "%q is not a header name (letters, digits and '-')", h[1])
		}
	}
	if ca.SubjectHeader != "" && strings.EqualFold(ca.SubjectHeader, ca.SANHeader) {
		st.add(p+".san_header", "must differ from subject_header")
	}
	if !checkFileName(st, p+".ca_file", ca.CAFile) || checker == nil {
		return
	}
	if err := checker.CheckCAFile(ca.CAFile); err != nil {
		st.add(p+".ca_file", "%s", err.Error())
	}
}

// checkTLSListen checks server.tls.listen: a valid address that no other
// listener of the server section uses.
func checkTLSListen(c *Config, st *vstate) {
	a := c.Server.TLS.Listen
	if msg := checkListen(a); msg != "" {
		st.add("server.tls.listen", "%s", msg)
		return
	}
	for _, o := range [][2]string{{"server.listen", c.Server.Listen}, {"admin.listen", c.Admin.Listen}} {
		if o[1] != AdminOff && checkListen(o[1]) == "" && sameListener(a, o[1]) {
			_, port, _ := net.SplitHostPort(a)
			st.add("server.tls.listen", "must differ from %s (both use port %s)", o[0], port)
		}
	}
}

// validateRouteClientAuth checks routes[].client_auth: a route can only
// require the certificates server.tls.client_auth asks clients for.
func validateRouteClientAuth(c *Config, st *vstate) {
	for i := range c.Routes {
		ca := c.Routes[i].ClientAuth
		if ca == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].client_auth", i)
		if ca.Mode != ClientAuthRequire {
			st.add(p+".mode", "unknown mode %q (supported: %s)", ca.Mode, ClientAuthRequire)
		}
		if c.Server.TLS == nil || c.Server.TLS.ClientAuth == nil {
			st.add(p, "needs server.tls.client_auth (mode optional) so that clients are asked for a certificate")
		}
	}
}
