package middleware

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustygate/rustygate/config"
)

// Phase is a point of an exchange at which a middleware runs.
type Phase uint8

const (
	// PhaseRequest: Handle runs before the request is forwarded.
	PhaseRequest Phase = 1 << iota
	// PhaseResponse: the handler also sees the response before it is
	// written to the client.
	PhaseResponse
	// PhaseResponseBody (with PhaseResponse): the handler may transform
	// the response body as it streams (see ResponseBodyFilter).
	PhaseResponseBody
)

// Capabilities are what a built middleware declares about itself. The
// proxy relies on them and discovers nothing by type: a middleware that
// may block says so here, or it runs on an event loop.
type Capabilities struct {
	// Phases the middleware runs in (PhaseRequest at least).
	Phases Phase
	// MayBlock: Handle may wait on something other than the request
	// (a WASM guest call, a key-set fetch). A route with such a
	// middleware is served off the event loops, so that one slow call
	// never stalls the other connections of a loop.
	MayBlock bool
}

// Instance is one built middleware: its handler and its declared
// capabilities. A route's chain is a list of instances.
type Instance struct {
	Handler Handler
	Caps    Capabilities
}

// Offences receives the events that can get a client banned at a lower
// layer. Implementations run on the request path: fast and safe for
// concurrent use.
type Offences interface {
	// RateLimitExceeded: ip sent over times its limit in the window.
	RateLimitExceeded(ip netip.Addr, over float64)
	// Rejected: a policy refused a request from ip.
	Rejected(policy, reason string, ip netip.Addr)
}

// Build is what a module's New gets to build one route's middleware.
type Build struct {
	// Config is the effective entry (see config.Config.RouteMiddlewares).
	Config config.Middleware
	// Settings is the effective entry's typed settings: the value the
	// module's Settings returned, decoded, merged, resolved and
	// validated (the same value as Config.Settings).
	Settings any
	// Route is the route's name.
	Route string
	// Reporter receives the middleware's rejections (never nil).
	Reporter Reporter
	// Logger is the process logger (never nil).
	Logger *slog.Logger
	// Offences is where ban-worthy events go (may be nil).
	Offences Offences
	// Previous is the chain of the replaced snapshot's route of the same
	// name (nil at start): a module may carry its state over a reload.
	Previous []Instance
	// Resources are process-wide services a module may need (such as the
	// WASM plugin host), by the name their provider documents.
	Resources map[string]any
	// Metrics is the registry of the process's metrics, where a module
	// registers collectors of its own beyond Rejections, through
	// RegisterCollector (nil: metrics are not exported).
	Metrics prometheus.Registerer
}

// RegisterCollector registers c in reg and returns it, or the collector
// of the same description registered before (every route's build of a
// module asks for the same collectors): the series a module declares
// live as long as the process. With a nil reg, c is returned
// unregistered.
func RegisterCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &are):
		if prev, ok := are.ExistingCollector.(C); ok {
			return prev, nil
		}
	}
	return c, err
}

// Module describes one middleware kind. Each middleware package
// registers its module in an init function; a binary links the kinds it
// offers by importing their packages (see package standard).
type Module struct {
	// Name is the value of a `middlewares:` entry's name.
	Name string
	// Rejections is the counter of the requests the middleware answers
	// itself, where the Reporter's Rejected calls with this module's name
	// are counted (zero Name: not counted).
	Rejections RejectionMetric
	// Order ranks the module in a route's chain (see
	// config.MiddlewareKind.Order).
	Order int
	// Settings returns a pointer to a new settings struct of the module,
	// its defaults filled: the entry's keys are decoded into it strictly
	// by its yaml tags. It may implement config.SettingsValidator,
	// config.SettingsResolver and config.ChainOrderer.
	Settings func() any
	// Identity tells apart the entries of a module that may be listed
	// more than once (see config.MiddlewareKind.Identity).
	Identity func(settings any) string
	// IdentityKey is the settings key holding the identity (see
	// config.MiddlewareKind.IdentityKey).
	IdentityKey string
	// New builds a route's middleware from an effective entry. It
	// validates what the configuration check cannot (files, keys) and
	// fails instead of building something that would misbehave on the
	// request path. A middleware that owns background work implements
	// Closer; New releases what it started when it fails.
	New func(b Build) (Instance, error)
}

// RejectionMetric describes a Prometheus counter of rejected requests,
// labelled by route, and by reason when ByReason is set.
type RejectionMetric struct {
	Name     string
	Help     string
	ByReason bool
}

var (
	modulesMu sync.RWMutex
	modules   = map[string]Module{}
)

// Register adds a module. It panics when the name is empty, taken, or
// New is nil: registration happens in init, and such a mistake must stop
// the program before it serves anything.
func Register(m Module) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	switch _, dup := modules[m.Name]; {
	case m.Name == "":
		panic("middleware: Register with an empty name")
	case dup:
		panic(fmt.Sprintf("middleware: module %q registered twice", m.Name))
	case m.New == nil:
		panic(fmt.Sprintf("middleware: module %q has no New", m.Name))
	}
	if m.Settings != nil {
		config.RegisterMiddlewareKind(config.MiddlewareKind{Name: m.Name, Order: m.Order, New: m.Settings, Identity: m.Identity, IdentityKey: m.IdentityKey})
	}
	modules[m.Name] = m
}

// Lookup returns the module registered under name.
func Lookup(name string) (Module, bool) {
	modulesMu.RLock()
	defer modulesMu.RUnlock()
	m, ok := modules[name]
	return m, ok
}

// Names returns the names of the registered modules, sorted.
func Names() []string {
	modulesMu.RLock()
	defer modulesMu.RUnlock()
	names := make([]string, 0, len(modules))
	for n := range modules {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
