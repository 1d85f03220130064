// Package cors is the cors request policy: it answers CORS preflight
// requests itself and adds the Access-Control-* headers that let a
// browser read the responses of allowed origins.
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
//     is never forwarded. From an allowed origin, asking for an allowed
//     method and allowed headers, it is answered 204 with the
//     Access-Control-Allow-* headers; otherwise 403 without them (reported
//     as "origin", "method" or "headers").
//   - Any other request with an Origin header is forwarded. From an
//     allowed origin, its response gets Access-Control-Allow-Origin,
//     Access-Control-Expose-Headers and Access-Control-Allow-Credentials;
//     from another origin it gets none (the browser then keeps the
//     response from the page) and is reported as "origin".
//   - Every response gets Vary: Origin, so that caches keep answers for
//     different origins apart.
//
// Origins are matched ASCII case-insensitively: exactly, or against a
// wildcard pattern such as https://*.example.com, which matches any
// subdomain at any depth (a.example.com, a.b.example.com) with that
// scheme and port, but not example.com itself.
package cors

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// Policy is a built cors policy.
type Policy struct {
	route string
	rep   middleware.Reporter

	anyOrigin bool
	exact     map[string]string // lower-cased origin -> value to send
	wildcards []wildcard
	// preflights holds the 204 reply headers for each value of
	// Access-Control-Allow-Origin known in advance ("*" and the exact
	// origins), when they do not depend on the request (no "*" in
	// allow_headers). The proxy only reads reply headers.
	preflights map[string][][2]string
	// credentials sends Access-Control-Allow-Credentials: true.
	credentials bool

	methods      []string
	methodsValue string
	anyHeader    bool
	headers      []string // lower-cased
	headersValue string
	exposeValue  string
	maxAgeValue  string
}

// wildcard is a pattern scheme://*.suffix[:port], kept as the prefix
// "scheme://" and the suffix ".suffix[:port]".
type wildcard struct {
	prefix, suffix string
}

var _ middleware.Handler = (*Policy)(nil)

// maxOrigin is the longest Origin header value considered; a longer
// one cannot be a valid origin.
const maxOrigin = 512

// New builds the policy from the settings of an effective cors entry
// (see config.Config.RouteMiddlewares). It fails on settings it cannot
// run.
func New(cfg Settings, route string, rep middleware.Reporter) (middleware.Handler, error) {
	return NewPolicy(cfg, route, rep)
}

// NewPolicy is New returning the concrete type.
func NewPolicy(cfg Settings, route string, rep middleware.Reporter) (*Policy, error) {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	p := &Policy{route: route, rep: rep, credentials: cfg.AllowCredentials, exact: map[string]string{}}
	if len(cfg.AllowOrigins) == 0 {
		return nil, fmt.Errorf("cors: allow_origins is empty")
	}
	for _, o := range cfg.AllowOrigins {
		lo := strings.ToLower(o)
		switch {
		case o == "*":
			if cfg.AllowCredentials {
				return nil, fmt.Errorf(`cors: allow_origins "*" cannot be used with allow_credentials`)
			}
			p.anyOrigin = true
		case len(lo) > maxOrigin:
			return nil, fmt.Errorf("cors: origin %q is too long", o)
		case strings.Contains(lo, "://*."):
			scheme, host, _ := strings.Cut(lo, "://")
			if strings.Count(lo, "*") != 1 || scheme == "" || strings.ContainsAny(host[1:], "/?#@") {
				return nil, fmt.Errorf("cors: invalid origin pattern %q", o)
			}
			p.wildcards = append(p.wildcards, wildcard{prefix: scheme + "://", suffix: host[1:]})
		default:
			scheme, host, ok := strings.Cut(lo, "://")
			if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/?#@*") {
				return nil, fmt.Errorf("cors: invalid origin %q", o)
			}
			p.exact[lo] = lo
		}
	}
	methods := cfg.AllowMethods
	if methods == nil {
		methods = defaultMethods
	}
	for _, m := range methods {
		if !config.IsToken(m) {
			return nil, fmt.Errorf("cors: invalid method %q", m)
		}
	}
	p.methods = slices.Clone(methods)
	p.methodsValue = strings.Join(methods, ", ")
	var named []string
	for _, h := range cfg.AllowHeaders {
		switch {
		case h == "*":
			p.anyHeader = true
		case config.IsToken(h):
			p.headers = append(p.headers, strings.ToLower(h))
			named = append(named, h)
		default:
			return nil, fmt.Errorf("cors: invalid header name %q", h)
		}
	}
	p.headersValue = strings.Join(named, ", ")
	for _, h := range cfg.ExposeHeaders {
		if !config.IsToken(h) {
			return nil, fmt.Errorf("cors: invalid header name %q", h)
		}
	}
	p.exposeValue = strings.Join(cfg.ExposeHeaders, ", ")
	if d := cfg.MaxAge.D(); d > 0 {
		p.maxAgeValue = strconv.FormatInt(int64(d/time.Second), 10)
	}
	if !p.anyHeader {
		p.preflights = map[string][][2]string{}
		if p.anyOrigin {
			p.preflights["*"] = p.preflightHeaders("*", nil)
		}
		for _, v := range p.exact {
			p.preflights[v] = p.preflightHeaders(v, nil)
		}
	}
	return p, nil
}

// Replies of rejected preflights; the proxy only reads them.
var (
	forbiddenHeaders = [][2]string{{"Content-Type", "application/json"}}
	forbiddenBodies  = map[string][]byte{
		"origin":  []byte(`{"error":"forbidden","reason":"origin"}` + "\n"),
		"method":  []byte(`{"error":"forbidden","reason":"method"}` + "\n"),
		"headers": []byte(`{"error":"forbidden","reason":"headers"}` + "\n"),
	}
)

var backendCORSHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers", "Access-Control-Max-Age",
}

// Handle implements middleware.Handler.
func (p *Policy) Handle(r middleware.Request) *middleware.Reply {
	r.AddResponseHeader("Vary", "Origin")
	// The policy alone speaks CORS for the route: what the backend says
	// would contradict it (two Allow-Origin values, or one for an origin
	// the policy refused).
	for _, h := range backendCORSHeaders {
		r.DelResponseHeader(h)
	}
	origin := r.Header("Origin")
	if origin == nil {
		return nil
	}
	allowValue, allowed := p.match(origin)
	reqMethod := r.Header("Access-Control-Request-Method")
	if reqMethod != nil && string(r.Method()) == "OPTIONS" {
		return p.preflight(r, origin, allowValue, allowed, reqMethod)
	}
	if !allowed {
		p.rep.Rejected("cors", p.route, "origin", r.PeerIP())
		return nil
	}
	if allowValue == "" {
		allowValue = string(origin)
	}
	r.AddResponseHeader("Access-Control-Allow-Origin", allowValue)
	if p.credentials {
		r.AddResponseHeader("Access-Control-Allow-Credentials", "true")
	}
	if p.exposeValue != "" {
		r.AddResponseHeader("Access-Control-Expose-Headers", p.exposeValue)
	}
	return nil
}

// preflight answers a preflight request.
func (p *Policy) preflight(r middleware.Request, origin []byte, allowValue string, allowed bool, reqMethod []byte) *middleware.Reply {
	if !allowed {
		return p.reject(r.PeerIP(), "origin")
	}
	if !p.methodAllowed(reqMethod) {
		return p.reject(r.PeerIP(), "method")
	}
	reqHeaders := r.Header("Access-Control-Request-Headers")
	if !p.anyHeader && !p.headersAllowed(reqHeaders) {
		return p.reject(r.PeerIP(), "headers")
	}
	if hs, ok := p.preflights[allowValue]; ok {
		return &middleware.Reply{Status: 204, Headers: hs}
	}
	if allowValue == "" {
		allowValue = string(origin)
	}
	return &middleware.Reply{Status: 204, Headers: p.preflightHeaders(allowValue, reqHeaders)}
}

// preflightHeaders returns the headers of a 204 preflight reply.
func (p *Policy) preflightHeaders(allowValue string, reqHeaders []byte) [][2]string {
	hs := make([][2]string, 0, 6)
	hs = append(hs, [2]string{"Access-Control-Allow-Origin", allowValue})
	if p.credentials {
		hs = append(hs, [2]string{"Access-Control-Allow-Credentials", "true"})
	}
	hs = append(hs, [2]string{"Access-Control-Allow-Methods", p.methodsValue})
	switch {
	case p.anyHeader && len(reqHeaders) > 0:
		hs = append(hs, [2]string{"Access-Control-Allow-Headers", string(reqHeaders)})
	case p.headersValue != "":
		hs = append(hs, [2]string{"Access-Control-Allow-Headers", p.headersValue})
	}
	if p.maxAgeValue != "" {
		hs = append(hs, [2]string{"Access-Control-Max-Age", p.maxAgeValue})
	}
	hs = append(hs, [2]string{"Vary", "Access-Control-Request-Method, Access-Control-Request-Headers"})
	return slices.Clip(hs)
}

func (p *Policy) methodAllowed(m []byte) bool {
	for _, a := range p.methods {
		if string(m) == a {
			return true
		}
	}
	return false
}

func (p *Policy) reject(client netip.Addr, reason string) *middleware.Reply {
	p.rep.Rejected("cors", p.route, reason, client)
	return &middleware.Reply{Status: 403, Headers: forbiddenHeaders, Body: forbiddenBodies[reason]}
}

// match reports whether origin is allowed and the value of
// Access-Control-Allow-Origin for it: "*", the configured origin, or ""
// when the request's own Origin must be copied (a wildcard match).
func (p *Policy) match(origin []byte) (string, bool) {
	if p.anyOrigin {
		return "*", true
	}
	if len(origin) > maxOrigin {
		return "", false
	}
	var buf [maxOrigin]byte
	lo := buf[:len(origin)]
	for i, c := range origin {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lo[i] = c
	}
	if v, ok := p.exact[string(lo)]; ok {
		return v, true
	}
	for _, w := range p.wildcards {
		if w.matches(lo) {
			return "", true
		}
	}
	return "", false
}

// matches reports whether the lower-cased origin o is scheme://X.suffix
// with X a non-empty run of host labels.
func (w wildcard) matches(o []byte) bool {
	if len(o) <= len(w.prefix)+len(w.suffix) || string(o[:len(w.prefix)]) != w.prefix || string(o[len(o)-len(w.suffix):]) != w.suffix {
		return false
	}
	sub := o[len(w.prefix) : len(o)-len(w.suffix)]
	if sub[0] == '.' || sub[0] == '-' {
		return false
	}
	for i, c := range sub {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			if sub[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// headersAllowed reports whether every header in the comma-separated
// list is allowed.
func (p *Policy) headersAllowed(list []byte) bool {
	for len(list) > 0 {
		var name []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			name, list = list[:i], list[i+1:]
		} else {
			name, list = list, nil
		}
		name = bytes.Trim(name, " \t")
		if len(name) == 0 {
			continue
		}
		if !p.headerAllowed(name) {
			return false
		}
	}
	return true
}

func (p *Policy) headerAllowed(name []byte) bool {
	for _, h := range p.headers {
		if len(h) == len(name) && equalFoldLower(name, h) {
			return true
		}
	}
	return false
}

// equalFoldLower compares b ASCII case-insensitively to the lower-case s
// of the same length.
func equalFoldLower(b []byte, s string) bool {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
