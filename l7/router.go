package l7

import (
	"bytes"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/upstream"
)

// Route is one compiled route of a snapshot.
type Route struct {
	Name        string
	Path        string // normalised prefix, no trailing slash except "/"
	Host        string // lower case; "*.example.com" for a wildcard; "" for any
	Methods     []string
	StripPrefix bool
	Pool        *upstream.Pool

	// chain is the route's policies in order (cors, rate_limit, jwt,
	// plugins).
	chain []middleware.Instance
	// mayBlock is set when a policy may wait on something other than
	// the request (see chainMayBlock).
	mayBlock bool
	metrics  *observe.RouteMetrics
	retry    retryPolicy
	hashBy   hashSource

	conns map[*upstream.Backend]*connPool
	// h2 is set when the route's protocol is not http1: its backends
	// may be spoken to over HTTP/2.
	h2             bool
	responseHeader time.Duration
	readTimeout    time.Duration
	// allowHeader is the Allow value for a 405 on this route.
	allowHeader string
	// requireClientCert answers 403 to requests whose connection has no
	// verified client certificate (client_auth.mode: require).
	requireClientCert bool
	// cond are the route's header, query and exact-path conditions
	// (provider routes).
	cond routeCond
}

// routeCond is a compiled config.RouteMatch.
type routeCond struct {
	exact   bool
	headers []config.NameValue // names lower case
	query   []config.NameValue
}

func (c *routeCond) any() bool { return c.exact || len(c.headers) > 0 || len(c.query) > 0 }

// holds reports whether req (nil: a request with no headers or query)
// meets the header and query conditions.
func (c *routeCond) holds(req *request) bool {
	for _, h := range c.headers {
		if req == nil || !req.hasHeaderValue(h.Name, h.Value) {
			return false
		}
	}
	for _, q := range c.query {
		if req == nil || !queryHas(req.query, q.Name, q.Value) {
			return false
		}
	}
	return true
}

// hasHeaderValue: the first field named name (lower case) has value.
func (r *request) hasHeaderValue(name, value string) bool {
	for i := range r.fields {
		f := &r.fields[i]
		if len(f.name) == len(name) && asciiEqualFoldLower(f.name, name) {
			return string(f.value) == value
		}
	}
	return false
}

func asciiEqualFoldLower(b []byte, lower string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// queryHas: the first parameter named name of query ("?a=b&c") has value.
func queryHas(query []byte, name, value string) bool {
	q := string(bytes.TrimPrefix(query, []byte("?")))
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if ku, err := url.QueryUnescape(k); err == nil && ku == name {
			vu, err := url.QueryUnescape(v)
			return err == nil && vu == value
		}
	}
	return false
}

// precedence orders the routes of one prefix as the Gateway API does:
// exact paths, then routes with methods, then more headers, then more
// query parameters; catch-alls last.
func (rt *Route) precedence() int {
	p := len(rt.cond.query) + 100*len(rt.cond.headers)
	if len(rt.Methods) > 0 {
		p += 10000
	}
	if rt.cond.exact {
		p += 100000
	}
	return p
}

func (rt *Route) allows(method []byte) bool {
	if len(rt.Methods) == 0 {
		return true
	}
	for _, m := range rt.Methods {
		if string(method) == m || m == "GET" && string(method) == "HEAD" {
			return true
		}
	}
	return false
}

// pathTable finds the longest route prefix on path-segment boundaries.
type pathTable struct {
	byPrefix map[string][]*Route
}

func (t *pathTable) add(rt *Route) {
	if t.byPrefix == nil {
		t.byPrefix = make(map[string][]*Route)
	}
	list := append(t.byPrefix[rt.Path], rt)
	// Routes restricted to methods (or other conditions) are tried
	// before catch-alls.
	sort.SliceStable(list, func(i, j int) bool { return list[i].precedence() > list[j].precedence() })
	t.byPrefix[rt.Path] = list
}

// match returns the route for path and method; when only the method
// failed, it returns the route that matched the path with ok false.
func (t *pathTable) match(path, method []byte, req *request) (rt *Route, ok bool) {
	if t == nil || len(t.byPrefix) == 0 {
		return nil, false
	}
	var wrongMethod *Route
	cand := path
	for {
		if list, found := t.byPrefix[string(cand)]; found {
			for _, r := range list {
				if r.cond.any() && (r.cond.exact && len(cand) != len(path) || !r.cond.holds(req)) {
					continue
				}
				if r.allows(method) {
					return r, true
				}
			}
			for _, r := range list {
				if wrongMethod == nil && !r.cond.any() {
					wrongMethod = r
				}
			}
		}
		if len(cand) <= 1 {
			break
		}
		i := bytes.LastIndexByte(cand, '/')
		if i <= 0 {
			cand = cand[:1]
			if cand[0] != '/' {
				break
			}
		} else {
			cand = cand[:i]
		}
	}
	return wrongMethod, false
}

type wildcardTable struct {
	suffix string // ".example.com"
	table  *pathTable
}

// Router matches requests to routes: host first (exact, then the most
// specific wildcard, then routes without host), then the longest path
// prefix, then methods.
type Router struct {
	hosts     map[string]*pathTable
	wildcards []wildcardTable
	any       *pathTable
	// rootClaimed is true when some route serves "/" for any host.
	rootClaimed bool
}

// NewRouter builds a router from routes (already validated).
func NewRouter(routes []*Route) *Router {
	r := &Router{hosts: map[string]*pathTable{}, any: &pathTable{}}
	wild := map[string]*pathTable{}
	for _, rt := range routes {
		switch {
		case rt.Host == "":
			r.any.add(rt)
			if rt.Path == "/" {
				r.rootClaimed = true
			}
		case strings.HasPrefix(rt.Host, "*."):
			s := rt.Host[1:]
			if wild[s] == nil {
				wild[s] = &pathTable{}
			}
			wild[s].add(rt)
		default:
			if r.hosts[rt.Host] == nil {
				r.hosts[rt.Host] = &pathTable{}
			}
			r.hosts[rt.Host].add(rt)
		}
	}
	for s, t := range wild {
		r.wildcards = append(r.wildcards, wildcardTable{suffix: s, table: t})
	}
	sort.Slice(r.wildcards, func(i, j int) bool { return len(r.wildcards[i].suffix) > len(r.wildcards[j].suffix) })
	return r
}

// Match returns the route for a request. When a path matched but the
// method did not, it returns that route with ok false (a 405).
func (r *Router) Match(host, path, method []byte) (rt *Route, ok bool) {
	return r.match(host, path, method, nil)
}

// matchRequest is Match for a parsed request, whose headers and query
// the routes' conditions may look at.
func (r *Router) matchRequest(req *request) (rt *Route, ok bool) {
	return r.match(req.host, req.path, req.method, req)
}

func (r *Router) match(host, path, method []byte, req *request) (rt *Route, ok bool) {
	var lower [256]byte
	h := hostNoPort(host)
	if len(h) > len(lower) {
		h = nil
	}
	n := copy(lower[:], h)
	for i := 0; i < n; i++ {
		if c := lower[i]; 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	// A fully-qualified "example.com." matches "example.com".
	if n > 0 && lower[n-1] == '.' {
		n--
	}
	lh := lower[:n]
	var fallback *Route
	if len(r.hosts) > 0 && n > 0 {
		if t, found := r.hosts[string(lh)]; found {
			if rt, ok := t.match(path, method, req); ok {
				return rt, true
			} else if rt != nil {
				fallback = rt
			}
		}
	}
	for _, w := range r.wildcards {
		if n > len(w.suffix) && string(lh[n-len(w.suffix):]) == w.suffix {
			if rt, ok := w.table.match(path, method, req); ok {
				return rt, true
			} else if rt != nil && fallback == nil {
				fallback = rt
			}
		}
	}
	if rt, ok := r.any.match(path, method, req); ok {
		return rt, true
	} else if rt != nil && fallback == nil {
		fallback = rt
	}
	return fallback, false
}
