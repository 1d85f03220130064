package certs

import (
	"time"

	"github.com/rustygate/rustygate/config"
)

// Checker checks the files of server.tls for config validation: every
// program that links this package gets the checks in config.Load, so
// `rustygate validate` reports an unreadable, mismatched, expired or
// SAN-less pair at the config line that names it.
type Checker struct{}

func init() { config.SetTLSFileChecker(Checker{}) }

// CheckPair loads the pair now and returns the names it covers.
func (Checker) CheckPair(certFile, keyFile string) ([]string, error) {
	p, err := LoadPair(certFile, keyFile, time.Now())
	if err != nil {
		return nil, err
	}
	names := append([]string(nil), p.DNSNames...)
	for _, a := range p.IPs {
		names = append(names, a.String())
	}
	return names, nil
}

// CheckCAFile loads a file of CA certificates.
func (Checker) CheckCAFile(file string) error {
	_, err := LoadClientCAs(file)
	return err
}

// OptionsFromConfig turns a validated server.tls section into Options,
// with the files watched. The caller adds Logger and OnChange, and the
// ports the CA validates on (ACME.HTTPPort, ACME.TLSALPNPort) when the
// listeners are not on 80 and 443 themselves.
func OptionsFromConfig(t *config.TLSConfig) (Options, error) {
	v, err := ParseVersion(t.MinVersion)
	if err != nil {
		return Options{}, err
	}
	o := Options{
		Default:           t.DefaultCertificate,
		StrictSNI:         t.StrictSNI,
		MinVersion:        v,
		TicketKeyRotation: t.TicketKeyRotation.D(),
		OCSPStapling:      t.OCSPEnabled(),
		Watch:             true,
	}
	for _, c := range t.Certificates {
		o.Certificates = append(o.Certificates, PairFiles{CertFile: c.CertFile, KeyFile: c.KeyFile})
	}
	if ca := t.ClientAuth; ca != nil {
		o.ClientAuth = &ClientAuth{CAFile: ca.CAFile, Mode: ca.Mode}
	}
	if a := t.ACME; a != nil {
		o.ACME = &ACME{
			Hosts: a.Hosts, Email: a.Email, CA: ACMEDirectory(a.CA),
			Storage: a.Storage, Challenges: a.Challenges, CARootFile: a.CARoot,
		}
	}
	return o, nil
}

// ACMEDirectory resolves a server.tls.acme.ca value: "production" and
// "staging" name Let's Encrypt's directories, anything else is a URL.
func ACMEDirectory(ca string) string {
	switch ca {
	case "", config.ACMEProduction:
		return LetsEncryptProduction
	case config.ACMEStaging:
		return LetsEncryptStaging
	}
	return ca
}
