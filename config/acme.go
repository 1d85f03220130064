package config

import (
	"errors"
	"io/fs"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Values of server.tls.acme.ca besides a directory URL, and of
// server.tls.acme.challenges.
const (
	ACMEProduction     = "production" // Let's Encrypt
	ACMEStaging        = "staging"    // Let's Encrypt's staging environment
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	// defaultACMEStorage is the storage directory when XDG_DATA_HOME is
	// not set.
	defaultACMEStorage = "/var/lib/rustygate/acme"
)

// ACMEConfig is server.tls.acme: certificates obtained and renewed
// automatically from an ACME CA (Let's Encrypt by default) for the hosts
// no certificate file covers.
type ACMEConfig struct {
	// Email is the ACME account's contact address, for the CA's expiry
	// and policy notices (optional, recommended).
	Email string `yaml:"email"`
	// CA is the ACME directory URL, or "production" (default) or
	// "staging" for Let's Encrypt's.
	CA string `yaml:"ca"`
	// Storage is the directory of the account, keys, certificates and
	// locks; gateways sharing it share certificates. Default
	// $XDG_DATA_HOME/rustygate/acme, else /var/lib/rustygate/acme.
	Storage string `yaml:"storage"`
	// Challenges are the validation methods offered to the CA: http-01
	// (port 80) and tls-alpn-01 (port 443). Default both.
	Challenges []string `yaml:"challenges"`
	// Hosts are the names to obtain certificates for. Default: every
	// exact (non-wildcard) route host.
	Hosts []string `yaml:"hosts"`
	// CARoot is a PEM file of the roots trusted for the CA's HTTPS
	// directory, for a private or test CA (default: the system roots).
	CARoot string `yaml:"ca_root"`
}

// acmeDefaults fills the defaults of server.tls.acme, when present.
func acmeDefaults(c *Config) {
	a := c.Server.TLS.ACME
	if a == nil {
		return
	}
	setString(&a.CA, ACMEProduction)
	if a.Storage == "" {
		a.Storage = defaultACMEStorage
		if x := os.Getenv("XDG_DATA_HOME"); x != "" {
			a.Storage = filepath.Join(x, "rustygate", "acme")
		}
	}
	if a.Challenges == nil {
		a.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	if a.Hosts == nil {
		a.Hosts = routeHosts(c.Routes)
	}
}

// routeHosts returns the exact hosts of routes, lower-cased, once each.
func routeHosts(routes []Route) []string {
	var hosts []string
	seen := make(map[string]bool)
	for _, r := range routes {
		h := asciiLower(r.Host)
		if h == "" || strings.HasPrefix(h, "*.") || validIP(h) || seen[h] {
			continue
		}
		seen[h] = true
		hosts = append(hosts, h)
	}
	return hosts
}

// validateACME checks server.tls.acme.
func validateACME(a *ACMEConfig, p string, checker TLSFileChecker, st *vstate) {
	if a.Email != "" {
		if msg := checkEmail(a.Email); msg != "" {
			st.add(p+".email", "%q %s", a.Email, msg)
		}
	}
	if a.CA != ACMEProduction && a.CA != ACMEStaging {
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			st.add(p+".ca", "%q is neither %s, %s nor an https:// ACME directory URL", a.CA, ACMEProduction, ACMEStaging)
		}
	}
	if checkFileName(st, p+".storage", a.Storage) {
		if err := dirCreatable(a.Storage); err != nil {
			st.add(p+".storage", "%v", err)
		}
	}
	checkChallenges(a.Challenges, p+".challenges", st)
	checkACMEHosts(a.Hosts, p+".hosts", st)
	if a.CARoot != "" && checkFileName(st, p+".ca_root", a.CARoot) && checker != nil {
		if err := checker.CheckCAFile(a.CARoot); err != nil {
			st.add(p+".ca_root", "%s", err.Error())
		}
	}
}

// checkEmail returns what is wrong with an account address ("" when
// nothing).
func checkEmail(e string) string {
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" {
		return "is not an email address (user@example.com)"
	}
	_, domain, _ := strings.Cut(e, "@")
	if !strings.Contains(domain, ".") || !validHostname(asciiLower(domain), false) {
		return "has no valid domain"
	}
	return ""
}

func checkChallenges(cs []string, p string, st *vstate) {
	if len(cs) == 0 {
		st.add(p, "at least one challenge is required (%s, %s)", ChallengeHTTP01, ChallengeTLSALPN01)
	}
	seen := make(map[string]bool)
	for _, c := range cs {
		switch {
		case c != ChallengeHTTP01 && c != ChallengeTLSALPN01:
			st.add(p, "unknown challenge %q (supported: %s, %s)", c, ChallengeHTTP01, ChallengeTLSALPN01)
		case seen[c]:
			st.add(p, "%q is listed twice", c)
		}
		seen[c] = true
	}
}

func checkACMEHosts(hosts []string, p string, st *vstate) {
	if len(hosts) == 0 {
		st.add(p, "no host to obtain a certificate for: list hosts, or give routes an exact host")
	}
	for _, h := range hosts {
		switch l := asciiLower(h); {
		case strings.HasPrefix(l, "*."):
			st.add(p, "%q: a wildcard needs the dns-01 challenge, which is not supported; use a certificate file", h)
		case validIP(h):
			st.add(p, "%q: ACME certificates are for host names, not IP addresses", h)
		case !validHostname(l, false) || !strings.Contains(l, "."):
			st.add(p, "%q is not a fully qualified host name", h)
		}
	}
}

// dirCreatable reports why dir cannot be used as a storage directory:
// it, or its nearest existing parent, must be a writable directory.
// Nothing is created.
func dirCreatable(dir string) error {
	d := filepath.Clean(dir)
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return errors.New(d + " is not a directory")
			}
			f, err := os.CreateTemp(d, ".rustygate-check-*")
			if err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				if d != filepath.Clean(dir) {
					return errors.New("cannot create " + dir + " in " + d + ": " + err.Error())
				}
				return errors.New(d + " is not writable: " + err.Error())
			}
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return err
		}
		d = parent
	}
}
