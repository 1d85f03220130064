// Package standard links the middlewares RustyGate ships: importing it
// registers each of them (see middleware.Register). Adding a middleware
// is its own package under l7/middleware plus one import line here.
package standard

import (
	_ "github.com/rustygate/rustygate/l7/middleware/cors"
	_ "github.com/rustygate/rustygate/l7/middleware/jwt"
	_ "github.com/rustygate/rustygate/l7/middleware/ratelimit"
	_ "github.com/rustygate/rustygate/l7/middleware/waf"
	_ "github.com/rustygate/rustygate/l7/middleware/wasm"
)
