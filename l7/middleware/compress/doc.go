// Package compress is the `compress` middleware: it compresses response
// bodies with zstd, brotli or gzip, chosen by the request's
// Accept-Encoding (q-values honoured; ties go to the configured order of
// encodings), as they stream from the backend.
//
// A response is compressed when its status has a body and is not 206,
// its Content-Type is in the configured list, it carries no
// Content-Encoding and no Cache-Control: no-transform, the request is
// not a HEAD nor a Range request, and its body is at least min_length
// bytes. Such a response (whether the client accepts an encoding or
// not) gets Vary: Accept-Encoding, merged into the Vary it has. A
// compressed response loses its Content-Length and Accept-Ranges, is
// streamed (chunked on HTTP/1.1), and a strong ETag becomes weak (W/), as
// nginx does. Without a Content-Length, the first min_length bytes are
// held to decide; a flush of the backend before that (a stream) starts
// compression at once.
//
// The package owns its settings (Settings: keys, defaults, validation)
// and registers the module; it never buffers a whole body and never
// blocks. Encoders are pooled by algorithm and level, so a compressed
// response allocates almost nothing once the pools are warm. It must
// not import l7: it sees requests and responses only through
// l7/middleware.
package compress
