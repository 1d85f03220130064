package config

import (
	"strings"
	"time"
)

// Config is one parsed, defaulted and validated configuration file.
// It is immutable once Load returns it: the runtime builds its
// request-path structures from it and never writes back.
type Config struct {
	Server Server `yaml:"server"`
	Admin  Admin  `yaml:"admin"`
	Log    Log    `yaml:"log"`
	// Datapath selects where packets are filtered: in the kernel (eBPF)
	// or in userspace.
	Datapath Datapath `yaml:"datapath"`
	// Middlewares are the global defaults, in the task list's list shape:
	// each route runs them unless it overrides an entry by name.
	Middlewares []Middleware `yaml:"middlewares"`
	Routes      []Route      `yaml:"routes"`
	// Tracing configures OpenTelemetry tracing.
	Tracing Tracing `yaml:"tracing"`
	// L4 are TCP listeners proxied to backend pools byte for byte.
	L4 []L4Listener `yaml:"l4"`
	// Cluster shares rate limits and bans between instances through Redis.
	Cluster Cluster `yaml:"cluster"`
	// Providers add routes from other sources (Kubernetes).
	Providers Providers `yaml:"providers"`

	// Source is the file the configuration was read from ("" when parsed
	// from bytes without a name).
	Source string `yaml:"-"`
}

// Server is the public HTTP listener.
type Server struct {
	// Listen is the address of the proxy listener. Default ":8080".
	Listen string `yaml:"listen"`
	// Engine selects the HTTP/1.1 implementation: "fast" (default), the
	// purpose-built HTTP/1.1 engine, or "standard", net/http. Both speak
	// HTTP/2 cleartext with prior knowledge when H2C is on.
	Engine string `yaml:"engine"`
	// EventLoops is how the fast engine waits on its connections: "auto"
	// (default), one epoll loop per CPU the process may use; a number of
	// loops; or "off", a goroutine per connection. Linux only; elsewhere
	// it is always off.
	EventLoops string `yaml:"event_loops"`
	// H2C accepts HTTP/2 with prior knowledge on the same port. Default true.
	H2C *bool `yaml:"h2c"`
	// TLS terminates TLS on the listener (see tls.go); nil: plain HTTP.
	TLS *TLSConfig `yaml:"tls"`
	// RedirectHTTPS answers plain-HTTP requests with a 308 to https://.
	RedirectHTTPS bool `yaml:"redirect_https"`
	// ReadHeaderTimeout bounds the time to read one request head, from its
	// first byte (a connection's first head: from the accept). Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a keep-alive client connection idle that long. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds one write to a client that stopped reading. Default 60s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxHeaderBytes bounds the request line plus headers. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout is how long a stop waits for in-flight requests. Default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Path is how request paths are normalized before routing; the
	// backend receives the normalized path.
	Path PathNormalization `yaml:"path"`
	// HeadersWithUnderscores is what happens to a request header whose
	// name contains "_": "drop" (default: not forwarded, not seen by
	// middlewares), "reject" (400) or "allow".
	HeadersWithUnderscores string `yaml:"headers_with_underscores"`
	// DrainDelay is how long the listeners keep accepting after SIGTERM
	// or SIGINT while /readyz already answers 503, so that load balancers
	// and Kubernetes endpoints stop sending new connections before the
	// listeners close. The shutdown_timeout drain starts after it. Default 0.
	DrainDelay Duration `yaml:"drain_delay"`
}

// PathNormalization configures request path normalization. Escapes of
// unreserved characters are always decoded, escape hex digits upper-cased
// and dot segments refused.
type PathNormalization struct {
	// MergeSlashes merges repeated slashes ("//a///b" -> "/a/b"). Default true.
	MergeSlashes *bool `yaml:"merge_slashes"`
	// EscapedSlashes is the action for %2F and %5C: "reject" (default, 400),
	// "keep" (forwarded encoded, not a separator for routing) or "decode"
	// (both become "/", then slashes are merged).
	EscapedSlashes string `yaml:"escaped_slashes"`
}

// L4Listener is a TCP proxy: every connection accepted on Listen is
// relayed to a backend of the pool.
type L4Listener struct {
	// Name identifies the listener in logs and metrics (required).
	Name string `yaml:"name"`
	// Listen is host:port, or host:LO-HI for a range of ports served by
	// the one listener (see ListenRange).
	Listen string `yaml:"listen"`
	// Backends are host:port addresses.
	Backends []L4Backend `yaml:"backends"`
	// Strategy as for routes: round_robin (default), weighted_round_robin,
	// least_connections, random_two_choices, consistent_hash (on the
	// client address).
	Strategy string `yaml:"strategy"`
	// HealthCheck probes each backend with a TCP connect; off when
	// Interval is 0.
	HealthCheck L4HealthCheck `yaml:"health_check"`
	// ConnectTimeout bounds the connect to a backend (default 5s); on
	// failure the next backend is tried (up to Retries times).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// IdleTimeout closes a connection with no bytes either way for that
	// long (default 1h; 0 keeps it).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Retries is how many other backends a failed connect tries. Default 2.
	Retries *int `yaml:"retries"`
	// MaxConns bounds the connections of the listener (0: unlimited);
	// over it new connections are closed at once.
	MaxConns int `yaml:"max_conns"`
	// ProxyProtocol sends a PROXY protocol header to the backend: "" (off),
	// "v1" or "v2".
	ProxyProtocol string `yaml:"proxy_protocol"`
	// Datapath moves the bytes: "auto" (default: splice(2)), "splice" or
	// "kernel" (sockmap splicing, opt-in).
	Datapath string `yaml:"datapath"`
	// Routes pick a backend group by the server name (SNI) of the
	// client's TLS ClientHello, which is read but not terminated (see
	// L4Route). Backends is then the group for a hello without SNI or with
	// a name no route lists; without Backends those are closed.
	Routes []L4Route `yaml:"routes"`
	// TLS terminates TLS on the listener and relays the plaintext.
	TLS *L4TLS `yaml:"tls"`
	// HandshakeTimeout bounds reading the ClientHello (Routes) or the TLS
	// handshake (TLS). Default 10s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
}

// L4Backend is one TCP backend.
type L4Backend struct {
	Addr   string `yaml:"addr"`
	Weight int    `yaml:"weight"`
}

// L4HealthCheck configures TCP connect health checks.
type L4HealthCheck struct {
	Interval           Duration `yaml:"interval"`
	Timeout            Duration `yaml:"timeout"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
}

// Datapath configures the kernel datapath.
type Datapath struct {
	// Mode is "auto" (default: kernel when BPF can load, else userspace
	// with a warning), "kernel" (fail when BPF cannot load) or "userspace"
	// (never touch BPF).
	Mode string `yaml:"mode"`
	// BPFFS is where maps are pinned. Default /sys/fs/bpf/rustygate.
	BPFFS string `yaml:"bpffs"`
	// Interfaces to attach the connection limiter to (XDP, else TCX).
	Interfaces []string `yaml:"interfaces"`
	// Persist keeps pinned maps after exit.
	Persist bool `yaml:"persist"`
	// KernelRateLimit limits new TCP connections per source IP.
	KernelRateLimit KernelRateLimit `yaml:"kernel_rate_limit"`
	// Bans turns L7 offences into kernel drops.
	Bans Bans `yaml:"bans"`

	// Upgrade is set by a process started by a zero-downtime upgrade: it
	// may take over the kernel links of the process it replaces. Not a
	// configuration key.
	Upgrade bool `yaml:"-"`
}

// KernelRateLimit is a per-source-IP token bucket for new connections
// (SYN without ACK) to the gateway's ports.
type KernelRateLimit struct {
	// Rate is new connections per second per source IP; 0 disables.
	Rate int `yaml:"rate"`
	// Burst is the bucket size. Default: Rate.
	Burst int `yaml:"burst"`
	// Ports is "auto" (the configured listeners, default) or a list.
	Ports []string `yaml:"ports"`
	// MaxSources sizes the LRU of tracked source IPs. Default 65536.
	MaxSources int `yaml:"max_sources"`
	// Allow lists CIDRs never limited; Deny lists CIDRs always dropped.
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// Bans configures L7 -> kernel bans.
type Bans struct {
	// RateLimitFactor bans a client whose requests reach this multiple of
	// its L7 rate limit in a window; 0 disables.
	RateLimitFactor float64 `yaml:"rate_limit_factor"`
	// JWTFailures bans a client failing JWT validation this many times
	// within JWTWindow; 0 disables.
	JWTFailures int      `yaml:"jwt_failures"`
	JWTWindow   Duration `yaml:"jwt_window"`
	// WAFBlocks bans a client whose requests the WAF refuses this many
	// times within WAFWindow; 0 disables.
	WAFBlocks int      `yaml:"waf_blocks"`
	WAFWindow Duration `yaml:"waf_window"`
	// Duration of a ban. Default 10m.
	Duration Duration `yaml:"duration"`
}

// Admin is the operator listener (/livez, /readyz, /metrics, /admin/*,
// /debug/pprof/).
type Admin struct {
	// Listen is the admin address. Default "127.0.0.1:8081" (loopback
	// only); "off" disables it.
	Listen string `yaml:"listen"`
	// Token protects /admin/* endpoints (Authorization: Bearer TOKEN), and
	// /debug/pprof/ and /metrics when those ask for it.
	Token string `yaml:"token"`
	// TokenFile names a file holding the token (a Kubernetes Secret or a
	// systemd credential), read at load and at every reload; trailing
	// newlines are trimmed. Exclusive with Token. Once loaded, Token holds
	// the file's token.
	TokenFile string `yaml:"token_file"`
	// PProf serves Go's profiler under /debug/pprof/, behind the token.
	// Default false (404).
	PProf bool `yaml:"pprof"`
	// MetricsAuth makes /metrics ask for the token. Default false, so
	// that Prometheus scrapes without credentials.
	MetricsAuth bool `yaml:"metrics_auth"`
}

// Log configures the process log and the access log.
type Log struct {
	// Format is "json" (default) or "text".
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
	// Access turns the per-request access log on or off. Default true.
	Access *bool `yaml:"access"`
}

// Route maps requests to a pool of backends.
type Route struct {
	// Name identifies the route in logs and metrics. Default: the path.
	Name string `yaml:"name"`
	// Path is a prefix matched on path-segment boundaries ("/api" matches
	// "/api" and "/api/x", not "/apix").
	Path string `yaml:"path"`
	// Host, when set, restricts the route to that Host header (port ignored).
	// A leading "*." matches any subdomain.
	Host string `yaml:"host"`
	// Methods, when set, restricts the route to those methods.
	Methods []string `yaml:"methods"`
	// StripPrefix removes Path from the forwarded request path.
	StripPrefix bool `yaml:"strip_prefix"`
	// Backend is the single-backend shorthand of Backends.
	Backend string `yaml:"backend"`
	// Backends is the pool. Exactly one of Backend and Backends is set.
	Backends []Backend `yaml:"backends"`
	// Strategy selects a backend: "round_robin" (default),
	// "weighted_round_robin", "least_connections", "random_two_choices"
	// or "consistent_hash".
	Strategy string `yaml:"strategy"`
	// HashKey is what consistent_hash hashes: "ip" (default),
	// "header:NAME" or "cookie:NAME".
	HashKey string `yaml:"hash_key"`
	// TLS configures TLS to the route's https:// backends (see
	// BackendTLS); a backend's own `tls` overrides it field by field.
	TLS *BackendTLS `yaml:"tls"`
	// Protocol is how the pool's backends are spoken to: "http1"
	// (default), "h2c" (HTTP/2 with prior knowledge on http://), "h2"
	// (HTTP/2 over TLS on https://) or "auto" (HTTP/2 when an https://
	// backend selects it by ALPN, HTTP/1.1 otherwise). gRPC needs h2c or
	// h2.
	Protocol string `yaml:"protocol"`
	// Timeouts towards the backends.
	Timeouts Timeouts `yaml:"timeouts"`
	// HealthCheck actively probes each backend; off when Path is empty.
	HealthCheck HealthCheck `yaml:"health_check"`
	// Outlier ejects backends after consecutive failures (passive health).
	Outlier Outlier `yaml:"outlier_detection"`
	// Retries resend failed requests to another backend.
	Retries Retries `yaml:"retries"`
	// MaxConns bounds the connections per backend (0: unlimited); a
	// request that finds none free waits up to MaxConnsWait, then gets 503.
	MaxConns     int      `yaml:"max_conns"`
	MaxConnsWait Duration `yaml:"max_conns_wait"`
	// FailOpen sends requests to all backends when every one is
	// unhealthy, instead of answering 503.
	FailOpen bool `yaml:"fail_open"`
	// Middlewares override the global entries of the same name for this
	// route (`enabled: false` turns one off) and may add others.
	Middlewares []Middleware `yaml:"middlewares"`
	// ClientAuth refuses (403) requests whose connection presented no
	// verified client certificate (see RouteClientAuth).
	ClientAuth *RouteClientAuth `yaml:"client_auth"`
	// Match narrows the route further. Not a file key: the providers
	// (Gateway API, Ingress) set it.
	Match RouteMatch `yaml:"-"`
}

// RouteMatch are the conditions of a provider's route besides host, path
// prefix and methods. All must hold.
type RouteMatch struct {
	// Exact matches Path exactly instead of as a prefix.
	Exact bool
	// Headers must be present with these exact values (names are
	// case-insensitive).
	Headers []NameValue
	// Query parameters must be present with these exact values.
	Query []NameValue
}

// NameValue is one header or query parameter condition.
type NameValue struct{ Name, Value string }

// Key is a canonical text of the conditions, "" when there are none.
func (m *RouteMatch) Key() string {
	if !m.Exact && len(m.Headers) == 0 && len(m.Query) == 0 {
		return ""
	}
	var b strings.Builder
	if m.Exact {
		b.WriteString("=")
	}
	for _, h := range m.Headers {
		b.WriteString("\x00h:" + asciiLower(h.Name) + "=" + h.Value)
	}
	for _, q := range m.Query {
		b.WriteString("\x00q:" + q.Name + "=" + q.Value)
	}
	return b.String()
}

// RouteClientAuth is a route's client certificate requirement. The
// certificates are asked for and verified by server.tls.client_auth.
type RouteClientAuth struct {
	// Mode is "require" (the only mode, and the default).
	Mode string `yaml:"mode"`
}

// HealthCheck configures active health checks of a pool.
type HealthCheck struct {
	// Type is "http" (default: GET Path) or "grpc" (the standard
	// grpc.health.v1 Check call).
	Type string `yaml:"type"`
	// Path is probed with GET on every backend, e.g. "/health".
	Path string `yaml:"path"`
	// Service is the service name a grpc check asks about ("": the
	// server as a whole).
	Service string `yaml:"service"`
	// Interval between probes of one backend (jittered by up to 10%). Default 5s.
	Interval Duration `yaml:"interval"`
	// Timeout of one probe. Default 2s.
	Timeout Duration `yaml:"timeout"`
	// HealthyThreshold consecutive successes mark a backend up. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold consecutive failures mark it down. Default 2.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// ExpectStatus lists the statuses counted as success: codes (200) or
	// classes ("2xx"). Default ["2xx", "3xx"].
	ExpectStatus []string `yaml:"expect_status"`
}

// Outlier configures passive health: a backend failing Consecutive
// requests in a row is ejected for BaseEjection, doubled on each repeat up
// to MaxEjection.
type Outlier struct {
	// Consecutive failures before ejection; 0 disables. Default 5.
	Consecutive int `yaml:"consecutive_failures"`
	// BaseEjection is the first ejection time. Default 30s.
	BaseEjection Duration `yaml:"base_ejection"`
	// MaxEjection caps the ejection time. Default 300s.
	MaxEjection Duration `yaml:"max_ejection"`
	// Statuses counted as failures besides connect errors and timeouts.
	// Default [502, 503, 504].
	Statuses []int `yaml:"statuses"`
}

// Retries configures how failed requests are resent.
type Retries struct {
	// Attempts is the number of retries after the first try. Default 2;
	// 0 disables retries.
	Attempts *int `yaml:"attempts"`
	// On lists the conditions that trigger a retry: "connect_failure",
	// "timeout", "reset" and status codes such as "503". Default
	// [connect_failure, reset]: a timeout is retried only when listed.
	On []string `yaml:"on"`
	// Budget bounds retries to this fraction of requests, so a failing
	// cluster is not hammered. Default 0.2.
	Budget *float64 `yaml:"budget"`
	// MaxBodyBytes is the largest request body kept in memory so it can
	// be replayed. Default 65536.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// NonIdempotent allows retrying POST, PATCH and the like; by default
	// only GET, HEAD, OPTIONS, TRACE, PUT and DELETE are retried (a
	// connect failure is always safe to retry).
	NonIdempotent bool `yaml:"non_idempotent"`
	// GRPCOn lists the gRPC statuses (by name, e.g. "unavailable") on
	// which a gRPC call is sent to another backend, when the backend
	// answered with the status alone (nothing of it reached the client).
	GRPCOn []string `yaml:"grpc_on"`
}

// Middleware is one entry of a `middlewares:` list. Name selects the
// kind, registered by its middleware package (see
// RegisterMiddlewareKind); the entry's other keys are the kind's
// settings.
//
// A route entry with the name of a global entry (and, for a kind whose
// entries may repeat, its identity) overrides it key by key: its
// effective settings are the kind's defaults, then the global entry's
// keys, then the route entry's keys. A value written on the route always
// wins, an explicit 0, false or empty list too; lists and maps replace
// the global ones. Load stores these effective settings in the route
// entry's Settings. In a Config built in code, a route entry's Settings
// replace the global entry's; nil Settings inherit them.
type Middleware struct {
	Name    string `yaml:"name"`
	Enabled *bool  `yaml:"enabled"`
	// Settings is a pointer to the kind's settings struct (what its New
	// returns), decoded from the entry's other keys.
	Settings any `yaml:"-"`

	// src is the mapping the entry was read from, while it is loaded.
	src *entrySource
}

// IsEnabled reports whether the entry is on (default true).
func (m *Middleware) IsEnabled() bool { return m.Enabled == nil || *m.Enabled }

// Backend is one upstream server.
type Backend struct {
	// URL is "http://host:port" or "https://host:port" with an
	// optional base path.
	URL string `yaml:"url"`
	// Weight for weighted strategies. Default 1.
	Weight int `yaml:"weight"`
	// TLS overrides fields of the route's `tls` for this https://
	// backend.
	TLS *BackendTLS `yaml:"tls"`
}

// Timeouts towards backends.
type Timeouts struct {
	// Connect bounds the TCP connect. Default 5s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the response head once the request
	// is sent. Default 5s. On expiry the client gets 504.
	ResponseHeader Duration `yaml:"response_header"`
	// Idle closes pooled keep-alive backend connections idle that long. Default 90s.
	Idle Duration `yaml:"idle"`
	// MaxIdleConns bounds the pooled idle connections per backend. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// Read bounds the wait between two reads of a response body. Default 60s.
	Read Duration `yaml:"read"`
	// Total bounds a request with its retries until the response head:
	// no retry starts after it, a retry's response_header wait is cut to
	// what remains, and the client gets 504. Default 15s, or connect plus
	// response_header when that is longer; 0 turns it off.
	Total Duration `yaml:"total"`
}

// Duration is a time.Duration that YAML writes as "1.5s", "200ms" or a
// bare integer number of seconds (the task list's `window: 60`).
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
