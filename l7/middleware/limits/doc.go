// Package limits is the limits middleware: a route's maximum request
// body size, and the Server and Via headers of its responses.
//
// max_request_body (bytes, or a size such as "10m", "10MiB", "8MB"; 0:
// no limit) refuses a larger body with 413. A request that declares its
// length (Content-Length) is refused before any of its body is read or
// forwarded. A body of unknown length (chunked, or HTTP/2 without
// content-length) is counted as it streams to the backend, never
// buffered: the byte past the limit is not forwarded, the backend
// connection is dropped, and the client gets 413 if no response has
// started. After a 413 the client connection is closed unless the whole
// body had already been read, so the unread rest of a body can never be
// taken for a next request.
//
// server_header is keep (the backend's Server goes through), remove, or
// a value that replaces it (and that the gateway's own replies carry
// too). via: true adds "Via: 1.1 rustygate" (or the via_pseudonym) to
// responses, as RFC 9110 7.6.3 asks of a proxy; the gateway always adds
// its Via to the requests it forwards.
package limits
