// Package headers is the headers middleware: it sets, adds and removes
// request headers (on the request forwarded to the backend) and response
// headers (on what the client gets), with values that may be built from
// the request.
//
// A value is a template parsed once, when the configuration is loaded:
// literal text and placeholders among {client_ip} (the client address,
// by the trusted_proxies rule the rate limiter uses), {request_id},
// {host}, {method}, {path} (the path as forwarded: after a rewrite),
// {scheme}, {jwt.CLAIM} (a claim of the token the jwt middleware
// verified earlier in the chain) and {header.NAME} (a request header as
// received). "{{" and "}}" write a literal brace. An unknown placeholder
// is a configuration error.
//
// For each side the operations run in this order: remove, set, add. A
// set replaces every line of its name (in any case); an add keeps them.
// A value that expands to nothing (a missing claim or header) sets no
// header: set then only removes, add does nothing. A value that would
// carry a control character (from a claim) is dropped the same way, so
// that nothing a client controls can split a header.
//
// Response operations apply to the backend's response and to the replies
// the gateway writes itself once headers has run (a 502 or 504, or the
// reply of a middleware after it in the chain, such as a WASM plugin's); a
// request answered earlier in the chain (redirect, jwt's 401, rate_limit's
// 429) never reached headers. Removing or setting a response
// header reaches the backend's lines; lines other middlewares add (CORS,
// rate-limit headers) stay. Framing and hop-by-hop headers (Host,
// Content-Length, Transfer-Encoding, Connection, TE, Upgrade, Trailer,
// Keep-Alive, Proxy-Connection) and the ones the proxy writes itself
// (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Via,
// X-Request-Id) are refused.
//
// Constant values cost no allocation per request.
package headers
