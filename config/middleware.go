package config

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// This file treats every middleware kind alike: an entry's keys other
// than name and enabled are decoded into the settings its kind's New
// returns; a route entry overriding a global entry is decoded over it;
// the effective settings are resolved and validated through the
// interfaces of kinds.go. No kind is named here.

// entrySource is where an entry was written: its mapping, kept while the
// file is loaded so that a route entry can be decoded over the global
// entry it overrides. Load drops it once done.
type entrySource struct {
	node *yaml.Node
}

// entryShell is the type an entry's mapping is decoded into: name,
// enabled and the exported fields of the kind's settings struct.
type entryShell struct {
	typ    reflect.Type
	fields []int // settings field of shell field 2+k
}

var entryShells sync.Map // settings struct type (or nil) -> *entryShell

// entryKeys are the keys every entry has.
var entryKeys = []reflect.StructField{
	{Name: "EntryName", Type: reflect.TypeFor[string](), Tag: `yaml:"name"`},
	{Name: "EntryEnabled", Type: reflect.TypeFor[*bool](), Tag: `yaml:"enabled"`},
}

// shellOf returns the shell of a settings struct type (nil: name and
// enabled alone).
func shellOf(t reflect.Type) *entryShell {
	var key any = t
	if t == nil {
		key = "none"
	}
	if sh, ok := entryShells.Load(key); ok {
		return sh.(*entryShell)
	}
	fields := slices.Clone(entryKeys)
	sh := &entryShell{}
	for i := 0; t != nil && i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); !f.IsExported() || name == "-" {
			continue
		}
		fields = append(fields, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
		sh.fields = append(sh.fields, i)
	}
	sh.typ = reflect.StructOf(fields)
	actual, _ := entryShells.LoadOrStore(key, sh)
	return actual.(*entryShell)
}

// checkSettingsType checks what a kind's New returns.
func checkSettingsType(s any) (err error) {
	t := reflect.TypeOf(s)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("New returns %T, want a pointer to a struct", s)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("settings %s: %v", t.Elem(), r)
		}
	}()
	info := structInfoOf(shellOf(t.Elem()).typ)
	if len(info.names) != len(info.index) {
		return fmt.Errorf("settings %s use the key name or enabled, which every entry has", t.Elem())
	}
	return nil
}

// decodeSettings decodes the mapping n, an entry written at path, into
// the settings s (a pointer to a struct of the shell's type, or an
// invalid Value for an entry of no known kind: then only name and enabled
// are read, and other keys are left alone). It returns the entry's name
// and enabled.
func (w *walker) decodeSettings(n *yaml.Node, s reflect.Value, path string, line int) (string, *bool) {
	var sh *entryShell
	if s.IsValid() {
		sh = shellOf(s.Elem().Type())
	} else {
		sh = shellOf(nil)
		w.lenient = true
		defer func() { w.lenient = false }()
	}
	v := reflect.New(sh.typ).Elem()
	for k, i := range sh.fields {
		v.Field(2 + k).Set(s.Elem().Field(i))
	}
	w.decode(n, v, path, line)
	for k, i := range sh.fields {
		s.Elem().Field(i).Set(v.Field(2 + k))
	}
	return v.Field(0).String(), v.Field(1).Interface().(*bool)
}

// middleware decodes one entry of a middlewares list: its name and
// enabled, and its other keys strictly into its kind's settings.
func (w *walker) middleware(n *yaml.Node, m *Middleware, path string, line int) {
	if n.Kind != yaml.MappingNode {
		w.fail(path, line, "expected a mapping, got %s", describe(n))
		return
	}
	// The name decides how to read the other keys: look it up first,
	// quietly (it may come through a << merge or from a variable).
	probe := w.scratch()
	name, _ := probe.decodeSettings(n, reflect.Value{}, path, line)
	var s reflect.Value
	kind, ok := LookupMiddlewareKind(name)
	if ok {
		s = reflect.ValueOf(kind.New())
	}
	m.Name, m.Enabled = w.decodeSettings(n, s, path, line)
	if ok && m.Name == name {
		m.Settings = s.Interface()
		m.src = &entrySource{node: n}
	}
}

// scratch returns a walker that decodes like w, into maps of its own:
// what it finds is thrown away (w reported it, or will).
func (w *walker) scratch() *walker {
	s := newWalker(w.file, 0, w.lookup)
	s.maxSteps = w.maxSteps
	return s
}

// sameEntry reports whether a route entry r overrides the global entry
// g: same name, and for a kind whose entries may repeat, same identity.
func sameEntry(g, r *Middleware) bool {
	if g.Name != r.Name {
		return false
	}
	kind, ok := LookupMiddlewareKind(g.Name)
	return !ok || kind.Identity == nil || kind.Identity(settingsOf(kind, g)) == kind.Identity(settingsOf(kind, r))
}

// settingsOf returns m's settings, or the kind's defaults when it has
// none (an entry built in code that only turns a global entry on or off).
func settingsOf(kind MiddlewareKind, m *Middleware) any {
	if m.Settings != nil {
		return m.Settings
	}
	return kind.New()
}

// globalFor returns the index of the global entry that the route entry
// r overrides, or -1.
func globalFor(globals []Middleware, r *Middleware) int {
	if _, ok := LookupMiddlewareKind(r.Name); !ok {
		return -1
	}
	for k := range globals {
		if sameEntry(&globals[k], r) {
			return k
		}
	}
	return -1
}

// mergeRouteEntries gives each route entry of a file that overrides a
// global entry its effective settings: the kind's defaults, the global
// entry's keys, then its own keys. Both mappings are walked again;
// their problems were reported by the first walk.
func mergeRouteEntries(c *Config, w *walker) {
	mw := w.scratch()
	mw.maxSteps = 4 * w.maxSteps
	for ri := range c.Routes {
		for j := range c.Routes[ri].Middlewares {
			r := &c.Routes[ri].Middlewares[j]
			gi := globalFor(c.Middlewares, r)
			if gi < 0 || r.src == nil || c.Middlewares[gi].src == nil {
				continue
			}
			kind, _ := LookupMiddlewareKind(r.Name)
			s := reflect.ValueOf(kind.New())
			mw.decodeSettings(c.Middlewares[gi].src.node, s, "", 0)
			mw.decodeSettings(r.src.node, s, "", 0)
			r.Settings = s.Interface()
		}
	}
	if mw.aborted {
		w.aborted = true
		w.add("", 0, "aliases expand to too many values (more than %d) in the middleware entries", mw.maxSteps)
	}
}

// dropSources forgets the mappings the entries were read from.
func dropSources(c *Config) {
	for i := range c.Middlewares {
		c.Middlewares[i].src = nil
	}
	for ri := range c.Routes {
		for j := range c.Routes[ri].Middlewares {
			c.Routes[ri].Middlewares[j].src = nil
		}
	}
}

// middlewareDefaults gives the entries built in code without settings
// their kind's defaults (a route entry that overrides a global entry: the
// global entry's settings), and resolves the dependent defaults of every
// entry's settings, which are its effective settings (see
// RouteMiddlewares).
func middlewareDefaults(c *Config) {
	fill := func(m *Middleware, inherit *Middleware) {
		kind, ok := LookupMiddlewareKind(m.Name)
		if !ok {
			return
		}
		switch {
		case m.Settings != nil:
		case inherit != nil && inherit.Settings != nil:
			m.Settings = inherit.Settings
		default:
			m.Settings = kind.New()
		}
		if r, ok := m.Settings.(SettingsResolver); ok {
			r.Resolve()
		}
	}
	for i := range c.Middlewares {
		fill(&c.Middlewares[i], nil)
	}
	for ri := range c.Routes {
		for j := range c.Routes[ri].Middlewares {
			r := &c.Routes[ri].Middlewares[j]
			var g *Middleware
			if gi := globalFor(c.Middlewares, r); gi >= 0 {
				g = &c.Middlewares[gi]
			}
			fill(r, g)
		}
	}
}

// effective returns the global entry g overridden by the route entry r:
// r's enabled when set, r's settings when set (a route entry read from a
// file holds its merged settings, see mergeRouteEntries), else g's.
func effective(g, r Middleware) Middleware {
	out := g
	out.src = nil
	if r.Enabled != nil {
		out.Enabled = r.Enabled
	}
	if r.Settings != nil {
		out.Settings = r.Settings
	}
	return out
}

// RouteMiddlewares returns the effective middleware list of route i:
// each global entry, overridden by the route entry of the same name (for
// a kind whose entries may repeat: same name and identity), then the
// route entries that override none. Entries that end up disabled are
// left out; each entry has its Settings (the kind's defaults when a
// Config built in code gave none). The list is in chain order: by the
// kind's Order, or the order the settings' ChainOrder gives, keeping the
// configuration's order (globals first) among equals.
//
// The result is freshly allocated; the settings in it are shared with c
// and must not be modified.
func (c *Config) RouteMiddlewares(i int) []Middleware {
	routeEntries := c.Routes[i].Middlewares
	used := make([]bool, len(routeEntries))
	var out []Middleware
	for _, g := range c.Middlewares {
		m := effective(g, Middleware{})
		for j := range routeEntries {
			if !used[j] && sameEntry(&g, &routeEntries[j]) {
				m = effective(g, routeEntries[j])
				used[j] = true
				break
			}
		}
		out = append(out, m)
	}
	for j, r := range routeEntries {
		if !used[j] {
			out = append(out, effective(r, Middleware{}))
		}
	}
	out = slices.DeleteFunc(out, func(m Middleware) bool { return !m.IsEnabled() })
	for k := range out {
		if kind, ok := LookupMiddlewareKind(out[k].Name); ok {
			out[k].Settings = settingsOf(kind, &out[k])
		}
	}
	slices.SortStableFunc(out, func(a, b Middleware) int { return cmp.Compare(chainOrder(&a), chainOrder(&b)) })
	return out
}

// chainOrder is the rank of an effective entry in its chain.
func chainOrder(m *Middleware) int {
	kind, ok := LookupMiddlewareKind(m.Name)
	if !ok {
		return math.MaxInt
	}
	if o, ok := m.Settings.(ChainOrderer); ok {
		return o.ChainOrder(kind.Order)
	}
	return kind.Order
}

// issue is one problem a settings value reported; field is "" for the
// entry as a whole.
type issue struct {
	field, msg string
}

// validateMiddlewares checks the global and per-route middleware entries:
// the name of each, then the effective settings of each through its
// kind's Validate (after Resolve). A route entry that overrides a global
// entry is checked as merged over it; the problems it shares with the
// global entry in fields the route entry does not write are reported
// once, at the global entry.
func validateMiddlewares(c *Config, st *vstate) {
	used := map[string]bool{}
	globalIssues := make([][]issue, len(c.Middlewares))
	for i := range c.Middlewares {
		m := &c.Middlewares[i]
		p := fmt.Sprintf("middlewares[%d]", i)
		kind, ok := checkName(m, p, st)
		if !ok {
			continue
		}
		globalIssues[i] = checkSettings(settingsOf(kind, m), m.IsEnabled(), st, used, writtenIn(st, m, p, nil, ""))
		report(st, p, globalIssues[i], nil)
	}
	checkDuplicates(c.Middlewares, "middlewares", st)

	for ri := range c.Routes {
		entries := c.Routes[ri].Middlewares
		for j := range entries {
			r := &entries[j]
			p := fmt.Sprintf("routes[%d].middlewares[%d]", ri, j)
			kind, ok := checkName(r, p, st)
			if !ok {
				continue
			}
			eff, gp := effective(*r, Middleware{}), ""
			var inherited []issue
			if gi := globalFor(c.Middlewares, r); gi >= 0 {
				eff, gp = effective(c.Middlewares[gi], *r), fmt.Sprintf("middlewares[%d]", gi)
				inherited = globalIssues[gi]
			}
			own := writtenIn(st, r, p, nil, "")
			issues := checkSettings(settingsOf(kind, &eff), eff.IsEnabled(), st, used, writtenIn(st, &eff, p, own, gp))
			report(st, p, issues, func(is issue) bool {
				return !own(topKey(is.field)) && slices.Contains(inherited, is)
			})
		}
		checkDuplicates(entries, fmt.Sprintf("routes[%d].middlewares", ri), st)
	}
}

// checkName reports a missing or unknown name.
func checkName(m *Middleware, p string, st *vstate) (MiddlewareKind, bool) {
	kind, ok := LookupMiddlewareKind(m.Name)
	switch {
	case m.Name == "":
		st.add(p+".name", "is required")
	case !ok:
		st.add(p+".name", "unknown middleware %q (supported: %s)", m.Name, strings.Join(MiddlewareKindNames(), ", "))
	}
	return kind, ok && m.Name != ""
}

// checkSettings resolves and validates effective settings and returns
// what they report.
func checkSettings(s any, enabled bool, st *vstate, used map[string]bool, written func(string) bool) []issue {
	if r, ok := s.(SettingsResolver); ok {
		r.Resolve()
	}
	v, ok := s.(SettingsValidator)
	if !ok {
		return nil
	}
	var out []issue
	c := NewSettingsCheck(enabled, st.files, func(field string) bool { return written(topKey(field)) }, func(field, msg string) {
		out = append(out, issue{field, msg})
	})
	c.used, c.plugin = used, st.pluginCheck
	v.Validate(c)
	return out
}

// writtenIn returns whether a key of the entry m at p was written: in a
// file, a key of the entry's mapping (or of the global entry at gp it
// overrides); in a Config built in code, a field that is not zero.
// also, when set, is asked first.
func writtenIn(st *vstate, m *Middleware, p string, also func(string) bool, gp string) func(string) bool {
	if st.lines == nil {
		return func(key string) bool { return nonZeroKey(m.Settings, key) }
	}
	return func(key string) bool {
		if also != nil && also(key) {
			return true
		}
		_, ok := st.lines[p+"."+key]
		if !ok && gp != "" {
			_, ok = st.lines[gp+"."+key]
		}
		return ok
	}
}

// nonZeroKey reports whether the field of settings s with yaml key key
// is set (not zero).
func nonZeroKey(s any, key string) bool {
	v := reflect.ValueOf(s)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	idx, ok := structInfoOf(v.Elem().Type()).index[key]
	return ok && !v.Elem().Field(idx).IsZero()
}

// topKey returns the entry key of a field path: "allow_origins" for
// "allow_origins[1]", "claims_to_headers" for "claims_to_headers.sub".
func topKey(field string) string {
	if i := strings.IndexAny(field, ".["); i >= 0 {
		return field[:i]
	}
	return field
}

// report adds the issues of the entry at p, except those skip says were
// reported elsewhere and those at a path that already has a problem.
func report(st *vstate, p string, issues []issue, skip func(issue) bool) {
	for _, is := range issues {
		if skip != nil && skip(is) {
			continue
		}
		path := p
		if is.field != "" {
			path += "." + is.field
		}
		if !slices.ContainsFunc(st.errs, func(e FieldError) bool { return e.Path == path }) {
			st.add(path, "%s", is.msg)
		}
	}
}

// checkDuplicates reports a kind listed twice in one list, or for a kind
// whose entries may repeat, twice with the same identity.
func checkDuplicates(list []Middleware, listPath string, st *vstate) {
	first := make(map[string]int)
	for j := range list {
		m := &list[j]
		kind, ok := LookupMiddlewareKind(m.Name)
		if !ok {
			continue
		}
		p := fmt.Sprintf("%s[%d]", listPath, j)
		key := m.Name
		if kind.Identity != nil {
			id := kind.Identity(settingsOf(kind, m))
			if id == "" {
				continue
			}
			key += "\x00" + id
			if k, dup := first[key]; dup {
				if kind.IdentityKey != "" {
					st.add(p+"."+kind.IdentityKey, "duplicate %s entry with %s %q (also %s[%d])", m.Name, kind.IdentityKey, id, lastElem(listPath), k)
				} else {
					st.add(p, "duplicate %s entry %q (also %s[%d])", m.Name, id, lastElem(listPath), k)
				}
				continue
			}
		} else if k, dup := first[key]; dup {
			st.add(p+".name", "duplicate middleware %q (also %s[%d])", m.Name, lastElem(listPath), k)
			continue
		}
		first[key] = j
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
