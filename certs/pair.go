package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Reasons a certificate and key pair is refused. They are stable and
// short: fit for a log attribute or a metric label.
const (
	ReasonUnreadable     = "unreadable"
	ReasonNoCertificate  = "no certificate"
	ReasonBadCertificate = "invalid certificate"
	ReasonNoKey          = "no private key"
	ReasonBadKey         = "invalid private key"
	ReasonKeyMismatch    = "key does not match certificate"
	ReasonExpired        = "expired"
	ReasonNotYetValid    = "not yet valid"
	ReasonNoSANs         = "no subject alternative names"
)

// PairError says why a certificate and key pair was refused.
type PairError struct {
	// File is the file at fault: the certificate or the key file.
	File string
	// Reason is one of the Reason constants.
	Reason string
	// Detail adds what the reason alone does not say (a date, a parser
	// message); it may be empty.
	Detail string
}

// Error formats the problem as "FILE: REASON (DETAIL)".
func (e *PairError) Error() string {
	if e.Detail == "" {
		return e.File + ": " + e.Reason
	}
	return e.File + ": " + e.Reason + " (" + e.Detail + ")"
}

// FaultyFile returns the file at fault; config uses it to point at the
// cert_file or the key_file key.
func (e *PairError) FaultyFile() string { return e.File }

// Pair is one loaded, validated certificate and key.
type Pair struct {
	CertFile, KeyFile string
	// Certificate is the chain and key as crypto/tls serves them, with
	// Leaf set. It is never modified: a stapled OCSP response goes on a
	// copy.
	Certificate *tls.Certificate
	// DNSNames are the leaf's DNS SANs, lower-cased ("*.example.com"
	// included as written).
	DNSNames []string
	// IPs are the leaf's IP SANs.
	IPs []netip.Addr

	certPEM, keyPEM []byte
}

// Leaf returns the certificate the chain starts with.
func (p *Pair) Leaf() *x509.Certificate { return p.Certificate.Leaf }

// sameFiles reports whether the pair was loaded from these contents.
func (p *Pair) sameFiles(certPEM, keyPEM []byte) bool {
	return bytes.Equal(p.certPEM, certPEM) && bytes.Equal(p.keyPEM, keyPEM)
}

// LoadPair reads and validates a PEM certificate chain and its private
// key. The certificate file holds the leaf first, then its
// intermediates; the key is PKCS#1 (RSA), SEC1 (ECDSA) or PKCS#8 (RSA,
// ECDSA, Ed25519). The pair must match, be valid at now and name at
// least one DNS or IP SAN. Failures are *PairError.
func LoadPair(certFile, keyFile string, now time.Time) (*Pair, error) {
	certPEM, keyPEM, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return ParsePair(certFile, certPEM, keyFile, keyPEM, now)
}

func readPair(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(certFile)
	if err != nil {
		return nil, nil, &PairError{File: certFile, Reason: ReasonUnreadable, Detail: pathErrDetail(err)}
	}
	keyPEM, err = os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, &PairError{File: keyFile, Reason: ReasonUnreadable, Detail: pathErrDetail(err)}
	}
	return certPEM, keyPEM, nil
}

// pathErrDetail drops the path from an *os.PathError: the file is named
// already.
func pathErrDetail(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ParsePair is LoadPair for contents already read; the file names are
// used in errors only.
func ParsePair(certFile string, certPEM []byte, keyFile string, keyPEM []byte, now time.Time) (*Pair, error) {
	chain, leaf, err := parseChain(certFile, certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyFile, keyPEM)
	if err != nil {
		return nil, err
	}
	if !keyMatches(key, leaf) {
		return nil, mismatch(certFile, keyFile, key, chain)
	}
	if err := checkValidity(certFile, leaf, now); err != nil {
		return nil, err
	}
	p := &Pair{
		CertFile:    certFile,
		KeyFile:     keyFile,
		Certificate: &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
		certPEM:     certPEM,
		keyPEM:      keyPEM,
	}
	for _, n := range leaf.DNSNames {
		p.DNSNames = append(p.DNSNames, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			p.IPs = append(p.IPs, a.Unmap())
		}
	}
	if len(p.DNSNames) == 0 && len(p.IPs) == 0 {
		return nil, &PairError{File: certFile, Reason: ReasonNoSANs, Detail: "clients ignore the common name; add DNS or IP SANs"}
	}
	return p, nil
}

func keyMatches(key crypto.Signer, c *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(c.PublicKey)
}

// mismatch explains a key that does not match the leaf, pointing out a
// chain written in the wrong order (the key matches a later certificate).
func mismatch(certFile, keyFile string, key crypto.Signer, chain [][]byte) error {
	e := &PairError{File: keyFile, Reason: ReasonKeyMismatch, Detail: "certificate " + certFile}
	for i, der := range chain[1:] {
		if c, err := x509.ParseCertificate(der); err == nil && keyMatches(key, c) {
			e.Detail = fmt.Sprintf("the key matches certificate %d of %s: the leaf must come first", i+2, certFile)
		}
	}
	return e
}

// parseChain returns the DER certificates of a PEM file, leaf first.
// Blocks other than CERTIFICATE (a key kept in the same file) are
// skipped.
func parseChain(file string, data []byte) ([][]byte, *x509.Certificate, error) {
	var chain [][]byte
	var leaf *x509.Certificate
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
			return nil, nil, &PairError{File: file, Reason: ReasonBadCertificate, Detail: fmt.Sprintf("certificate %d: %v", len(chain)+1, err)}
		}
		if leaf == nil {
			leaf = c
		}
		chain = append(chain, b.Bytes)
	}
	if leaf == nil {
		return nil, nil, &PairError{File: file, Reason: ReasonNoCertificate, Detail: "no PEM CERTIFICATE block"}
	}
	return chain, leaf, nil
}

// parseKey returns the first private key of a PEM file.
func parseKey(file string, data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		switch b.Type {
		case "ENCRYPTED PRIVATE KEY":
			return nil, &PairError{File: file, Reason: ReasonBadKey, Detail: "encrypted keys are not supported"}
		case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
			key, err := parseKeyDER(b.Type, b.Bytes)
			if err != nil {
				return nil, &PairError{File: file, Reason: ReasonBadKey, Detail: err.Error()}
			}
			return key, nil
		}
	}
	return nil, &PairError{File: file, Reason: ReasonNoKey, Detail: "no PEM PRIVATE KEY block"}
}

func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	var key any
	var err error
	switch typ {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	default:
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

func checkValidity(file string, leaf *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	switch {
	case now.After(leaf.NotAfter):
		return &PairError{File: file, Reason: ReasonExpired, Detail: "not after " + leaf.NotAfter.UTC().Format(layout)}
	case now.Before(leaf.NotBefore):
		return &PairError{File: file, Reason: ReasonNotYetValid, Detail: "not before " + leaf.NotBefore.UTC().Format(layout)}
	}
	return nil
}
