// Package l7 is RustyGate's HTTP reverse proxy: listeners, the request
// router and the forwarding engine.
//
// Two front ends share one proxy core. The fast engine is a purpose-built
// HTTP/1.1 server (connections run as coroutines on epoll event loops, or
// one goroutine each with `event_loops: off`; pooled buffers; no allocation
// per request on the common path; an idle keep-alive connection on a loop
// holds neither a coroutine nor buffers) and an HTTP/2 server of its own
// (h2conn.go, h2read.go, h2headers.go, h2stream.go, h2sink.go) for h2c
// with prior knowledge, detected on the fast engine's connections, and
// for ALPN h2 over TLS. It frames and compresses with x/net's Framer and
// hpack (it never parses frames or HPACK itself): the connection's
// goroutine reads frames, each stream's exchange runs on a goroutine of
// its own, pooled with its buffers, and writes its frames under the
// connection's write lock, the last writer of a burst flushing for all;
// responses are encoded without the dynamic table, so streams encode
// without a shared lock. Its costs are bounded: 128 concurrent streams
// (more are refused), 256 exchanges still running per connection with
// reset ones (rapid reset), the header list at max_header_bytes (past it
// a 431, CONTINUATION floods a GOAWAY), a control-frame budget (PING,
// SETTINGS, RST_STREAM... floods get ENHANCE_YOUR_CALM), request bodies
// within the flow-control windows (256 KiB a stream, 1 MiB a connection),
// and a client that keeps its window closed past write_timeout gets the
// stream reset. Shutdown sends GOAWAY and lets the streams in flight
// finish. The standard engine is net/http, selectable with
// `server.engine: standard` (HTTP/1.1, and HTTP/2 with x/net's server).
// Both parse requests with the same strictness
// (request-smuggling vectors give 400 and a closed connection), route with
// the same Router and talk to backends through the same clients: HTTP/1.1
// with keep-alive pools (idle connections kept apart by the event loop
// whose epoll set has them, taken by that loop first), or HTTP/2 (backendh2.go, forwardh2.go) for a
// route whose `protocol` is h2c, h2 or auto, with connections multiplexed
// up to the backend's stream limit, PING liveness and GOAWAY handled; the
// response (trailers included) streams to the client while the request
// body still flows. gRPC (grpc.go) passes through as HTTP/2 messages the
// proxy does not parse; it honours grpc-timeout, and answers a gRPC call
// with a trailers-only grpc-status when the reply is its own
// (shapeLocal). An https:// backend is spoken to over TLS
// (backendtls.go): its certificate verified per the route's `tls`, an
// optional client certificate, pooled connections, a session cache per
// backend; a failed handshake is a backend failure with reason "tls".
// Exchanges on TLS backend connections run off the event loops.
//
// Before routing, every request (HTTP/1.1 and HTTP/2 alike) goes through
// the server's request rules (request.applyRules): header names with
// underscores are dropped or refused, and the path is normalized
// (pathnorm.go). The normalized path is the one the Router matches, the
// access log shows and the backend receives; the gateway never forwards a
// spelling of the path that it did not route. A middleware may rewrite the
// forwarded target after routing (Request.SetURI, the rewrite
// middleware): the access line then also names what the backend got
// (upstream_target). An absolute-form target's
// authority, validated as host[:port], is the request's Host for routing
// and forwarding.
//
// The Router matches host (exact, most specific wildcard, any), then the
// longest path prefix on segment boundaries, then methods. Routes built
// by a provider (config.RouteMatch: the Gateway API, Ingress) may also
// require an exact path and exact header and query values; within one
// prefix they are tried before the routes without conditions, in the
// Gateway API's order of precedence.
//
// TLS: [Server.ServeTLS] serves the HTTPS listener with a *tls.Config
// from the certs package. Each connection's handshake runs on its own
// goroutine, bounded by read_header_timeout (a client that sends plain
// HTTP gets a 400, other bytes a close); ALPN "h2" goes to the same
// HTTP/2 server as h2c (the engine's), HTTP/1.1 to the fast engine on a goroutine per
// connection (the event loops read raw descriptors, TLS records need
// crypto/tls) or to net/http with `engine: standard`. Requests over TLS
// carry the https scheme (X-Forwarded-Proto, spans, the access line with
// tls_version and sni). Before routing (edge.go), the plain listener
// answers ACME HTTP-01 challenges through the hook of
// [Server.SetHTTPChallenge] and applies redirect_https; with
// client_auth, client certificate headers sent by clients are removed and
// the verified subject and SANs added; a route with client_auth answers
// 403 to a connection without a verified certificate.
//
// HTTP/3: [Server.ServeHTTP3] serves QUIC (quic-go) on a UDP socket the
// caller owns, with the TLS listener's certificates and ALPN "h3"; its
// requests go through the standard engine's handler (serveStd, stdSink),
// so routing, middlewares, logs and traces are the same.
// 0-RTT is refused. While a socket serves, responses over TLS advertise
// it in Alt-Svc (http3.go). Shutdown sends GOAWAY and waits for the
// requests in flight; the socket stays open for a binary upgrade.
//
// A request body can be bounded by a middleware (Request.LimitRequestBody):
// a streamed body is counted as it is sent to the backend, and the
// exchange ends with 413 past the bound. A connection closed with a body
// still coming in drains it briefly first (lingerClose), so that the
// client reads the response instead of a reset.
//
// A route's middlewares are built through the module registry of
// l7/middleware (chain.go): l7 names no middleware kind and imports none
// of their packages (nor the WASM host, package plugins). It runs what
// the instances declare: the request phase in chain order (policy.go),
// the response phase of those that declare it in reverse order before
// the response head is written (respphase.go), the body filters of those
// that declare PhaseResponseBody as the body streams, the head then
// written with the filters' first output (bodyfilter.go), and a route with an
// instance that declares MayBlock off the event loops. A policy whose work
// is long only at times (basic_auth verifying a password hash on a cache
// miss) declares MayBlock false and calls Request.Offload before that
// work, which moves that one exchange off its loop. The connection
// rejoins its loop when the exchange ends.
//
// l7 does not own configuration files, logs or backend health: it reads an
// immutable Snapshot built from a validated config.Config, writes access
// entries to observe.Logger, and asks upstream for backends.
package l7
