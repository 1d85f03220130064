// Package mirror is the mirror request policy: it sends a copy of a share
// of a route's requests to another backend (a new version under test, a
// recorder) and ignores what that backend answers.
//
// The copy carries the request as it is forwarded at this point of the
// chain: method, target (after rewrite), headers (after the policies
// before it), plus X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host as a backend gets them. Its Host is the mirror
// backend's, as nginx's proxy_pass sends by default (keep_host: the
// client's Host, for a mirror that serves the same virtual hosts). The
// backend URL names the scheme and authority only: the copy's path is
// the request's.
//
// The original request is never delayed or failed by its copy. Copies
// are sent from their own goroutines, each within `timeout`, at most
// `max_in_flight` at once: a copy beyond that is dropped, never queued. A
// request body is copied when it is already in memory (it came with the
// head, as small bodies do) and holds at most `max_body` bytes; a request
// whose body is larger or still on the wire is not mirrored, since
// waiting for the body would delay the original. `percentage` (0 to 100,
// fractions allowed) of the requests are picked at random.
//
// Each copy is counted in rustygate_mirror_requests_total by route and
// result (label reason): sent (the mirror answered, whatever its
// status), failed (no answer within the timeout, or unreachable),
// dropped (max_in_flight reached), skipped (the body could not be
// copied). The policy never waits, so it keeps its routes on the event
// loops; Close cancels the copies in flight and waits for them.
package mirror
