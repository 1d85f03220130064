package config

import (
	"errors"
	"fmt"
	"strings"
)

// BackendTLS is the `tls` section of a route or of one of its backends:
// how the proxy speaks TLS to https:// backends. The proxy verifies the
// backend's certificate unless InsecureSkipVerify is set.
type BackendTLS struct {
	// CAFile holds the PEM certificates of the CAs the backends'
	// certificates must chain to. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is sent as SNI and verified against the backend's
	// certificate. Default: the host of the backend URL.
	ServerName string `yaml:"server_name"`
	// ClientCertFile and ClientKeyFile are the certificate chain and key
	// presented to backends that ask for one (mutual TLS). Both or
	// neither.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// InsecureSkipVerify accepts any certificate the backend presents.
	// Default false; a warning is logged at every load that sets it.
	InsecureSkipVerify *bool `yaml:"insecure_skip_verify"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// SkipVerify reports whether certificate verification is off.
func (t *BackendTLS) SkipVerify() bool {
	return t != nil && t.InsecureSkipVerify != nil && *t.InsecureSkipVerify
}

// TLSFor returns the TLS settings of route r's backend b: the route's
// `tls` with the fields b's own `tls` sets replacing the route's. It is
// nil for an http:// backend. The defaults are applied.
func (r *Route) TLSFor(b *Backend) *BackendTLS {
	if !strings.HasPrefix(b.URL, "https://") {
		return nil
	}
	out := BackendTLS{}
	for _, t := range []*BackendTLS{r.TLS, b.TLS} {
		if t == nil {
			continue
		}
		mergeString(&out.CAFile, t.CAFile)
		mergeString(&out.ServerName, t.ServerName)
		mergeString(&out.ClientCertFile, t.ClientCertFile)
		mergeString(&out.ClientKeyFile, t.ClientKeyFile)
		mergeString(&out.MinVersion, t.MinVersion)
		if t.InsecureSkipVerify != nil {
			out.InsecureSkipVerify = t.InsecureSkipVerify
		}
	}
	setString(&out.MinVersion, defaultTLSMinVersion)
	return &out
}

func mergeString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// validateBackendTLS checks the `tls` sections of route r, at path p,
// and the files they name when a TLSFileChecker is registered. A client
// certificate pair is checked as each https:// backend uses it (route and
// backend fields merged), once.
func validateBackendTLS(r *Route, p string, st *vstate) {
	anyHTTPS := false
	pairs := map[[2]string]bool{}
	for j := range r.Backends {
		b := &r.Backends[j]
		https := strings.HasPrefix(b.URL, "https://")
		anyHTTPS = anyHTTPS || https
		bp := fmt.Sprintf("%s.backends[%d].tls", p, j)
		if b.TLS != nil && !https {
			st.add(bp, "applies only to https:// backends (url is %q)", b.URL)
			continue
		}
		if b.TLS != nil {
			checkBackendTLS(b.TLS, bp, st)
		}
		if eff := r.TLSFor(b); eff != nil {
			pair := [2]string{eff.ClientCertFile, eff.ClientKeyFile}
			if !pairs[pair] {
				pairs[pair] = true
				checkBackendTLSPair(eff, r.TLS, b.TLS, p+".tls", bp, st)
			}
		}
	}
	if r.TLS == nil {
		return
	}
	if !anyHTTPS && len(r.Backends) > 0 {
		st.add(p+".tls", "applies only to https:// backends, and the route has none")
		return
	}
	checkBackendTLS(r.TLS, p+".tls", st)
}

// checkBackendTLS checks the fields of one section, files included.
func checkBackendTLS(t *BackendTLS, p string, st *vstate) {
	if t.MinVersion != "" && !oneOf(t.MinVersion, TLSVersion12, TLSVersion13) {
		st.add(p+".min_version", "unsupported version %q (supported: %s, %s)", t.MinVersion, TLSVersion12, TLSVersion13)
	}
	if n := t.ServerName; n != "" && !validHostname(asciiLower(n), false) && !validIP(n) {
		st.add(p+".server_name", "invalid server name %q (want a host name or an IP address)", n)
	}
	if t.SkipVerify() && t.CAFile != "" {
		st.add(p+".insecure_skip_verify", "contradicts ca_file %q: nothing is verified (drop one of them)", t.CAFile)
	}
	checker := currentTLSFileChecker()
	if t.CAFile != "" && checkFileName(st, p+".ca_file", t.CAFile) && checker != nil {
		if err := checker.CheckCAFile(t.CAFile); err != nil {
			st.add(p+".ca_file", "%s", err.Error())
		}
	}
}

// checkBackendTLSPair checks the client certificate of the effective
// settings eff, reporting at the section that names each file: the
// backend's (bt at bp) or the route's (rt at rp).
func checkBackendTLSPair(eff, rt, bt *BackendTLS, rp, bp string, st *vstate) {
	where := func(field string, set func(*BackendTLS) string) string {
		if bt != nil && set(bt) != "" {
			return bp + "." + field
		}
		if rt != nil && set(rt) != "" {
			return rp + "." + field
		}
		if bt != nil {
			return bp
		}
		return rp
	}
	certAt := where("client_cert_file", func(t *BackendTLS) string { return t.ClientCertFile })
	keyAt := where("client_key_file", func(t *BackendTLS) string { return t.ClientKeyFile })
	switch {
	case eff.ClientCertFile == "" && eff.ClientKeyFile == "":
		return
	case eff.ClientKeyFile == "":
		st.add(certAt, "client_key_file is required with client_cert_file")
		return
	case eff.ClientCertFile == "":
		st.add(keyAt, "client_cert_file is required with client_key_file")
		return
	}
	ok := checkFileName(st, certAt, eff.ClientCertFile)
	if !checkFileName(st, keyAt, eff.ClientKeyFile) || !ok {
		return
	}
	checker := currentTLSFileChecker()
	if checker == nil {
		return
	}
	if err := checker.CheckClientPair(eff.ClientCertFile, eff.ClientKeyFile); err != nil {
		at := certAt
		var ff interface{ FaultyFile() string }
		if errors.As(err, &ff) && ff.FaultyFile() == eff.ClientKeyFile && eff.ClientKeyFile != eff.ClientCertFile {
			at = keyAt
		}
		st.add(at, "%s", err.Error())
	}
}
