package config_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
)

// probe is a middleware kind known only to these tests: config decodes,
// merges, validates and orders it with no code of its own.
type probe struct {
	Level   int               `yaml:"level"`
	Verbose bool              `yaml:"verbose"`
	Tags    []string          `yaml:"tags"`
	Mode    string            `yaml:"mode"`
	Wait    config.Duration   `yaml:"wait"`
	Labels  map[string]string `yaml:"labels"`
	// resolved is set by Resolve; not a key.
	resolved bool
}

const probeOrder = 25

func init() {
	config.RegisterMiddlewareKind(config.MiddlewareKind{
		Name:  "probe",
		Order: probeOrder,
		New: func() any {
			return &probe{Level: 3, Verbose: true, Tags: []string{"default"}, Mode: "early"}
		},
	})
}

// Resolve: the wait defaults to one second per level.
func (p *probe) Resolve() {
	if p.Wait == 0 {
		p.Wait = config.Duration(time.Duration(p.Level) * time.Second)
	}
	p.resolved = true
}

func (p *probe) Validate(c *config.SettingsCheck) {
	if c.Written("level") && (p.Level < 0 || p.Level > 10) {
		c.Errorf("level", "must be between 0 and 10 (got %d)", p.Level)
	}
	for k, tag := range p.Tags {
		if tag == "" {
			c.Errorf(fmt.Sprintf("tags[%d]", k), "must not be empty")
		}
	}
	switch {
	case p.Mode == "" && c.Enabled():
		c.Errorf("mode", "is required")
	case p.Mode != "" && p.Mode != "early" && p.Mode != "late":
		c.Errorf("mode", "unknown mode %q", p.Mode)
	}
	if c.Enabled() && p.Verbose && p.Level == 0 {
		c.Errorf("", "a verbose probe needs a level")
	}
}

// ChainOrder: a late probe runs after every built-in kind.
func (p *probe) ChainOrder(kindOrder int) int {
	if p.Mode == "late" {
		return 95
	}
	return kindOrder
}

func probeOf(t *testing.T, m config.Middleware) *probe {
	t.Helper()
	p, ok := m.Settings.(*probe)
	if !ok || !p.resolved {
		t.Fatalf("entry %q: settings %T (%+v), want a resolved *probe", m.Name, m.Settings, m.Settings)
	}
	return p
}

// TestMiddlewareKindDecodeMerge: a route entry overrides the global entry
// key by key; an explicit false, 0 or empty list on a route overrides;
// << merges (the name too) and variables work in entries.
func TestMiddlewareKindDecodeMerge(t *testing.T) {
	t.Setenv("RG_PROBE_LEVEL", "7")
	c, err := config.Parse("good.yaml", src(`
middlewares:
	- name: probe
		level: ${RG_PROBE_LEVEL}
		verbose: true
		tags: [a, b]
		labels: { team: x }
routes:
	- path: /inherit
		backend: http://a
	- path: /false
		backend: http://a
		middlewares: [ { name: probe, verbose: false } ]
	- path: /zero
		backend: http://a
		middlewares: [ { name: probe, level: 0, verbose: false, tags: [], labels: {} } ]
	- path: /off
		backend: http://a
		middlewares: [ { name: probe, enabled: false } ]
	- path: /merge
		backend: http://a
		middlewares:
			- &late { name: probe, mode: late }
	- path: /merge2
		backend: http://a
		middlewares:
			- { <<: *late, wait: 2s }
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []probe{
		{Level: 7, Verbose: true, Tags: []string{"a", "b"}, Mode: "early", Wait: config.Duration(7 * time.Second), Labels: map[string]string{"team": "x"}, resolved: true},
		{Level: 7, Verbose: false, Tags: []string{"a", "b"}, Mode: "early", Wait: config.Duration(7 * time.Second), Labels: map[string]string{"team": "x"}, resolved: true},
		{Level: 0, Verbose: false, Tags: []string{}, Mode: "early", Wait: 0, Labels: map[string]string{}, resolved: true},
		{},
		{Level: 7, Verbose: true, Tags: []string{"a", "b"}, Mode: "late", Wait: config.Duration(7 * time.Second), Labels: map[string]string{"team": "x"}, resolved: true},
		{Level: 7, Verbose: true, Tags: []string{"a", "b"}, Mode: "late", Wait: config.Duration(2 * time.Second), Labels: map[string]string{"team": "x"}, resolved: true},
	}
	for i, w := range want {
		got := c.RouteMiddlewares(i)
		if i == 3 {
			if len(got) != 0 {
				t.Errorf("route %d: %d entries, want the disabled probe left out", i, len(got))
			}
			continue
		}
		if len(got) != 1 || !reflect.DeepEqual(*probeOf(t, got[0]), w) {
			t.Errorf("route %d: got %+v, want %+v", i, got, w)
		}
	}
	// The global entry keeps its own settings.
	if g := probeOf(t, c.Middlewares[0]); g.Level != 7 || !g.Verbose {
		t.Errorf("global settings changed: %+v", g)
	}
}

// TestMiddlewareKindErrors: problems of a kind's settings carry file:line
// and key path; a route reports its own problems, not those it only
// inherits from the global entry.
func TestMiddlewareKindErrors(t *testing.T) {
	_, err := config.Parse("bad.yaml", src(`
middlewares:
	- name: probe
		levle: 3
		tags: ["", ok]
		mode: sideways
	- name: probe
		enabled: false
		level: x
routes:
	- path: /a
		backend: http://a
		middlewares:
			- name: probe
				verbose: false
			- name: probe
	- path: /b
		backend: http://a
		middlewares:
			- name: probe
				level: 11
				tags: [x]
				mode: early
			- name: probe
				level: 0
				wait: soon
`))
	want := []string{
		`bad.yaml:3: unknown key "levle" at middlewares[0] (known: name, enabled, level, verbose, tags, mode, wait, labels)`,
		`bad.yaml:4: middlewares[0].tags[0]: must not be empty`,
		`bad.yaml:5: middlewares[0].mode: unknown mode "sideways"`,
		`bad.yaml:6: middlewares[1].name: duplicate middleware "probe" (also middlewares[0])`,
		`bad.yaml:8: middlewares[1].level: expected an integer, got a string`,
		`bad.yaml:15: routes[0].middlewares[1].name: duplicate middleware "probe" (also middlewares[0])`,
		`bad.yaml:20: routes[1].middlewares[0].level: must be between 0 and 10 (got 11)`,
		`bad.yaml:23: routes[1].middlewares[1]: a verbose probe needs a level`,
		`bad.yaml:23: routes[1].middlewares[1].name: duplicate middleware "probe" (also middlewares[0])`,
		`bad.yaml:25: routes[1].middlewares[1].wait: invalid duration "soon" (want e.g. "1.5s", "200ms", "1m" or a whole number of seconds)`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n got: %s\nwant: %s", indent(fmt.Sprint(err)), indent(strings.Join(want, "\n")))
	}
}

// TestMiddlewareKindOrder: entries run by their kind's order, which a
// settings value may change, keeping the configuration's order among
// equals; the registry lists the test kind beside the shipped ones.
func TestMiddlewareKindOrder(t *testing.T) {
	withPluginFiles(t)
	c, err := config.Parse("good.yaml", src(`
middlewares:
	- { name: wasm, path: a.wasm }
	- { name: jwt, secret: `+secret32+` }
	- { name: probe }
	- { name: cors, allow_origins: ["*"] }
	- { name: rate_limit, limit: 5 }
routes:
	- { path: /a, backend: "http://a" }
	- path: /b
		backend: http://a
		middlewares:
			- { name: probe, mode: late }
			- { name: wasm, path: b.wasm }
`))
	if err != nil {
		t.Fatal(err)
	}
	names := func(list []config.Middleware) string {
		var out []string
		for _, m := range list {
			out = append(out, m.Name)
		}
		return strings.Join(out, " ")
	}
	if got, want := names(c.RouteMiddlewares(0)), "cors rate_limit probe jwt wasm"; got != want {
		t.Errorf("route 0: %s, want %s", got, want)
	}
	if got, want := names(c.RouteMiddlewares(1)), "cors rate_limit jwt wasm wasm probe"; got != want {
		t.Errorf("route 1: %s, want %s", got, want)
	}
	kinds := config.MiddlewareKindNames()
	if !slices.IsSorted(kinds) || !slices.Contains(kinds, "probe") || !slices.Contains(kinds, "cors") {
		t.Errorf("MiddlewareKindNames() = %q", kinds)
	}
}

// TestMiddlewareKindInCode: a Config built in code gives settings
// directly; a route entry's settings replace the global entry's, and
// nil settings inherit them.
func TestMiddlewareKindInCode(t *testing.T) {
	c := &config.Config{
		Middlewares: []config.Middleware{{Name: "probe", Settings: &probe{Level: 4, Mode: "early"}}},
		Routes: []config.Route{
			{Path: "/a", Backend: "http://a", Middlewares: []config.Middleware{{Name: "probe", Settings: &probe{Level: 20, Mode: "late"}}}},
			{Path: "/b", Backend: "http://b", Middlewares: []config.Middleware{{Name: "probe", Enabled: ptr(true)}}},
		},
	}
	c.ApplyDefaults()
	if p := probeOf(t, c.RouteMiddlewares(0)[0]); p.Level != 20 || p.Wait.D() != 20*time.Second {
		t.Errorf("route /a: %+v, want the route's settings, resolved", p)
	}
	if p := probeOf(t, c.RouteMiddlewares(1)[0]); p.Level != 4 {
		t.Errorf("route /b: %+v, want the global settings", p)
	}
	want := `<config>: routes[0].middlewares[0].level: must be between 0 and 10 (got 20)`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want %s", err, want)
	}
}

// TestRegisterMiddlewareKindChecks: settings that are not a pointer to a
// struct, or that use a key every entry has, are refused at registration.
func TestRegisterMiddlewareKindChecks(t *testing.T) {
	type withName struct {
		Name string `yaml:"name"`
	}
	for _, newFn := range []func() any{
		func() any { return probe{} },
		func() any { return new(int) },
		func() any { return &withName{} },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%T registered", newFn())
				}
			}()
			config.RegisterMiddlewareKind(config.MiddlewareKind{Name: fmt.Sprintf("bad_%T", newFn()), New: newFn})
		}()
	}
}
