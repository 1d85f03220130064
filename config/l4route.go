package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// L4Route is a backend group of an l4 listener chosen by the server name
// (SNI) the client sends in its TLS ClientHello. The hello is read, not
// terminated: the client's TLS session is with the backend.
type L4Route struct {
	// Name identifies the route in logs and metrics. Default: its first
	// SNI entry.
	Name string `yaml:"name"`
	// SNI are the server names the route takes: exact names
	// ("db.example.com") or wildcards ("*.example.com": any name below
	// example.com, not example.com itself). Matching ignores case; an
	// exact name wins over a wildcard, a longer wildcard over a shorter.
	SNI []string `yaml:"sni"`
	// Backends are host:port addresses.
	Backends []L4Backend `yaml:"backends"`
	// Strategy picks among Backends. Default: the listener's strategy.
	Strategy string `yaml:"strategy"`
}

// L4TLS terminates TLS on an l4 listener with one certificate, served
// whatever the server name. The files are watched: a renewed pair serves
// new handshakes without a reload.
type L4TLS struct {
	// CertFile is a PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf.
	KeyFile string `yaml:"key_file"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// DefaultL4Route is the route label of an SNI listener's connections
// that no route takes and that go to the listener's own backends.
const DefaultL4Route = "default"

// l4RouteDefaults names unnamed routes after their first SNI entry,
// lower-cases the SNI entries and gives the routes the listener's
// strategy and backend weights; it also defaults tls.min_version.
func l4RouteDefaults(l *L4Listener, p string, unset func(string) bool) {
	if l.TLS != nil {
		setString(&l.TLS.MinVersion, defaultTLSMinVersion)
	}
	for i := range l.Routes {
		r := &l.Routes[i]
		rp := fmt.Sprintf("%s.routes[%d]", p, i)
		for j, s := range r.SNI {
			r.SNI[j] = strings.ToLower(s)
		}
		if r.Name == "" && len(r.SNI) > 0 {
			r.Name = r.SNI[0]
		}
		setString(&r.Strategy, l.Strategy)
		for j := range r.Backends {
			setInt(&r.Backends[j].Weight, defaultWeight, unset(fmt.Sprintf("%s.backends[%d].weight", rp, j)))
		}
	}
}

// validateL4Routes checks the SNI routes of listener l at path p: each
// route has SNI entries and backends, and no name or SNI entry is taken
// twice.
func validateL4Routes(l *L4Listener, p string, st *vstate) {
	names := map[string]int{}
	patterns := map[string]int{}
	for i, r := range l.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", p, i)
		switch j, dup := names[r.Name]; {
		case r.Name == DefaultL4Route:
			st.add(rp+".name", "%q names the listener's own backends in metrics and logs: choose another name", DefaultL4Route)
		case dup:
			st.add(rp+".name", "duplicate route name %q (also routes[%d])", r.Name, j)
		case r.Name != "":
			names[r.Name] = i
		}
		if len(r.SNI) == 0 {
			st.add(rp+".sni", "at least one server name is required")
		}
		for j, s := range r.SNI {
			sp := fmt.Sprintf("%s.sni[%d]", rp, j)
			if msg := checkSNIPattern(s); msg != "" {
				st.add(sp, "%s", msg)
			} else if k, dup := patterns[s]; dup {
				st.add(sp, "%q is also in routes[%d]", s, k)
			} else {
				patterns[s] = i
			}
		}
		if len(r.Backends) == 0 {
			st.add(rp+".backends", "at least one backend is required")
		}
		checkL4Backends(st, rp+".backends", r.Backends)
		checkL4Strategy(st, rp+".strategy", r.Strategy)
	}
}

// checkSNIPattern checks an SNI entry (lower-cased): a DNS name, or "*."
// followed by one.
func checkSNIPattern(s string) string {
	name := strings.TrimPrefix(s, "*.")
	switch {
	case s == "":
		return "empty server name"
	case strings.Contains(name, "*"):
		return fmt.Sprintf("invalid server name %q (a wildcard is \"*.\" before a name, e.g. \"*.example.com\")", s)
	case strings.HasSuffix(name, "."):
		return fmt.Sprintf("invalid server name %q (no trailing dot: clients send names without it)", s)
	case len(name) > 253:
		return fmt.Sprintf("invalid server name %q (longer than 253 characters)", s)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Sprintf("invalid server name %q (clients never send an IP address as SNI)", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || strings.IndexFunc(label, notHostChar) >= 0 {
			return fmt.Sprintf("invalid server name %q (want DNS labels of 1-63 letters, digits, '-' or '_'; an internationalized name in its xn-- form)", s)
		}
	}
	return ""
}

func notHostChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
}

// validateL4TLS checks an l4 listener's tls: both files named, a known
// min_version and, when a TLSFileChecker is registered, a pair that can
// serve (readable, matching, valid now, with SANs), as for server.tls.
func validateL4TLS(l *L4Listener, p string, st *vstate) {
	t := l.TLS
	if t == nil {
		return
	}
	tp := p + ".tls"
	ok := checkFileName(st, tp+".cert_file", t.CertFile)
	ok = checkFileName(st, tp+".key_file", t.KeyFile) && ok
	if !oneOf(t.MinVersion, TLSVersion12, TLSVersion13) {
		st.add(tp+".min_version", "unsupported version %q (supported: %s, %s)", t.MinVersion, TLSVersion12, TLSVersion13)
	}
	checker := currentTLSFileChecker()
	if !ok || checker == nil {
		return
	}
	if _, err := checker.CheckPair(t.CertFile, t.KeyFile); err != nil {
		st.add(tp+pairField(err, t.CertFile, t.KeyFile), "%s", err.Error())
	}
}

// pairField is the key of a pair entry a CheckPair error points at:
// ".key_file" when the error names the key file, else ".cert_file".
func pairField(err error, certFile, keyFile string) string {
	var ff interface{ FaultyFile() string }
	if errors.As(err, &ff) && ff.FaultyFile() == keyFile && keyFile != certFile {
		return ".key_file"
	}
	return ".cert_file"
}
