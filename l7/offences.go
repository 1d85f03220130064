package l7

import "github.com/rustygate/rustygate/l7/middleware"

// Offences receives the L7 events that can get a client banned at a
// lower layer: a rate limit exceeded by a factor, a failed JWT. The
// implementation must be fast and safe for concurrent use: it runs on the
// request path.
type Offences = middleware.Offences

// SetOffences sets where offences go (nil: nowhere). Snapshots built
// afterwards use it.
func (t *Transport) SetOffences(o Offences) { t.offences = o }

// SetResource hands a process-wide service to the middlewares of the
// snapshots built afterwards (middleware.Build.Resources), under the name
// its module documents, such as the WASM plugin host
// (wasm.ManagerResource). nil removes it.
func (t *Transport) SetResource(name string, v any) {
	if v == nil {
		delete(t.resources, name)
		return
	}
	if t.resources == nil {
		t.resources = map[string]any{}
	}
	t.resources[name] = v
}
