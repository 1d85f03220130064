// Package wasm is the wasm middleware: it runs an http-wasm guest
// (package plugins) on a route's requests and, when the guest asks for
// it, on their responses.
//
// The plugin host is process-wide: the binary creates one
// plugins.Manager and hands it to the proxy as the resource named
// ManagerResource. Without it, a wasm entry fails to build.
package wasm

import (
	"errors"
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/plugins"
)

// ManagerResource is the name of the *plugins.Manager among the
// resources a middleware is built with (middleware.Build.Resources).
const ManagerResource = "wasm.manager"

func init() {
	middleware.Register(middleware.Module{
		Name:        "wasm",
		Order:       Order,
		Settings:    defaults,
		Identity:    identity,
		IdentityKey: "path",
		Rejections:  middleware.RejectionMetric{Name: "rustygate_plugin_failures_total", Help: "Requests rejected or failed by a WASM plugin, by route and reason.", ByReason: true},
		New:         buildModule,
	})
}

// buildModule compiles (or takes from the host's cache) and starts the guest.
// It runs in both phases. The middleware does not declare MayBlock: the
// call of a trusted guest on an idle instance runs on the event loop, and
// the plugin host moves the exchange off its loop (Request.Offload) before
// anything that may wait (a new or suspect guest, whose calls go to the
// worker threads, a slot, a new instance, a request body).
func buildModule(b middleware.Build) (middleware.Instance, error) {
	m, _ := b.Resources[ManagerResource].(*plugins.Manager)
	if m == nil {
		return middleware.Instance{}, errors.New("WASM plugins are not enabled in this process")
	}
	s, ok := b.Settings.(*Settings)
	if !ok {
		return middleware.Instance{}, fmt.Errorf("wasm: settings of type %T", b.Settings)
	}
	entry := plugins.Entry{Path: s.Path, Config: s.Config, FailOpen: s.FailOpen, MaxConcurrency: s.MaxConcurrency, MaxQueue: s.MaxQueue}
	h, err := plugins.New(m, entry, b.Route, b.Reporter)
	if err != nil {
		return middleware.Instance{}, err
	}
	caps := middleware.Capabilities{Phases: middleware.PhaseRequest | middleware.PhaseResponse}
	return middleware.Instance{Handler: h, Caps: caps}, nil
}
