package config

import "time"

// Config is one parsed, defaulted and validated configuration file.
// It is immutable once Load returns it: the runtime builds its
// request-path structures from it and never writes back.
type Config struct {
	Server Server  `yaml:"server"`
	Admin  Admin   `yaml:"admin"`
	Log    Log     `yaml:"log"`
	Routes []Route `yaml:"routes"`

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
	// H2C accepts HTTP/2 with prior knowledge on the same port. Default true.
	H2C *bool `yaml:"h2c"`
	// ReadHeaderTimeout bounds the time to read one request head. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a keep-alive client connection idle that long. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds one write to a client that stopped reading. Default 60s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxHeaderBytes bounds the request line plus headers. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout is how long a stop waits for in-flight requests. Default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Admin is the operator listener (/metrics, /healthz, /admin/*).
type Admin struct {
	// Listen is the admin address. Default ":8081"; "off" disables it.
	Listen string `yaml:"listen"`
	// Token protects /admin/* endpoints (Authorization: Bearer TOKEN).
	Token string `yaml:"token"`
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
	// Strategy selects a backend: "round_robin" (default).
	Strategy string `yaml:"strategy"`
	// Timeouts towards the backends.
	Timeouts Timeouts `yaml:"timeouts"`
}

// Backend is one upstream server.
type Backend struct {
	// URL is "http://host:port" with an optional base path.
	URL string `yaml:"url"`
	// Weight for weighted strategies. Default 1.
	Weight int `yaml:"weight"`
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
}

// Duration is a time.Duration that YAML writes as "1.5s", "200ms" or a
// bare integer number of seconds (the task list's `window: 60`).
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
