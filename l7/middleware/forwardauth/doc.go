// Package forwardauth is the forward_auth request policy: each request
// is first described to an auth service, which decides (nginx's
// auth_request, Traefik's ForwardAuth).
//
// The policy sends `method` (default GET) to `address` with the client's
// request headers (all of them but the per-connection ones, or those of
// `request_headers`), without the body, plus X-Forwarded-Method,
// X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Uri (the target the
// backend would get) and X-Forwarded-For. Redirects are not followed.
//
//   - A 2xx answer lets the request through; the headers of
//     `copy_headers` are copied from the answer onto the forwarded
//     request. Client-sent headers of those names are always removed
//     first, so a client cannot forge them.
//   - Any other answer is returned to the client as it is: status,
//     headers (but the per-connection ones) and body (at most
//     `max_response_body` bytes; a longer one is an error).
//   - No answer within `timeout` (connecting included), an unreachable
//     service or a broken answer: the client gets `on_error` (503 by
//     default, or 502). The request is never let through (fail closed)
//     and never waits longer than the timeout.
//
// Refusals are counted in rustygate_forward_auth_rejected_total by reason
// ("denied": the service said no; "error": no usable answer). Calls go
// through a pool of at most `max_conns` connections (HTTP/1.1, TLS for an
// https:// address with the `tls` settings of a route's backends). The
// policy waits on the network, so it declares MayBlock: its routes run
// off the event loops.
package forwardauth
