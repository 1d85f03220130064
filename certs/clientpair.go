package certs

import (
	"crypto/tls"
	"time"
)

// LoadClientPair reads and validates the certificate chain and key the
// proxy presents to backends that ask for a client certificate (mutual
// TLS). As LoadPair, but the certificate need not name SANs: client
// certificates are often identified by their subject alone. Failures are
// *PairError.
func LoadClientPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, keyPEM, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
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
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// CheckClientPair loads a client certificate and its key now.
func (Checker) CheckClientPair(certFile, keyFile string) error {
	_, err := LoadClientPair(certFile, keyFile, time.Now())
	return err
}
