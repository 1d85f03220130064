// Package standard links the middlewares RustyGate ships: importing it
// registers each of them (see middleware.Register). Adding a middleware
// is its own package under l7/middleware plus one import line here.
package standard

import (
	_ "github.com/rustygate/rustygate/l7/middleware/basicauth"
	_ "github.com/rustygate/rustygate/l7/middleware/compress"
	_ "github.com/rustygate/rustygate/l7/middleware/cors"
	_ "github.com/rustygate/rustygate/l7/middleware/forwardauth"
	_ "github.com/rustygate/rustygate/l7/middleware/headers"
	_ "github.com/rustygate/rustygate/l7/middleware/ipfilter"
	_ "github.com/rustygate/rustygate/l7/middleware/jwt"
	_ "github.com/rustygate/rustygate/l7/middleware/limits"
	_ "github.com/rustygate/rustygate/l7/middleware/mirror"
	_ "github.com/rustygate/rustygate/l7/middleware/ratelimit"
	_ "github.com/rustygate/rustygate/l7/middleware/redirect"
	_ "github.com/rustygate/rustygate/l7/middleware/rewrite"
	_ "github.com/rustygate/rustygate/l7/middleware/waf"
	_ "github.com/rustygate/rustygate/l7/middleware/wasm"
)
