package redirect

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

func init() {
	middleware.Register(middleware.Module{
		Name:     "redirect",
		Order:    5,
		Settings: func() any { return &Settings{Status: 302, KeepQuery: true, Match: "path"} },
		New:      build,
	})
}

// Settings are the keys of a redirect entry.
type Settings struct {
	// Scheme, Host, Port and Path are the parts of the target that
	// change; the others are the request's.
	Scheme string `yaml:"scheme"`
	Host   string `yaml:"host"`
	Port   int    `yaml:"port"`
	Path   string `yaml:"path"`
	// Regex, when set, selects the requests to redirect; Replacement is
	// their target, with $1 / ${name} for the captures.
	Regex       string `yaml:"regex"`
	Replacement string `yaml:"replacement"`
	// Match is what Regex is matched against: path or path_query.
	Match string `yaml:"match"`
	// Status is the redirection's status (default 302).
	Status int `yaml:"status"`
	// KeepQuery appends the request's query to the target (default true).
	KeepQuery bool `yaml:"keep_query"`
	// TrustedProxies are the peers whose X-Forwarded-Proto gives the
	// scheme the client used.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	switch s.Scheme {
	case "", "http", "https":
	default:
		c.Errorf("scheme", "invalid scheme %q (want http or https)", s.Scheme)
	}
	if s.Host != "" && !validHost(s.Host, false) {
		c.Errorf("host", "invalid host %q (want a host name or an IP address, without a port: see port)", s.Host)
	}
	if s.Port < 0 || s.Port > 65535 {
		c.Errorf("port", "invalid port %d (want 1 to 65535)", s.Port)
	}
	if s.Path != "" && !validPath(s.Path) {
		c.Errorf("path", "invalid path %q (want an absolute path such as /new, without spaces, '?' or '#')", s.Path)
	}
	switch s.Status {
	case 301, 302, 303, 307, 308:
	default:
		c.Errorf("status", "invalid status %d (want 301, 302, 303, 307 or 308)", s.Status)
	}
	switch s.Match {
	case "path", "path_query":
	default:
		c.Errorf("match", "invalid match %q (want path or path_query)", s.Match)
	}
	s.validateRegex(c)
	for i, p := range s.TrustedProxies {
		if _, err := clientip.ParsePrefix(p); err != nil {
			c.Errorf(fmt.Sprintf("trusted_proxies[%d]", i), "invalid trusted proxy %q (want an IP address or a CIDR such as 10.0.0.0/8)", p)
		}
	}
	if c.Enabled() && s.Scheme == "" && s.Host == "" && s.Port == 0 && s.Path == "" && s.Regex == "" && s.Replacement == "" {
		c.Errorf("", "nothing to redirect to: set scheme, host, port, path, or regex and replacement")
	}
}

func (s *Settings) validateRegex(c *config.SettingsCheck) {
	switch {
	case s.Regex == "" && s.Replacement != "":
		c.Errorf("replacement", "replacement without regex")
		return
	case s.Regex == "":
		return
	case s.Path != "":
		c.Errorf("path", "path and regex exclude each other: the replacement is the path")
	}
	re, err := regexp.Compile(s.Regex)
	if err != nil {
		c.Errorf("regex", "invalid regex: %v", err)
		return
	}
	if s.Replacement == "" {
		c.Errorf("replacement", "regex needs a replacement")
		return
	}
	if err := checkReplacement(re, s.Replacement); err != nil {
		c.Errorf("replacement", "%v", err)
	}
}

// checkReplacement checks that a replacement names only captures of re
// and is a path or an absolute http(s) URL.
func checkReplacement(re *regexp.Regexp, repl string) error {
	for i := 0; i < len(repl); i++ {
		if repl[i] != '$' {
			if c := repl[i]; c <= ' ' || c == 0x7f || c == '#' {
				return fmt.Errorf("replacement %q has a space, a control character or '#'", repl)
			}
			continue
		}
		name, n := captureName(repl[i+1:])
		if n == 0 {
			return fmt.Errorf("'$' not followed by a capture in %q (write $$ for a dollar)", repl)
		}
		i += n
		if name == "$" {
			continue
		}
		if !hasCapture(re, name) {
			return fmt.Errorf("replacement names ${%s}, which the regex does not capture", name)
		}
	}
	if !strings.HasPrefix(repl, "/") && !strings.HasPrefix(repl, "$") && !isAbsoluteURL(repl) {
		return fmt.Errorf("replacement %q is neither a path (/...) nor an http(s) URL", repl)
	}
	return nil
}

// captureName reads what follows a '$': a number, a name, {name} or '$'.
// It returns the name and how many bytes it took (0: none).
func captureName(s string) (string, int) {
	if s == "" {
		return "", 0
	}
	if s[0] == '$' {
		return "$", 1
	}
	if s[0] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 2 {
			return "", 0
		}
		return s[1:end], end + 1
	}
	n := 0
	for n < len(s) && (s[n] == '_' || 'a' <= s[n]|0x20 && s[n]|0x20 <= 'z' || '0' <= s[n] && s[n] <= '9') {
		n++
	}
	return s[:n], n
}

func hasCapture(re *regexp.Regexp, name string) bool {
	var num int
	if _, err := fmt.Sscanf(name, "%d", &num); err == nil && fmt.Sprint(num) == name {
		return num <= re.NumSubexp()
	}
	return re.SubexpIndex(name) > 0
}

func isAbsoluteURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// build compiles the regex once; the handler never waits.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, errors.New("redirect: built without its settings")
	}
	h, err := New(s)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: h, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
