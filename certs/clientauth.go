package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// Client certificate modes (client_auth.mode).
const (
	// ClientAuthRequire fails the handshake of a client that presents no
	// certificate or one the CAs did not issue.
	ClientAuthRequire = "require"
	// ClientAuthOptional asks for a certificate and verifies it when one
	// is given; a client without one still connects (a route can then
	// refuse it).
	ClientAuthOptional = "optional"
)

// ClientAuth asks TLS clients for a certificate issued by the CAs of
// CAFile.
type ClientAuth struct {
	// CAFile holds the PEM certificates of the accepted issuing CAs.
	CAFile string
	// Mode is ClientAuthRequire (default) or ClientAuthOptional.
	Mode string
}

// tlsClientAuth returns the crypto/tls policy of a mode.
func tlsClientAuth(mode string) (tls.ClientAuthType, error) {
	switch mode {
	case ClientAuthRequire, "":
		return tls.RequireAndVerifyClientCert, nil
	case ClientAuthOptional:
		return tls.VerifyClientCertIfGiven, nil
	}
	return 0, fmt.Errorf("unknown client_auth mode %q (supported: %s, %s)", mode, ClientAuthRequire, ClientAuthOptional)
}

// LoadClientCAs reads the PEM CA certificates client certificates must
// chain to. A file without any certificate is an error.
func LoadClientCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %s (%s)", file, ReasonUnreadable, pathErrDetail(err))
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %s (certificate %d: %v)", file, ReasonBadCertificate, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: %s (no PEM CERTIFICATE block)", file, ReasonNoCertificate)
	}
	return pool, nil
}

// ClientCertificate returns the verified client certificate of a
// connection, or nil when the client sent none (or it was not verified).
func ClientCertificate(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// ClientSubject returns the subject of the verified client certificate
// as an RFC 2253 distinguished name ("CN=alice,O=Example"), safe to put
// in a header value; "" without a verified certificate.
func ClientSubject(cs *tls.ConnectionState) string {
	c := ClientCertificate(cs)
	if c == nil {
		return ""
	}
	return HeaderSafe(c.Subject.String())
}

// ClientSANs returns the SANs of the verified client certificate, each
// prefixed with its kind as OpenSSL prints them: "DNS:host",
// "IP:192.0.2.1", "email:a@example.com", "URI:spiffe://example/x". The
// values are safe to put in a header; nil without a verified
// certificate.
func ClientSANs(cs *tls.ConnectionState) []string {
	c := ClientCertificate(cs)
	if c == nil {
		return nil
	}
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, "DNS:"+HeaderSafe(n))
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+HeaderSafe(e))
	}
	for _, u := range c.URIs {
		out = append(out, "URI:"+HeaderSafe(u.String()))
	}
	return out
}

// ClientSANHeader joins ClientSANs with ", " for one header value.
func ClientSANHeader(cs *tls.ConnectionState) string {
	return strings.Join(ClientSANs(cs), ", ")
}

// HeaderSafe escapes what may not appear in a header value (control
// characters, DEL, bytes beyond ASCII) as \xHH,
// so a certificate field can never split or forge a header.
func HeaderSafe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, `\x%02X`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
