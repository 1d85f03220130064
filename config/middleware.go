package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Middleware kinds, the values of a `middlewares:` entry's name.
const (
	MiddlewareCORS      = "cors"
	MiddlewareRateLimit = "rate_limit"
	MiddlewareJWT       = "jwt"
	MiddlewareWASM      = "wasm"
)

// Middleware defaults.
const (
	defaultRateWindow     = Duration(60 * time.Second)
	defaultRateKey        = "ip"
	defaultRateMaxKeys    = 1000000
	defaultJWTLeeway      = Duration(30 * time.Second)
	defaultJWKSRefresh    = Duration(time.Hour)
	defaultJWKSMinRefetch = Duration(5 * time.Minute)
)

// Middleware limits.
const (
	maxRateLimit      = 1000000000
	maxRateMaxKeys    = 100000000
	maxCORSMaxAge     = Duration(24 * time.Hour)
	maxJWTLeeway      = Duration(5 * time.Minute)
	minJWKSInterval   = Duration(time.Second)
	minJWTSecretBytes = 32

	maxPluginConcurrency = 1024
	maxPluginQueue       = 1000000
)

var (
	defaultCORSMethods = []string{"GET", "HEAD", "POST"}

	// middlewareKinds lists the kinds in the order a route runs them.
	middlewareKinds = []string{MiddlewareCORS, MiddlewareRateLimit, MiddlewareJWT, MiddlewareWASM}

	// jwtAlgorithms are the accepted values of algorithms.
	jwtAlgorithms = []string{
		"HS256", "HS384", "HS512",
		"RS256", "RS384", "RS512",
		"PS256", "PS384", "PS512",
		"ES256", "ES384", "ES512",
		"EdDSA",
	}

	// noClaimHeaders are request headers a JWT claim may not set: they
	// frame the request or the connection.
	noClaimHeaders = []string{"host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)

// middlewareFields maps the yaml key of each kind-specific Middleware
// field to its kind. name and enabled belong to every kind.
var middlewareFields = map[string]string{
	"limit": MiddlewareRateLimit, "window": MiddlewareRateLimit, "burst": MiddlewareRateLimit,
	"key": MiddlewareRateLimit, "trusted_proxies": MiddlewareRateLimit, "max_keys": MiddlewareRateLimit,

	"allow_origins": MiddlewareCORS, "allow_methods": MiddlewareCORS, "allow_headers": MiddlewareCORS,
	"expose_headers": MiddlewareCORS, "allow_credentials": MiddlewareCORS, "max_age": MiddlewareCORS,

	"algorithms": MiddlewareJWT, "secret": MiddlewareJWT, "secret_file": MiddlewareJWT,
	"public_key_file": MiddlewareJWT, "jwks_url": MiddlewareJWT, "jwks_refresh": MiddlewareJWT,
	"jwks_min_refetch": MiddlewareJWT, "issuer": MiddlewareJWT, "audience": MiddlewareJWT,
	"leeway": MiddlewareJWT, "claims_to_headers": MiddlewareJWT, "forward_authorization": MiddlewareJWT,
	"require_exp": MiddlewareJWT,

	"path": MiddlewareWASM, "config": MiddlewareWASM, "fail_open": MiddlewareWASM,
	"max_concurrency": MiddlewareWASM, "max_queue": MiddlewareWASM,
}

// mwField is one field of Middleware, by struct index and yaml key.
type mwField struct {
	index int
	key   string
}

// mwFields are the Middleware fields other than name, in declaration order.
var mwFields = func() []mwField {
	t := reflect.TypeFor[Middleware]()
	var fs []mwField
	for i := 0; i < t.NumField(); i++ {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if key != "name" {
			fs = append(fs, mwField{index: i, key: key})
		}
	}
	return fs
}()

// IsHMAC reports whether alg is one of the HS* algorithms, which verify
// with a shared secret; every other algorithm uses a public key.
func IsHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// sameEntry reports whether a route entry r overrides the global entry
// g: entries match by name, and wasm entries, which may repeat, by name
// and path.
func sameEntry(g, r *Middleware) bool {
	return g.Name == r.Name && (g.Name != MiddlewareWASM || g.Path == r.Path)
}

// globalFor returns the index of the global entry that the route entry
// r overrides, or -1.
func globalFor(globals []Middleware, r *Middleware) int {
	for k := range globals {
		if sameEntry(&globals[k], r) {
			return k
		}
	}
	return -1
}

// middlewareDefaults fills the defaults of the global and per-route
// middleware entries. A route entry that overrides a global entry gets
// no defaults: its zero fields inherit the global values (see
// RouteMiddlewares). Defaults that depend on other fields (a rate
// limit's burst, a jwt entry's algorithms) are not stored here; they are
// resolved on the effective entries that RouteMiddlewares returns,
// because a route may override the fields they depend on.
func middlewareDefaults(c *Config, unset func(string) bool) {
	for i := range c.Middlewares {
		m := &c.Middlewares[i]
		normalMiddleware(m)
		kindDefaults(m, fmt.Sprintf("middlewares[%d]", i), unset)
	}
	for i := range c.Routes {
		for j := range c.Routes[i].Middlewares {
			m := &c.Routes[i].Middlewares[j]
			normalMiddleware(m)
			if globalFor(c.Middlewares, m) < 0 {
				kindDefaults(m, fmt.Sprintf("routes[%d].middlewares[%d]", i, j), unset)
			}
		}
	}
}

// normalMiddleware puts values in canonical form: CORS methods
// upper-cased, origins lower-cased.
func normalMiddleware(m *Middleware) {
	if m.Name != MiddlewareCORS {
		return
	}
	for k, o := range m.AllowOrigins {
		m.AllowOrigins[k] = asciiLower(o)
	}
	for k, v := range m.AllowMethods {
		m.AllowMethods[k] = asciiUpper(v)
	}
}

// kindDefaults fills the defaults of one complete entry (a global entry
// or a route entry that overrides none). path is the entry's key path.
func kindDefaults(m *Middleware, path string, unset func(string) bool) {
	switch m.Name {
	case MiddlewareRateLimit:
		setDuration(&m.Window, defaultRateWindow, unset(path+".window"))
		setString(&m.Key, defaultRateKey)
		setInt(&m.MaxKeys, defaultRateMaxKeys, unset(path+".max_keys"))
	case MiddlewareCORS:
		if m.AllowMethods == nil {
			m.AllowMethods = slices.Clone(defaultCORSMethods)
		}
	case MiddlewareJWT:
		setDuration(&m.Leeway, defaultJWTLeeway, unset(path+".leeway"))
		setDuration(&m.JWKSRefresh, defaultJWKSRefresh, unset(path+".jwks_refresh"))
		setDuration(&m.JWKSMinRefetch, defaultJWKSMinRefetch, unset(path+".jwks_min_refetch"))
		if m.ForwardAuthorization == nil {
			m.ForwardAuthorization = ptr(true)
		}
		if m.RequireExp == nil {
			m.RequireExp = ptr(true)
		}
	}
}

// resolveMiddleware fills the defaults that depend on other fields of
// an effective entry: a rate limit's burst (0 means limit) and a jwt
// entry's algorithms (HS256 for a secret; RS256 and ES256 for public keys
// or a JWKS; both when both are given).
func resolveMiddleware(m *Middleware) {
	switch m.Name {
	case MiddlewareRateLimit:
		if m.Burst == 0 {
			m.Burst = m.Limit
		}
	case MiddlewareJWT:
		if len(m.Algorithms) == 0 {
			m.Algorithms = DefaultJWTAlgorithms(*m)
		}
	}
}

// DefaultJWTAlgorithms returns the algorithms a jwt entry accepts when it
// lists none: HS256 when it has a secret, RS256 and ES256 when it has a
// public key file or a JWKS URL.
func DefaultJWTAlgorithms(m Middleware) []string {
	var algs []string
	if m.Secret != "" || m.SecretFile != "" {
		algs = append(algs, "HS256")
	}
	if m.PublicKeyFile != "" || m.JWKSURL != "" {
		algs = append(algs, "RS256", "ES256")
	}
	return algs
}

// mergeMiddleware returns the global entry g overridden field by field
// by the route entry r: every field r sets (non-zero, or a non-nil
// pointer, list or map) replaces g's. Lists replace, they do not append.
// A zero value on r inherits g's value: an explicit 0 or false on a
// route cannot override a global value (validation reports such a value
// written in the file).
func mergeMiddleware(g, r Middleware) Middleware {
	out := g
	ov, rv := reflect.ValueOf(&out).Elem(), reflect.ValueOf(r)
	for _, f := range mwFields {
		if v := rv.Field(f.index); !v.IsZero() {
			ov.Field(f.index).Set(v)
		}
	}
	return out
}

// RouteMiddlewares returns the effective, ordered middleware list of
// route i: each global entry, overridden field by field by the route
// entry of the same name (for wasm: same name and path), then the route
// entries that override none. Entries that end up disabled are left out,
// and dependent defaults are resolved (burst, algorithms). The list is
// ordered cors, rate_limit, jwt, wasm, except that a rate_limit keyed on
// a JWT claim (key jwt:CLAIM) runs after jwt, which provides the claims;
// wasm entries keep their relative order (globals first).
//
// The result is freshly allocated; slices and maps in it are shared with
// c and must not be modified.
func (c *Config) RouteMiddlewares(i int) []Middleware {
	routeEntries := c.Routes[i].Middlewares
	used := make([]bool, len(routeEntries))
	var out []Middleware
	for _, g := range c.Middlewares {
		m := g
		for j := range routeEntries {
			if !used[j] && sameEntry(&g, &routeEntries[j]) {
				m = mergeMiddleware(g, routeEntries[j])
				used[j] = true
				break
			}
		}
		out = append(out, m)
	}
	for j, r := range routeEntries {
		if !used[j] {
			out = append(out, r)
		}
	}
	out = slices.DeleteFunc(out, func(m Middleware) bool { return !m.IsEnabled() })
	for k := range out {
		resolveMiddleware(&out[k])
	}
	hasJWT := slices.ContainsFunc(out, func(m Middleware) bool { return m.Name == MiddlewareJWT })
	rank := func(m *Middleware) int {
		if m.Name == MiddlewareRateLimit && hasJWT && strings.HasPrefix(m.Key, "jwt:") {
			return 2*slices.Index(middlewareKinds, MiddlewareJWT) + 1
		}
		if k := slices.Index(middlewareKinds, m.Name); k >= 0 {
			return 2 * k
		}
		return 2 * len(middlewareKinds)
	}
	slices.SortStableFunc(out, func(a, b Middleware) int { return rank(&a) - rank(&b) })
	return out
}

// issue is one problem found by a check that runs on an effective
// entry; field is "" for the entry as a whole.
type issue struct {
	field, msg string
}

// validateMiddlewares checks the global and per-route middleware entries.
//
// Every entry is checked field by field where written. The checks that
// relate fields to each other (consistency) and the checks for required
// fields (completeness, only for entries that end up enabled) run on the
// effective entry: a global entry or a route-only entry as it is, a route
// entry merged over the global entry it overrides. Problems of an
// effective entry are reported at the route entry's path, and those
// already reported for the global entry are not repeated.
func validateMiddlewares(c *Config, st *vstate) {
	globalProblems := make([]bool, len(c.Middlewares))
	globalIncomplete := make([]bool, len(c.Middlewares))
	for i := range c.Middlewares {
		p := fmt.Sprintf("middlewares[%d]", i)
		if !validateEntryFields(&c.Middlewares[i], p, false, st) {
			continue
		}
		eff := c.Middlewares[i]
		resolveMiddleware(&eff)
		cons := consistency(&eff)
		report(st, p, cons)
		globalProblems[i] = len(cons) > 0
		var req []issue
		if eff.IsEnabled() {
			req = completeness(&eff)
			report(st, p, req)
		}
		globalIncomplete[i] = len(req) > 0
	}
	checkDuplicates(c.Middlewares, "middlewares", st)

	for ri := range c.Routes {
		entries := c.Routes[ri].Middlewares
		for j := range entries {
			r := &entries[j]
			p := fmt.Sprintf("routes[%d].middlewares[%d]", ri, j)
			gi := globalFor(c.Middlewares, r)
			if !validateEntryFields(r, p, gi >= 0, st) {
				continue
			}
			eff := *r
			if gi >= 0 {
				g := &c.Middlewares[gi]
				checkRouteZeros(g, r, fmt.Sprintf("middlewares[%d]", gi), p, st)
				eff = mergeMiddleware(*g, *r)
				if g.IsEnabled() && !setsSettings(r) {
					// The same entry as the global one, checked there.
					continue
				}
			}
			resolveMiddleware(&eff)
			if gi < 0 || !globalProblems[gi] {
				report(st, p, consistency(&eff))
			}
			if eff.IsEnabled() && (gi < 0 || !c.Middlewares[gi].IsEnabled() || !globalIncomplete[gi]) {
				report(st, p, completeness(&eff))
			}
		}
		checkDuplicates(entries, fmt.Sprintf("routes[%d].middlewares", ri), st)
	}
}

// report adds the issues of the entry at p, except those at a path
// that already has a problem (a field check reported it).
func report(st *vstate, p string, issues []issue) {
	for _, is := range issues {
		path := p
		if is.field != "" {
			path += "." + is.field
		}
		if !slices.ContainsFunc(st.errs, func(e FieldError) bool { return e.Path == path }) {
			st.add(path, "%s", is.msg)
		}
	}
}

// setsSettings reports whether a route entry sets anything besides its
// name and enabled (and, for wasm, the path that identifies it).
func setsSettings(r *Middleware) bool {
	v := reflect.ValueOf(*r)
	for _, f := range mwFields {
		if f.key == "enabled" || (r.Name == MiddlewareWASM && f.key == "path") {
			continue
		}
		if !v.Field(f.index).IsZero() {
			return true
		}
	}
	return false
}

// checkDuplicates reports a kind listed twice in one list (wasm entries
// may repeat, with different paths).
func checkDuplicates(list []Middleware, listPath string, st *vstate) {
	first := make(map[string]int)
	for j := range list {
		m := &list[j]
		if !slices.Contains(middlewareKinds, m.Name) {
			continue
		}
		p := fmt.Sprintf("%s[%d]", listPath, j)
		if m.Name == MiddlewareWASM {
			if m.Path == "" {
				continue
			}
			if k, dup := first["wasm\x00"+m.Path]; dup {
				st.add(p+".path", "duplicate wasm plugin %q (also %s[%d])", m.Path, lastElem(listPath), k)
			} else {
				first["wasm\x00"+m.Path] = j
			}
			continue
		}
		if k, dup := first[m.Name]; dup {
			st.add(p+".name", "duplicate middleware %q (also %s[%d])", m.Name, lastElem(listPath), k)
		} else {
			first[m.Name] = j
		}
	}
}

// lastElem returns the last element of a key path: "middlewares" for
// "routes[0].middlewares".
func lastElem(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// fieldWritten reports whether the field at path was given a value: a
// non-zero one, or any value written in the file.
func fieldWritten(st *vstate, v reflect.Value, path string) bool {
	if !v.IsZero() {
		return true
	}
	_, ok := st.lines[path]
	return ok
}

// validateEntryFields checks the name of an entry, that it sets no field
// of another kind, and each field it sets on its own. override is true
// for a route entry that overrides a global entry: its zero values are
// inherited, not checked (checkRouteZeros reports them). It returns false
// when the name is missing or unknown (nothing else is checked then).
func validateEntryFields(m *Middleware, p string, override bool, st *vstate) bool {
	switch {
	case m.Name == "":
		st.add(p+".name", "is required")
		return false
	case !slices.Contains(middlewareKinds, m.Name):
		st.add(p+".name", "unknown middleware %q (supported: %s)", m.Name, strings.Join(middlewareKinds, ", "))
		return false
	}
	v := reflect.ValueOf(*m)
	for _, f := range mwFields {
		kind, ok := middlewareFields[f.key]
		if !ok || kind == m.Name {
			continue
		}
		if fp := p + "." + f.key; fieldWritten(st, v.Field(f.index), fp) {
			st.add(fp, "not a field of %s", m.Name)
		}
	}
	written := func(key string) bool {
		for _, f := range mwFields {
			if f.key == key {
				if override {
					return !v.Field(f.index).IsZero()
				}
				return fieldWritten(st, v.Field(f.index), p+"."+key)
			}
		}
		return false
	}
	switch m.Name {
	case MiddlewareRateLimit:
		rateLimitFields(m, p, st, written)
	case MiddlewareCORS:
		corsFields(m, p, st, written)
	case MiddlewareJWT:
		jwtFields(m, p, st, written)
	case MiddlewareWASM:
		wasmFields(m, p, st, written)
	}
	return true
}

// checkPluginFiles reports the enabled wasm entries whose file is
// missing or not a regular file, or fails st.pluginCheck (run once per
// path and guest configuration), once per path, at the first entry
// naming it. The path is relative to the working directory, as the
// gateway opens it.
func checkPluginFiles(c *Config, st *vstate) {
	seen := map[string]bool{}    // paths looked at
	bad := map[string]bool{}     // paths reported
	checked := map[string]bool{} // paths and configurations checked
	check := func(m *Middleware, p string) {
		path := p + ".path"
		key := m.Path + "\x00" + fmt.Sprint(m.Config)
		if m.Name != MiddlewareWASM || !m.IsEnabled() || m.Path == "" || bad[m.Path] || checked[key] ||
			st.suppressed(path) || slices.ContainsFunc(st.errs, func(e FieldError) bool { return e.Path == path }) {
			return
		}
		checked[key] = true
		if msg := pluginFileProblem(m, st.pluginCheck, !seen[m.Path]); msg != "" {
			st.add(path, "%s", msg)
			bad[m.Path] = true
		}
		seen[m.Path] = true
	}
	for i := range c.Middlewares {
		check(&c.Middlewares[i], fmt.Sprintf("middlewares[%d]", i))
	}
	for ri := range c.Routes {
		for j := range c.Routes[ri].Middlewares {
			check(&c.Routes[ri].Middlewares[j], fmt.Sprintf("routes[%d].middlewares[%d]", ri, j))
		}
	}
}

// pluginFileProblem describes what is wrong with the plugin file of m
// (stat: look at the file itself first), or "".
func pluginFileProblem(m *Middleware, check func(string, map[string]any) error, stat bool) string {
	path := m.Path
	if stat {
		fi, err := os.Stat(path)
		var pe *fs.PathError
		switch {
		case errors.As(err, &pe):
			return fmt.Sprintf("%s: %v", path, pe.Err)
		case err != nil:
			return fmt.Sprintf("%s: %v", path, err)
		case !fi.Mode().IsRegular():
			return fmt.Sprintf("%s: not a regular file", path)
		}
	}
	if check != nil {
		if err := check(path, m.Config); err != nil {
			return fmt.Sprintf("%s: %v", path, err)
		}
	}
	return ""
}

func wasmFields(m *Middleware, p string, st *vstate, written func(string) bool) {
	if m.Path == "" {
		st.add(p+".path", "is required")
	} else if strings.ContainsFunc(m.Path, isControl) {
		st.add(p+".path", "must not contain control characters")
	}
	if written("max_concurrency") && (m.MaxConcurrency < 1 || m.MaxConcurrency > maxPluginConcurrency) {
		st.add(p+".max_concurrency", "must be between 1 and %d (got %d)", maxPluginConcurrency, m.MaxConcurrency)
	}
	if written("max_queue") && (m.MaxQueue < 1 || m.MaxQueue > maxPluginQueue) {
		st.add(p+".max_queue", "must be between 1 and %d (got %d)", maxPluginQueue, m.MaxQueue)
	}
}

func rateLimitFields(m *Middleware, p string, st *vstate, written func(string) bool) {
	if written("limit") && (m.Limit < 1 || m.Limit > maxRateLimit) {
		st.add(p+".limit", "must be between 1 and %d (got %d)", maxRateLimit, m.Limit)
	}
	if written("window") {
		checkPositive(st, p+".window", m.Window)
	}
	if m.Burst < 0 || m.Burst > maxRateLimit {
		st.add(p+".burst", "must be between 0 (same as limit) and %d (got %d)", maxRateLimit, m.Burst)
	}
	if written("key") {
		if msg := checkRateKey(m.Key); msg != "" {
			st.add(p+".key", "%s", msg)
		}
	}
	for k, tp := range m.TrustedProxies {
		if !validPrefixOrIP(tp) {
			st.add(fmt.Sprintf("%s.trusted_proxies[%d]", p, k), "invalid trusted proxy %q (want an IP address or a CIDR such as 10.0.0.0/8)", tp)
		}
	}
	if written("max_keys") && (m.MaxKeys < 1 || m.MaxKeys > maxRateMaxKeys) {
		st.add(p+".max_keys", "must be between 1 and %d (got %d)", maxRateMaxKeys, m.MaxKeys)
	}
}

// checkRateKey checks a rate limit key: ip, header:NAME or jwt:CLAIM.
func checkRateKey(key string) string {
	switch {
	case key == "ip":
		return ""
	case strings.HasPrefix(key, "header:"):
		if name := key[len("header:"):]; !isToken(name) {
			return fmt.Sprintf("invalid header name %q in key %q", name, key)
		}
		return ""
	case strings.HasPrefix(key, "jwt:"):
		if claim := key[len("jwt:"):]; claim == "" || strings.ContainsFunc(claim, isSpaceOrControl) {
			return fmt.Sprintf("invalid claim name %q in key %q", claim, key)
		}
		return ""
	}
	return fmt.Sprintf("invalid key %q (want ip, header:NAME or jwt:CLAIM)", key)
}

// validPrefixOrIP reports whether s is an IP address or a CIDR prefix,
// without a zone.
func validPrefixOrIP(s string) bool {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return err == nil && p.Addr().Zone() == ""
	}
	return validIP(s)
}

func corsFields(m *Middleware, p string, st *vstate, written func(string) bool) {
	for k, o := range m.AllowOrigins {
		op := fmt.Sprintf("%s.allow_origins[%d]", p, k)
		switch {
		case o == "*":
			if len(m.AllowOrigins) > 1 {
				st.add(op, `"*" allows every origin; list it alone`)
			}
		case checkOrigin(o) != "":
			st.add(op, "%s", checkOrigin(o))
		case asciiLower(o) != o:
			st.add(op, "not normalised: want %q", asciiLower(o))
		}
	}
	for k, v := range m.AllowMethods {
		mp := fmt.Sprintf("%s.allow_methods[%d]", p, k)
		switch {
		case !isToken(v):
			st.add(mp, "invalid method %q", v)
		case asciiUpper(v) != v:
			st.add(mp, "not normalised: want %q", asciiUpper(v))
		}
	}
	for k, h := range m.AllowHeaders {
		if h != "*" && !isToken(h) {
			st.add(fmt.Sprintf("%s.allow_headers[%d]", p, k), "invalid header name %q", h)
		}
	}
	for k, h := range m.ExposeHeaders {
		if !isToken(h) {
			st.add(fmt.Sprintf("%s.expose_headers[%d]", p, k), "invalid header name %q", h)
		}
	}
	switch d := m.MaxAge; {
	case d > maxCORSMaxAge:
		st.add(p+".max_age", "must be at most %s (got %s)", maxCORSMaxAge, d)
	case d.D()%time.Second != 0:
		st.add(p+".max_age", "must be a whole number of seconds (got %s)", d)
	}
}

// checkOrigin checks a CORS origin: scheme://host[:port], where the host
// may start with a "*." wildcard (https://*.example.com).
func checkOrigin(o string) string {
	bad := fmt.Sprintf("invalid origin %q (want \"*\", scheme://host[:port] or a wildcard such as https://*.example.com)", o)
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || !isScheme(scheme) || rest == "" {
		return bad
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if _, ok := parsePort(port); !ok {
			return bad
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return ""
		}
		return bad
	}
	if validIP(host) && !strings.Contains(host, ":") {
		return ""
	}
	if strings.Contains(host, "*") && !strings.HasPrefix(host, "*.") {
		return bad
	}
	if !validHostname(host, true) {
		return bad
	}
	return ""
}

// isScheme reports whether s is a URL scheme (RFC 3986).
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || (i > 0 && strings.IndexByte("+-.", c) >= 0)) || (i == 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

func jwtFields(m *Middleware, p string, st *vstate, written func(string) bool) {
	for k, a := range m.Algorithms {
		ap := fmt.Sprintf("%s.algorithms[%d]", p, k)
		switch {
		case strings.EqualFold(a, "none"):
			st.add(ap, `"none" is never allowed`)
		case !slices.Contains(jwtAlgorithms, a):
			st.add(ap, "unknown algorithm %q (supported: %s)", a, strings.Join(jwtAlgorithms, ", "))
		}
	}
	if m.Secret != "" && len(m.Secret) < minJWTSecretBytes {
		// The value is never printed.
		st.add(p+".secret", "must be at least %d bytes (got %d)", minJWTSecretBytes, len(m.Secret))
	}
	if m.JWKSURL != "" {
		if msg := checkJWKSURL(m.JWKSURL); msg != "" {
			st.add(p+".jwks_url", "%s", msg)
		}
	}
	for _, f := range []struct {
		key string
		d   Duration
	}{{"jwks_refresh", m.JWKSRefresh}, {"jwks_min_refetch", m.JWKSMinRefetch}} {
		if written(f.key) && f.d < minJWKSInterval {
			st.add(p+"."+f.key, "must be at least %s (got %s)", minJWKSInterval, f.d)
		}
	}
	if m.Leeway > maxJWTLeeway {
		st.add(p+".leeway", "must be at most %s (got %s)", maxJWTLeeway, m.Leeway)
	}
	if strings.ContainsFunc(m.Issuer, isControl) {
		st.add(p+".issuer", "must not contain control characters")
	}
	for k, a := range m.Audience {
		if a == "" || strings.ContainsFunc(a, isControl) {
			st.add(fmt.Sprintf("%s.audience[%d]", p, k), "must be a non-empty string without control characters")
		}
	}
	claims := make([]string, 0, len(m.ClaimsToHeaders))
	for claim := range m.ClaimsToHeaders {
		claims = append(claims, claim)
	}
	slices.Sort(claims)
	for _, claim := range claims {
		h := m.ClaimsToHeaders[claim]
		cp := p + ".claims_to_headers." + claim
		switch {
		case claim == "" || strings.ContainsFunc(claim, isControl):
			st.add(p+".claims_to_headers", "invalid claim name %q", claim)
		case !isToken(h):
			st.add(cp, "invalid header name %q", h)
		case slices.Contains(noClaimHeaders, asciiLower(h)):
			st.add(cp, "a claim cannot set the %s header", h)
		}
	}
}

// checkJWKSURL checks a JWKS URL: http or https, with a host.
func checkJWKSURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "":
		return fmt.Sprintf("invalid URL %q (want http(s)://host[:port]/path)", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("unsupported scheme %q in %q (supported: http, https)", u.Scheme, raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("missing host in %q", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Sprintf("a fragment is not allowed in %q", raw)
	}
	return ""
}

// consistency checks how the fields of an effective, resolved entry
// relate to each other.
func consistency(m *Middleware) []issue {
	var out []issue
	switch m.Name {
	case MiddlewareCORS:
		if m.AllowCredentials && slices.Contains(m.AllowOrigins, "*") {
			out = append(out, issue{"allow_credentials", `cannot be true when allow_origins is "*" (list the origins instead)`})
		}
	case MiddlewareJWT:
		hasSecret := m.Secret != "" || m.SecretFile != ""
		hasKeys := m.PublicKeyFile != "" || m.JWKSURL != ""
		if m.Secret != "" && m.SecretFile != "" {
			out = append(out, issue{"secret_file", "set only one of secret and secret_file"})
		}
		anyHMAC, anyPublic := false, false
		for k, a := range m.Algorithms {
			if !slices.Contains(jwtAlgorithms, a) {
				continue
			}
			if IsHMAC(a) {
				anyHMAC = true
				if !hasSecret && hasKeys {
					out = append(out, issue{fmt.Sprintf("algorithms[%d]", k), a + " needs secret or secret_file (a public key is never used as an HMAC secret)"})
				}
			} else {
				anyPublic = true
				if !hasKeys && hasSecret {
					out = append(out, issue{fmt.Sprintf("algorithms[%d]", k), a + " needs public_key_file or jwks_url"})
				}
			}
		}
		if hasSecret && !anyHMAC {
			field := "secret"
			if m.Secret == "" {
				field = "secret_file"
			}
			out = append(out, issue{field, "no HS256, HS384 or HS512 in algorithms uses it"})
		}
		if hasKeys && !anyPublic {
			field := "jwks_url"
			if m.JWKSURL == "" {
				field = "public_key_file"
			}
			out = append(out, issue{field, "no RS, PS, ES or EdDSA algorithm in algorithms uses it"})
		}
	}
	return out
}

// completeness checks that an effective, enabled entry has what its kind
// needs to run.
func completeness(m *Middleware) []issue {
	var out []issue
	switch m.Name {
	case MiddlewareRateLimit:
		if m.Limit == 0 {
			out = append(out, issue{"limit", "is required"})
		}
		if m.Window <= 0 {
			out = append(out, issue{"window", fmt.Sprintf("must be greater than 0 (got %s)", m.Window)})
		}
		if m.Key == "" {
			out = append(out, issue{"key", "is required"})
		}
		if m.MaxKeys < 1 {
			out = append(out, issue{"max_keys", fmt.Sprintf("must be between 1 and %d (got %d)", maxRateMaxKeys, m.MaxKeys)})
		}
	case MiddlewareCORS:
		if len(m.AllowOrigins) == 0 {
			out = append(out, issue{"allow_origins", "is required"})
		}
	case MiddlewareJWT:
		if m.Secret == "" && m.SecretFile == "" && m.PublicKeyFile == "" && m.JWKSURL == "" {
			out = append(out, issue{"", "one of secret, secret_file, public_key_file or jwks_url is required"})
		}
		if m.JWKSURL != "" {
			if m.JWKSRefresh < minJWKSInterval {
				out = append(out, issue{"jwks_refresh", fmt.Sprintf("must be at least %s (got %s)", minJWKSInterval, m.JWKSRefresh)})
			}
			if m.JWKSMinRefetch < minJWKSInterval {
				out = append(out, issue{"jwks_min_refetch", fmt.Sprintf("must be at least %s (got %s)", minJWKSInterval, m.JWKSMinRefetch)})
			}
		}
	}
	return out
}

// checkRouteZeros reports zero values written in the file on a route
// entry that overrides the global entry g: a zero inherits g's value, so
// writing it is a mistake when g's value differs.
func checkRouteZeros(g, r *Middleware, gp, p string, st *vstate) {
	if st.lines == nil {
		return
	}
	gv, rv := reflect.ValueOf(*g), reflect.ValueOf(*r)
	for _, f := range mwFields {
		fp := p + "." + f.key
		if _, ok := st.lines[fp]; !ok || middlewareFields[f.key] != r.Name {
			continue
		}
		v := rv.Field(f.index)
		switch v.Kind() {
		case reflect.Int, reflect.Int64, reflect.Bool:
		default:
			// Strings are left alone: their global value may be a secret.
			continue
		}
		if v.IsZero() && !gv.Field(f.index).IsZero() {
			st.add(fp, "%s does not override %s.%s (%v): a zero value in a route entry inherits the global one", zeroText(v), gp, f.key, gv.Field(f.index))
		}
	}
}

func zeroText(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeFor[Duration]():
		return "0s"
	case v.Kind() == reflect.Bool:
		return "false"
	}
	return "0"
}
