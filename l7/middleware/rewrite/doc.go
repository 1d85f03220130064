// Package rewrite is the rewrite middleware: it changes the target
// forwarded to the backend, its path and its query.
//
// The path goes through, in this order: regex (matched against the path,
// replaced by replacement, in which $1, $name or ${name} stand for the
// captures and $$ is a dollar, written $${name} and $$$$ in a
// configuration file, where ${...} is an environment variable; a path
// the regex does not match is left as it is),
// strip_prefix (removed when the path starts with it on a segment
// boundary; an empty rest becomes "/") and add_prefix. The query then
// goes through remove, set (replaces every parameter of that name) and
// add (appends one); the other parameters keep their order and spelling.
//
// The route, and every middleware before rewrite in the chain (jwt,
// rate_limit, ...), decided on the path as received and normalised;
// those after it (headers' {path}) and the backend see the rewritten
// one. A route's strip_prefix and a backend's base path still apply to
// the rewritten path (strip_prefix only if it still starts with the
// route's path). The access line names the target sent to the backend
// as upstream_target.
//
// The rewritten target is always a valid origin-form target: it starts
// with exactly one '/', and what a path may not carry raw (spaces,
// control characters, '?', '#', non-ASCII bytes, a '%' that does not
// start an escape) is percent-encoded, so a backend that decodes paths
// gets the same path the gateway logged. A rewritten path with a dot
// segment ("." or "..", raw or encoded) is refused with 400, as the
// gateway refuses them in received paths.
package rewrite
