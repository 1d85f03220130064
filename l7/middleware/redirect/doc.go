// Package redirect is the redirect middleware: it answers a request with
// a redirection instead of forwarding it.
//
// An entry redirects in one of two ways:
//
//   - By target parts: scheme (http or https), host, port and path. A
//     request is redirected when the URL built from them differs from
//     the request's own: `scheme: https` sends plain-HTTP requests to
//     HTTPS (the request's port is dropped unless port is set) and lets
//     HTTPS ones through, `host: www.example.com` moves other hosts
//     there, `path: /new` replaces the path.
//   - By regex, matched against the path (or the path and query, with
//     match: path_query): a request that matches is redirected to the
//     replacement, in which $1, $name or ${name} stand for the captures
//     ($$ is a dollar; in a configuration file, where ${...} is an
//     environment variable and $$ a dollar, they are written $${name}
//     and $$$$). A replacement that is a path is combined with scheme,
//     host and port when they are set; one with a scheme and host is
//     used as it is.
//
// The scheme the client used is the connection's, or the
// X-Forwarded-Proto of a peer listed in trusted_proxies (a load balancer
// that terminated TLS: without it, `scheme: https` behind one would
// redirect forever).
//
// The query is kept unless keep_query is false (a regex on path_query
// writes the query itself). The status is 302 by default, as for
// Traefik's redirect middlewares and nginx's `rewrite ... redirect`:
// browsers and caches keep a 301 or 308 for good, so a mistake in a
// permanent redirect cannot be taken back; 301, 302, 303, 307 and 308
// are accepted. A 301 or 302 answer to a method other than GET or HEAD
// becomes 308 or 307, as Traefik does, so that the client repeats the
// method and body instead of turning them into a GET.
//
// The Location is never an open redirect the configuration did not ask
// for: a Location taken from the request (its Host, its path) is checked
// and normalised, so that a path such as //evil.com or /\evil.com cannot
// make a scheme-relative Location, and a Host that is not a plain
// host[:port] gets a 400 instead of a redirect.
package redirect
