package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits.
const (
	minMaxHeaderBytes = 1024
	maxMaxHeaderBytes = 16 << 20
	minWeight         = 1
	maxWeight         = 1000000
	maxDrainDelay     = 10 * time.Minute
)

// vstate is what validation knows beyond the Config itself.
type vstate struct {
	file string
	// lines and bad come from the walk (nil for a Config built in code).
	lines map[string]int
	bad   map[string]bool
	// shapes records which of backend/backends each route set in the
	// file, before defaults expanded the shorthand (nil for a Config
	// built in code).
	shapes []routeShape
	// defaultedNames marks the routes whose name was defaulted (nil for
	// a Config built in code).
	defaultedNames []bool
	// files: check the files the configuration names (set when it comes
	// from a file or bytes, not for a Config built in code); pluginCheck
	// checks a plugin file further (see LoadChecked and
	// SettingsCheck.CheckPlugin).
	files       bool
	pluginCheck func(path string, guestConfig map[string]any) error

	errs []FieldError
}

// routeShape is which of backend and backends a route set.
type routeShape struct {
	backend, backends bool
}

func routeShapesOf(c *Config) []routeShape {
	shapes := make([]routeShape, len(c.Routes))
	for i, r := range c.Routes {
		shapes[i] = routeShape{backend: r.Backend != "", backends: len(r.Backends) > 0}
	}
	return shapes
}

// add records a problem with the field at path, unless the value at path
// or above it could not be decoded (that was reported already).
func (st *vstate) add(path, format string, args ...any) {
	if st.suppressed(path) {
		return
	}
	st.errs = append(st.errs, FieldError{File: st.file, Line: st.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// suppressed reports whether path or one of its ancestors is bad.
func (st *vstate) suppressed(path string) bool {
	for p := path; p != ""; p = parentPath(p) {
		if st.bad[p] {
			return true
		}
	}
	return false
}

// lineOf returns the line of path, or of its nearest ancestor that has
// one (a field that was defaulted has no line of its own).
func (st *vstate) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := st.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parentPath strips the last element from a key path:
// "routes[1].backends[0]" -> "routes[1].backends" -> "routes[1]" -> "routes".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// validate checks every field of c.
func validate(c *Config, st *vstate) []FieldError {
	s := &c.Server
	if msg := checkListen(s.Listen); msg != "" {
		st.add("server.listen", "%s", msg)
	}
	if s.Engine != EngineFast && s.Engine != EngineStandard {
		st.add("server.engine", "unknown engine %q (supported: %s, %s)", s.Engine, EngineFast, EngineStandard)
	}
	if _, err := parseEventLoops(s.EventLoops); err != nil {
		st.add("server.event_loops", "%s", err.Error())
	}
	checkPositive(st, "server.read_header_timeout", s.ReadHeaderTimeout)
	checkPositive(st, "server.idle_timeout", s.IdleTimeout)
	checkPositive(st, "server.write_timeout", s.WriteTimeout)
	checkPositive(st, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.DrainDelay < 0 || s.DrainDelay.D() > maxDrainDelay {
		st.add("server.drain_delay", "must be between 0 and %s (got %s)", maxDrainDelay, s.DrainDelay)
	}
	if s.MaxHeaderBytes < minMaxHeaderBytes || s.MaxHeaderBytes > maxMaxHeaderBytes {
		st.add("server.max_header_bytes", "must be between %d and %d (got %d)", minMaxHeaderBytes, maxMaxHeaderBytes, s.MaxHeaderBytes)
	}
	if !oneOf(s.Path.EscapedSlashes, EscapedSlashesReject, EscapedSlashesKeep, EscapedSlashesDecode) {
		st.add("server.path.escaped_slashes", "unknown action %q (supported: reject, keep, decode)", s.Path.EscapedSlashes)
	}
	if !oneOf(s.HeadersWithUnderscores, UnderscoreHeadersDrop, UnderscoreHeadersReject, UnderscoreHeadersAllow) {
		st.add("server.headers_with_underscores", "unknown action %q (supported: drop, reject, allow)", s.HeadersWithUnderscores)
	}

	if a := c.Admin.Listen; a != AdminOff {
		if msg := checkListen(a); msg != "" {
			st.add("admin.listen", "%s", msg)
		} else if checkListen(s.Listen) == "" && sameListener(a, s.Listen) {
			_, port, _ := net.SplitHostPort(a)
			st.add("admin.listen", "must differ from server.listen (both use port %s)", port)
		}
	}
	validateAdmin(&c.Admin, st)

	if !oneOf(c.Log.Format, "json", "text") {
		st.add("log.format", "unknown format %q (supported: json, text)", c.Log.Format)
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		st.add("log.level", "unknown level %q (supported: debug, info, warn, error)", c.Log.Level)
	}

	validateRoutes(c.Routes, st)
	for i := range c.Routes {
		validateUpstream(&c.Routes[i], fmt.Sprintf("routes[%d]", i), st)
	}
	validateMiddlewares(c, st)
	validateDatapath(c, st)
	validateTracing(c, st)
	validateTLS(c, st)
	validateL4(c, st)
	validateCluster(c, st)
	validateProviders(c, st)
	return st.errs
}

func validateRoutes(routes []Route, st *vstate) {
	routeKeys := make(map[string]int) // host, path and methods -> first route
	names := make(map[string]int)     // name -> first route
	for i := range routes {
		r := &routes[i]
		p := fmt.Sprintf("routes[%d]", i)

		if strings.ContainsFunc(r.Name, isControl) {
			st.add(p+".name", "must not contain control characters")
		}
		pathOK := true
		if msg := checkPath(r.Path); msg != "" {
			st.add(p+".path", "%s", msg)
			pathOK = false
		}
		if r.Host != "" {
			if msg := checkHost(r.Host); msg != "" {
				st.add(p+".host", "%s", msg)
			}
		}
		seenMethods := make(map[string]int)
		for j, m := range r.Methods {
			mp := fmt.Sprintf("%s.methods[%d]", p, j)
			switch {
			case m == "":
				st.add(mp, "must not be empty")
			case !isToken(m):
				st.add(mp, "invalid method %q", m)
			case asciiUpper(m) != m:
				st.add(mp, "not normalised: want %q", asciiUpper(m))
			default:
				if first, dup := seenMethods[m]; dup {
					st.add(mp, "duplicate method %q (also methods[%d])", m, first)
				} else {
					seenMethods[m] = j
				}
			}
		}

		validateBackends(r, i, p, st)

		t := &r.Timeouts
		checkPositive(st, p+".timeouts.connect", t.Connect)
		checkPositive(st, p+".timeouts.response_header", t.ResponseHeader)
		checkPositive(st, p+".timeouts.idle", t.Idle)
		if t.MaxIdleConns < 1 {
			st.add(p+".timeouts.max_idle_conns", "must be greater than 0 (got %d)", t.MaxIdleConns)
		}

		if pathOK && !st.suppressed(p+".methods") {
			key := r.Host + "\x00" + r.Path + "\x00" + strings.Join(methodSet(r.Methods), ",") + r.Match.Key()
			if first, dup := routeKeys[key]; dup {
				st.add(p, "duplicate route: same host, path and methods as routes[%d]", first)
			} else {
				routeKeys[key] = i
			}
		}
		if r.Name != "" {
			if first, dup := names[r.Name]; dup {
				// Two defaulted names only clash for duplicate routes,
				// which are reported above.
				if st.defaultedNames == nil || !st.defaultedNames[i] || !st.defaultedNames[first] {
					st.add(p+".name", "duplicate route name %q (also routes[%d])", r.Name, first)
				}
			} else {
				names[r.Name] = i
			}
		}
	}
}

// validateBackends checks backend, backends and their relation.
func validateBackends(r *Route, i int, p string, st *vstate) {
	// After defaults, a route written with the backend shorthand also has
	// Backends holding that one backend.
	shorthand := r.Backend != "" && len(r.Backends) == 1 &&
		(r.Backends[0].URL == r.Backend || canonicalOrSelf(r.Backend) == r.Backends[0].URL)
	var both, neither bool
	if st.shapes != nil {
		sh := st.shapes[i]
		both, neither = sh.backend && sh.backends, !sh.backend && !sh.backends
		shorthand = shorthand && !both
	} else {
		both = r.Backend != "" && len(r.Backends) > 0 && !shorthand
		neither = r.Backend == "" && len(r.Backends) == 0
	}
	switch {
	case st.suppressed(p+".backend") || st.suppressed(p+".backends"):
	case both:
		st.add(p, "set only one of backend and backends")
	case neither:
		st.add(p, "one of backend or backends is required")
	}

	if r.Backend != "" {
		if _, msg := canonicalBackendURL(r.Backend); msg != "" {
			st.add(p+".backend", "%s", msg)
		}
	}
	if shorthand {
		return
	}
	seen := make(map[string]int)
	for j, b := range r.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", p, j)
		if u, msg := canonicalBackendURL(b.URL); msg != "" {
			st.add(bp+".url", "%s", msg)
		} else if u != b.URL {
			st.add(bp+".url", "not normalised: want %q", u)
		} else if first, dup := seen[u]; dup {
			st.add(bp+".url", "duplicate backend %q (also backends[%d])", u, first)
		} else {
			seen[u] = j
		}
		if b.Weight < minWeight || b.Weight > maxWeight {
			st.add(bp+".weight", "must be between %d and %d (got %d)", minWeight, maxWeight, b.Weight)
		}
	}
}

func checkPositive(st *vstate, path string, d Duration) {
	if d <= 0 {
		st.add(path, "must be greater than 0 (got %s)", d)
	}
}

// checkListen checks a listen address: host:port with a numeric port in
// 0-65535 (0 picks a free port) and a host that is empty, an IP address or
// a host name.
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("invalid address %q (want host:port, e.g. \":8080\" or \"127.0.0.1:8080\")", addr)
	}
	if _, ok := parsePort(port); !ok && port != "0" {
		return fmt.Sprintf("invalid port %q in %q (want 0-65535)", port, addr)
	}
	if host != "" && !validIP(host) && !validHostname(host, false) {
		return fmt.Sprintf("invalid host %q in %q", host, addr)
	}
	return ""
}

// sameListener reports whether two valid listen addresses would use the
// same socket: same port, and the same host or a wildcard host.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := parsePort(pa)
	nb, _ := parsePort(pb)
	if na != nb || na == 0 {
		return false
	}
	return ha == hb || isWildcardHost(ha) || isWildcardHost(hb)
}

func isWildcardHost(h string) bool {
	if h == "" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsUnspecified()
}

// parsePort parses a decimal port number in 1-65535.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, _ := strconv.Atoi(s)
	return n, n >= 1 && n <= 65535
}

// validIP reports whether s is an IP address without a zone.
func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// validHostname reports whether h is a host name: dot-separated labels of
// letters, digits, "-" and "_", each 1-63 bytes and not starting or ending
// with "-". With wildcard, the first label may be "*".
func validHostname(h string, wildcard bool) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && wildcard && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(isAlnum(c) || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkPath checks a route path.
func checkPath(p string) string {
	switch {
	case p == "":
		return "is required"
	case p[0] != '/':
		return fmt.Sprintf("must start with \"/\" (got %q)", p)
	case strings.Contains(p, "?"):
		return fmt.Sprintf("must not contain \"?\" (got %q)", p)
	case strings.Contains(p, "#"):
		return fmt.Sprintf("must not contain \"#\" (got %q)", p)
	case strings.Contains(p, "//"):
		return fmt.Sprintf("must not contain \"//\" (got %q)", p)
	}
	if seg := dotSegment(p); seg != "" {
		return fmt.Sprintf("must not contain %q segments (got %q)", seg, p)
	}
	if msg := checkPathChars(p); msg != "" {
		return msg
	}
	if n := normalEscapes(p); n != p {
		// Request paths are matched in this form.
		return fmt.Sprintf("not normalised: want %q (unreserved characters unescaped, escapes in upper case)", n)
	}
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		return fmt.Sprintf("not normalised: want %q", strings.TrimSuffix(p, "/"))
	}
	return ""
}

// dotSegment returns "." or ".." if p has such a segment, else "".
func dotSegment(p string) string {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return seg
		}
	}
	return ""
}

// checkPathChars checks that p holds only characters allowed in a URL
// path (RFC 3986 pchar and "/"), with well-formed %XX escapes.
func checkPathChars(p string) string {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case isAlnum(c), strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0:
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fmt.Sprintf("invalid %%-escape in %q", p)
			}
			i += 2
		case c < 0x80:
			return fmt.Sprintf("invalid character %q in %q (percent-encode it)", c, p)
		default:
			return fmt.Sprintf("non-ASCII character in %q (percent-encode it)", p)
		}
	}
	return ""
}

// normalEscapes decodes the escapes of unreserved characters in p and
// upper-cases the hex digits of the others, as the proxy does to request
// paths. p's escapes are valid.
func normalEscapes(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		v, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if c := byte(v); isAlnum(c) || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String()
}

// checkHost checks a route host.
func checkHost(h string) string {
	switch {
	case strings.HasPrefix(h, "["):
		return fmt.Sprintf("IPv6 hosts are not supported (got %q)", h)
	case strings.Contains(h, ":"):
		return fmt.Sprintf("must not include a port (got %q)", h)
	case asciiLower(h) != h:
		return fmt.Sprintf("not normalised: want %q", asciiLower(h))
	case strings.Contains(h, "*") && !strings.HasPrefix(h, "*."):
		return fmt.Sprintf("invalid host %q (a wildcard must be a leading \"*.\", as in \"*.example.com\")", h)
	case !validHostname(h, true):
		return fmt.Sprintf("invalid host %q", h)
	}
	return ""
}

// canonicalBackendURL checks a backend URL and returns its canonical
// form, http(s)://host:port[/base], or a description of the problem.
func canonicalBackendURL(raw string) (string, string) {
	if raw == "" {
		return "", "is required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return "", fmt.Sprintf("invalid URL %q: %v", raw, err)
	}
	switch {
	case u.Scheme == "" || u.Opaque != "" || !strings.Contains(raw, "://"):
		return "", fmt.Sprintf("invalid URL %q (want http://host[:port][/path] or https://...)", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Sprintf("unsupported scheme %q in %q (supported: http, https)", u.Scheme, raw)
	case u.User != nil:
		return "", fmt.Sprintf("user info is not allowed in %q", raw)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Sprintf("a query is not allowed in %q", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", fmt.Sprintf("a fragment is not allowed in %q", raw)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Sprintf("missing host in %q", raw)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	} else if _, ok := parsePort(port); !ok {
		return "", fmt.Sprintf("invalid port %q in %q (want 1-65535)", port, raw)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Sprintf("IPv6 zones are not supported in %q", raw)
		}
		host = a.String()
	} else if validHostname(host, false) {
		host = strings.ToLower(host)
	} else {
		return "", fmt.Sprintf("invalid host %q in %q", host, raw)
	}
	path := u.EscapedPath()
	switch {
	case strings.Contains(path, "//"):
		return "", fmt.Sprintf("the path must not contain \"//\" in %q", raw)
	case dotSegment(path) != "":
		return "", fmt.Sprintf("the path must not contain %q segments in %q", dotSegment(path), raw)
	}
	path = strings.TrimSuffix(path, "/")
	return u.Scheme + "://" + net.JoinHostPort(host, port) + path, ""
}

// canonicalOrSelf returns the canonical form of a backend URL, or the
// URL itself when it is invalid.
func canonicalOrSelf(raw string) string {
	if u, msg := canonicalBackendURL(raw); msg == "" {
		return u
	}
	return raw
}

// isToken reports whether s is an HTTP token (RFC 9110), as a method is.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isSpaceOrControl(r rune) bool { return r == ' ' || isControl(r) }

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
