// Package basicauth is the basic_auth request policy: HTTP Basic
// authentication (RFC 7617) against users whose passwords are stored as
// bcrypt ($2a$, $2b$, $2y$) or argon2id (PHC string) hashes, listed
// inline (`users`) or in an htpasswd file (`users_file`, read when the
// configuration is loaded or reloaded). Other hash formats (MD5 apr1,
// SHA-1, crypt, plain text) are refused at load with the line that holds
// them: they are too cheap to brute-force.
//
// A request without valid credentials gets 401 with
// `WWW-Authenticate: Basic realm="...", charset="UTF-8"`, counted in
// rustygate_basic_auth_rejected_total by reason (missing, malformed,
// invalid). An unknown user is answered only after a hash verification
// of the same kind as a known user's, so response times do not tell
// which user names exist. On success the Authorization header is removed
// from the forwarded request (remove_header, default true) and the user
// name can be passed to the backend in a header (user_header), whose
// client-sent copies are replaced.
//
// Verifying a bcrypt or argon2id hash takes tens of milliseconds of CPU
// by design. Successful verifications are cached (cache_size entries,
// least recently used evicted, each valid cache_ttl), keyed by a keyed
// SHA-256 of the credentials as sent, so a known client costs a hash of
// a few dozen bytes and a map lookup. The policy declares MayBlock
// false, so routes that use it stay on the event loops; on a cache miss
// it moves the exchange off its loop (Request.Offload) before verifying,
// and at most GOMAXPROCS verifications run at once (argon2id's memory is
// bounded with them), so a flood of wrong passwords never stalls other
// connections. Requests that bring the same credentials while they are
// being verified wait for that one verification and share its result:
// when a busy client's entry expires, its connections cost one hash, not
// one each.
package basicauth
