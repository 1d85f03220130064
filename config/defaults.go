package config

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AdminOff as admin.listen disables the admin listener.
const AdminOff = "off"

// Defaults.
const (
	defaultListen            = ":8080"
	defaultEngine            = EngineFast
	defaultReadHeaderTimeout = Duration(10 * time.Second)
	defaultIdleTimeout       = Duration(60 * time.Second)
	defaultWriteTimeout      = Duration(60 * time.Second)
	defaultMaxHeaderBytes    = 65536
	defaultShutdownTimeout   = Duration(30 * time.Second)
	defaultAdminListen       = "127.0.0.1:8081"
	defaultLogFormat         = "json"
	defaultLogLevel          = "info"
	defaultStrategy          = StrategyRoundRobin
	defaultWeight            = 1
	defaultConnectTimeout    = Duration(5 * time.Second)
	defaultResponseHeader    = Duration(5 * time.Second)
	defaultBackendIdle       = Duration(90 * time.Second)
	defaultMaxIdleConns      = 256
)

// Values of server.engine and route.strategy.
const (
	EngineFast         = "fast"
	EngineStandard     = "standard"
	EventLoopsAuto     = "auto"
	EventLoopsOff      = "off"
	maxEventLoops      = 256
	StrategyRoundRobin = "round_robin"
)

// Values of server.path.escaped_slashes and server.headers_with_underscores.
const (
	EscapedSlashesReject    = "reject"
	EscapedSlashesKeep      = "keep"
	EscapedSlashesDecode    = "decode"
	UnderscoreHeadersDrop   = "drop"
	UnderscoreHeadersReject = "reject"
	UnderscoreHeadersAllow  = "allow"
)

// applyDefaults puts c in canonical form and fills unset fields. set
// holds the key paths the file gave a non-null value (nil when c was
// built in code): a number or duration written explicitly as 0 is kept
// so that validation reports it instead of silently replacing it. It
// returns, per route, whether the route's name was defaulted.
// defaultReadTimeout bounds the wait between two reads of a response body.
const defaultReadTimeout = Duration(60 * time.Second)

// defaultTotalTimeout bounds a request with its retries until the
// response head, as Envoy's route timeout (15s) does. The default is
// never less than one attempt's connect plus response_header, so raising
// those alone still gives a first attempt its whole time; retries get
// what is left.
const defaultTotalTimeout = Duration(15 * time.Second)

func applyDefaults(c *Config, set map[string]bool) []bool {
	unset := func(path string) bool { return !set[path] }

	s := &c.Server
	setString(&s.Listen, defaultListen)
	setString(&s.Engine, defaultEngine)
	setString(&s.EventLoops, EventLoopsAuto)
	if s.H2C == nil {
		s.H2C = ptr(true)
	}
	setDuration(&s.ReadHeaderTimeout, defaultReadHeaderTimeout, unset("server.read_header_timeout"))
	setDuration(&s.IdleTimeout, defaultIdleTimeout, unset("server.idle_timeout"))
	setDuration(&s.WriteTimeout, defaultWriteTimeout, unset("server.write_timeout"))
	setInt(&s.MaxHeaderBytes, defaultMaxHeaderBytes, unset("server.max_header_bytes"))
	setDuration(&s.ShutdownTimeout, defaultShutdownTimeout, unset("server.shutdown_timeout"))
	if s.Path.MergeSlashes == nil {
		s.Path.MergeSlashes = ptr(true)
	}
	setString(&s.Path.EscapedSlashes, EscapedSlashesReject)
	setString(&s.HeadersWithUnderscores, UnderscoreHeadersDrop)
	// DrainDelay defaults to 0, its zero value.

	setString(&c.Admin.Listen, defaultAdminListen)
	defaultProviders(&c.Providers)

	setString(&c.Log.Format, defaultLogFormat)
	setString(&c.Log.Level, defaultLogLevel)
	if c.Log.Access == nil {
		c.Log.Access = ptr(true)
	}

	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		r.Path = normalPath(r.Path)
		r.Host = asciiLower(r.Host)
		for j, m := range r.Methods {
			r.Methods[j] = asciiUpper(m)
		}
		setString(&r.Strategy, defaultStrategy)
		for j := range r.Backends {
			b := &r.Backends[j]
			if u, problem := canonicalBackendURL(b.URL); problem == "" {
				b.URL = u
			}
			setInt(&b.Weight, defaultWeight, unset(fmt.Sprintf("%s.backends[%d].weight", p, j)))
		}
		if len(r.Backends) == 0 && r.Backend != "" {
			u, problem := canonicalBackendURL(r.Backend)
			if problem != "" {
				u = r.Backend
			}
			r.Backends = []Backend{{URL: u, Weight: defaultWeight}}
		}
		t := &r.Timeouts
		setDuration(&t.Connect, defaultConnectTimeout, unset(p+".timeouts.connect"))
		setDuration(&t.ResponseHeader, defaultResponseHeader, unset(p+".timeouts.response_header"))
		setDuration(&t.Idle, defaultBackendIdle, unset(p+".timeouts.idle"))
		setInt(&t.MaxIdleConns, defaultMaxIdleConns, unset(p+".timeouts.max_idle_conns"))
		setDuration(&t.Read, defaultReadTimeout, unset(p+".timeouts.read"))
		setDuration(&t.Total, max(defaultTotalTimeout, t.Connect+t.ResponseHeader), unset(p+".timeouts.total"))
		upstreamDefaults(r, p, unset)
	}
	middlewareDefaults(c)
	datapathDefaults(c, unset)
	tracingDefaults(c, unset)
	tlsDefaults(c, unset)
	l4Defaults(c, unset)
	clusterDefaults(c, unset)
	return defaultNames(c.Routes)
}

// defaultNames names every unnamed route after its path. When another
// route has the same path (or its path is taken as an explicit name), the
// host is put in front ("api.example.com/users"); when that is not unique
// either, the sorted methods are appended ("/users [GET,POST]"). Only
// routes that are duplicates of each other (same host, path and methods)
// end up with the same name, and validation reports those.
func defaultNames(routes []Route) []bool {
	byPath := make(map[string]int)
	byHostPath := make(map[string]int)
	explicit := make(map[string]bool)
	for _, r := range routes {
		byPath[r.Path]++
		byHostPath[r.Host+r.Path]++
		if r.Name != "" {
			explicit[r.Name] = true
		}
	}
	defaulted := make([]bool, len(routes))
	for i := range routes {
		r := &routes[i]
		if r.Name != "" {
			continue
		}
		name := r.Path
		if byPath[r.Path] > 1 || explicit[name] {
			name = r.Host + r.Path
			if (byHostPath[r.Host+r.Path] > 1 || explicit[name]) && len(r.Methods) > 0 {
				name += " [" + strings.Join(methodSet(r.Methods), ",") + "]"
			}
		}
		r.Name = name
		defaulted[i] = true
	}
	return defaulted
}

// methodSet returns the distinct methods, sorted.
func methodSet(methods []string) []string {
	s := slices.Clone(methods)
	slices.Sort(s)
	return slices.Compact(s)
}

// normalPath removes one trailing "/" from a route path other than "/".
// A path ending in "//" is left alone for validation to reject.
func normalPath(p string) string {
	if len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
		return p[:len(p)-1]
	}
	return p
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDuration(d *Duration, def Duration, unset bool) {
	if *d == 0 && unset {
		*d = def
	}
}

func setInt(i *int, def int, unset bool) {
	if *i == 0 && unset {
		*i = def
	}
}

func ptr[T any](v T) *T { return &v }

// asciiLower and asciiUpper change the case of ASCII letters only, so that
// no other character can turn into one.
func asciiLower(s string) string { return mapASCII(s, 'A', 'Z', 'a'-'A') }
func asciiUpper(s string) string { return mapASCII(s, 'a', 'z', 'A'-'a') }

func mapASCII(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	changed := false
	for i, c := range b {
		if lo <= c && c <= hi {
			b[i] = byte(int(c) + delta)
			changed = true
		}
	}
	if !changed {
		return s
	}
	return string(b)
}

// parseEventLoops reads server.event_loops: -1 for auto, 0 for off, or a
// count.
func parseEventLoops(v string) (int, error) {
	switch v {
	case EventLoopsAuto, "":
		return -1, nil
	case EventLoopsOff:
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxEventLoops {
		return 0, fmt.Errorf("invalid value %q (want %s, %s or a number of loops from 1 to %d)", v, EventLoopsAuto, EventLoopsOff, maxEventLoops)
	}
	return n, nil
}

// startProcs is GOMAXPROCS when the process started (the CPUs it may
// use, or the user's GOMAXPROCS): the WASM plugin host raises GOMAXPROCS
// for its guest threads, which must not add event loops.
var startProcs = runtime.GOMAXPROCS(0)

// EventLoopCount is the number of event loops the fast engine runs: 0
// for a goroutine per connection.
func (s *Server) EventLoopCount() int {
	n, err := parseEventLoops(s.EventLoops)
	switch {
	case err != nil:
		return 0
	case n < 0:
		return startProcs
	}
	return n
}
