package config

import (
	"fmt"
	"slices"
	"sync"
)

// MiddlewareKind is what the configuration knows of one middleware kind.
// The kinds are not listed here: each middleware package registers its
// own (through the middleware registry, which calls
// RegisterMiddlewareKind), and config decodes, merges, defaults and
// validates every entry through the kind it names, without
// kind-specific code.
type MiddlewareKind struct {
	// Name is the value of an entry's name.
	Name string
	// Order ranks the kind in a route's chain: lower runs first. Kinds
	// of equal order keep the order of the configuration (globals
	// first). A settings value implementing ChainOrderer may move its
	// entry.
	Order int
	// New returns a pointer to a new settings struct of the kind, its
	// defaults filled. The entry's keys other than name and enabled are
	// decoded into it strictly, following its yaml tags (unknown keys
	// and wrong types are reported with file:line and key path).
	New func() any
	// Identity tells apart the entries of a kind that may be listed more
	// than once in one list (wasm: by path). nil: at most one entry of
	// the kind per list, and a route entry overrides the global entry of
	// the same name.
	Identity func(settings any) string
	// IdentityKey is the settings key holding the identity (wasm:
	// "path"): a duplicate entry is reported there.
	IdentityKey string
}

// SettingsValidator is implemented by settings that check themselves.
// Validate is called on every effective entry (see
// Config.RouteMiddlewares): the global entry, or the route entry merged
// over the global entry it overrides, with its dependent defaults
// resolved.
type SettingsValidator interface {
	Validate(c *SettingsCheck)
}

// SettingsResolver is implemented by settings that have defaults that
// depend on other fields (a rate limit's burst defaults to its limit).
// Resolve is called on each effective entry, before Validate and before
// the entry is built, so that a route overriding the fields such a
// default depends on gets the right value.
type SettingsResolver interface {
	Resolve()
}

// ChainOrderer is implemented by settings whose place in the chain
// depends on their values (a rate limit keyed on a JWT claim runs after
// jwt, which provides the claims). ChainOrder returns the order to use
// instead of the kind's.
type ChainOrderer interface {
	ChainOrder(kindOrder int) int
}

// SettingsCheck is what a settings value's Validate reports into. Field
// paths are relative to the entry: "limit", "allow_origins[1]",
// "claims_to_headers.sub", or "" for the entry as a whole; the check
// turns them into the entry's key path and the line where the value was
// written (or the entry's line for a value inherited from a global entry
// or defaulted).
type SettingsCheck struct {
	enabled bool
	files   bool
	written func(field string) bool
	report  func(field, msg string)
	// used and plugin are the configuration's (see FirstUse and
	// CheckPlugin); nil in a check made by NewSettingsCheck.
	used   map[string]bool
	plugin func(path string, guestConfig map[string]any) error
}

// NewSettingsCheck returns a check of an entry. written reports whether a
// field was written in the file; report receives each problem. It is
// meant for tests of a kind's Validate: config builds its own.
func NewSettingsCheck(enabled, files bool, written func(field string) bool, report func(field, msg string)) *SettingsCheck {
	if written == nil {
		written = func(string) bool { return false }
	}
	return &SettingsCheck{enabled: enabled, files: files, written: written, report: report}
}

// Errorf reports a problem with field.
func (c *SettingsCheck) Errorf(field, format string, args ...any) {
	c.report(field, fmt.Sprintf(format, args...))
}

// Enabled reports whether the entry ends up enabled. Checks that a
// required field is present apply only to enabled entries; checks of
// the values written apply to all.
func (c *SettingsCheck) Enabled() bool { return c.enabled }

// Written reports whether field was written in the file (in the route
// entry or in the global entry it overrides), as opposed to defaulted.
func (c *SettingsCheck) Written(field string) bool { return c.written(field) }

// Files reports whether files the settings name should be checked
// (readable, well-formed): true when the configuration comes from a file
// or bytes, false for a Config built in code.
func (c *SettingsCheck) Files() bool { return c.files }

// FirstUse reports whether no entry of the configuration checked before
// this one used key (a file name, say), and records that this one does:
// a file named by several entries is checked, and its problem reported,
// once, at the first.
func (c *SettingsCheck) FirstUse(key string) bool {
	if c.used == nil {
		return true
	}
	if c.used[key] {
		return false
	}
	c.used[key] = true
	return true
}

// CheckPlugin runs on a plugin file, with the guest configuration of its
// entry, the check given to LoadChecked (`rustygate validate` compiles
// and starts the module there); without one it returns nil.
func (c *SettingsCheck) CheckPlugin(path string, guestConfig map[string]any) error {
	if c.plugin == nil {
		return nil
	}
	return c.plugin(path, guestConfig)
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]MiddlewareKind{}
)

// RegisterMiddlewareKind adds a kind. It panics on an empty or taken
// name, a nil New, or settings that are not a pointer to a struct or use
// the keys name or enabled: kinds are registered in init functions, and
// such a mistake must stop the program before it reads any
// configuration.
func RegisterMiddlewareKind(k MiddlewareKind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	switch _, dup := kinds[k.Name]; {
	case k.Name == "":
		panic("config: RegisterMiddlewareKind with an empty name")
	case dup:
		panic(fmt.Sprintf("config: middleware kind %q registered twice", k.Name))
	case k.New == nil:
		panic(fmt.Sprintf("config: middleware kind %q has no New", k.Name))
	}
	if err := checkSettingsType(k.New()); err != nil {
		panic(fmt.Sprintf("config: middleware kind %q: %v", k.Name, err))
	}
	kinds[k.Name] = k
}

// LookupMiddlewareKind returns the kind registered under name.
func LookupMiddlewareKind(name string) (MiddlewareKind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	k, ok := kinds[name]
	return k, ok
}

// MiddlewareKindNames returns the registered kinds' names, sorted.
func MiddlewareKindNames() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
