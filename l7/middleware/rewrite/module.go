package rewrite

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

func init() {
	middleware.Register(middleware.Module{
		Name:     "rewrite",
		Order:    50,
		Settings: func() any { return &Settings{} },
		New:      build,
	})
}

// Settings are the keys of a rewrite entry.
type Settings struct {
	Regex       string   `yaml:"regex"`
	Replacement string   `yaml:"replacement"`
	StripPrefix string   `yaml:"strip_prefix"`
	AddPrefix   string   `yaml:"add_prefix"`
	Query       QueryOps `yaml:"query"`
}

// QueryOps change the query's parameters; values are written as they
// are, percent-encoded where a query needs it.
type QueryOps struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

func (q *QueryOps) empty() bool { return len(q.Set) == 0 && len(q.Add) == 0 && len(q.Remove) == 0 }

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	s.validateRegex(c)
	for _, p := range []struct{ key, val string }{{"strip_prefix", s.StripPrefix}, {"add_prefix", s.AddPrefix}} {
		if p.val != "" && !validPrefix(p.val) {
			c.Errorf(p.key, "invalid prefix %q (want a path such as /api, without spaces, '?', '#' or dot segments)", p.val)
		}
	}
	for _, m := range []struct {
		key string
		m   map[string]string
	}{{"query.set", s.Query.Set}, {"query.add", s.Query.Add}} {
		for name, v := range m.m {
			if name == "" {
				c.Errorf(m.key, "empty parameter name")
			}
			if strings.ContainsFunc(v, isControl) {
				c.Errorf(m.key+"."+name, "control character in %q", v)
			}
		}
	}
	for i, name := range s.Query.Remove {
		if name == "" {
			c.Errorf(fmt.Sprintf("query.remove[%d]", i), "empty parameter name")
		}
	}
	if c.Enabled() && s.Regex == "" && s.StripPrefix == "" && s.AddPrefix == "" && s.Query.empty() {
		c.Errorf("", "nothing to rewrite: set regex and replacement, strip_prefix, add_prefix or query")
	}
}

func (s *Settings) validateRegex(c *config.SettingsCheck) {
	switch {
	case s.Regex == "" && s.Replacement != "":
		c.Errorf("replacement", "replacement without regex")
		return
	case s.Regex == "":
		return
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

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// validPrefix reports a path prefix fit for a target as it is.
func validPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '\\' {
			return false
		}
	}
	return !hasDotSegment([]byte(p))
}

// checkReplacement checks that a replacement is a path and names only
// captures of re.
func checkReplacement(re *regexp.Regexp, repl string) error {
	if !strings.HasPrefix(repl, "/") && !strings.HasPrefix(repl, "$") {
		return fmt.Errorf("replacement %q is not a path (/...)", repl)
	}
	for i := 0; i < len(repl); i++ {
		switch c := repl[i]; {
		case c == '?' || c == '#':
			return fmt.Errorf("replacement %q has a '%c': change the query with query", repl, c)
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("replacement %q has a space or a control character", repl)
		case c != '$':
			continue
		}
		name, n := captureName(repl[i+1:])
		if n == 0 {
			return fmt.Errorf("'$' not followed by a capture in %q (write $$ for a dollar)", repl)
		}
		i += n
		if name != "$" && !hasCapture(re, name) {
			return fmt.Errorf("replacement names ${%s}, which the regex does not capture", name)
		}
	}
	return nil
}

// captureName reads what follows a '$' as regexp.Expand does: a name,
// {name} or '$'. It returns the name and how many bytes it took.
func captureName(s string) (string, int) {
	switch {
	case s == "":
		return "", 0
	case s[0] == '$':
		return "$", 1
	case s[0] == '{':
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

// build compiles the regex once; the handler never waits.
func build(b middleware.Build) (middleware.Instance, error) {
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, errors.New("rewrite: built without its settings")
	}
	h, err := New(s)
	if err != nil {
		return middleware.Instance{}, err
	}
	return middleware.Instance{Handler: h, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest}}, nil
}
