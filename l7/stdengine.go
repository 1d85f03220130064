package l7

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// replayLimit is the largest request body the standard engine reads
// before forwarding, so a request on a stale pooled connection can be
// sent again.
const replayLimit = 16 << 10

var stdBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// serveStd is the net/http handler: HTTP/2 always, HTTP/1.1 with
// `server.engine: standard`. It feeds the same proxy core as the fast
// engine.
func (s *Server) serveStd(w http.ResponseWriter, r *http.Request) {
	sink := &stdSink{w: w, r: r}
	req := &request{contentLength: -1}
	x := &exchange{
		srv:    s,
		snap:   s.snap.Load(),
		req:    req,
		start:  time.Now(),
		scheme: "http",
		sink:   sink,
	}
	if x.tls = requestTLS(r); x.tls != nil {
		x.scheme = "https"
	}
	x.clientIP, _ = splitHostPortString(r.RemoteAddr)
	if a, err := netip.ParseAddr(x.clientIP); err == nil {
		// A dual-stack UDP socket reports IPv4 clients as ::ffff:a.b.c.d.
		x.peer = a.Unmap()
		x.clientIP = x.peer.String()
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		x.peerPort = ap.Port()
	}
	x.proto = r.Proto
	if r.ProtoMajor == 3 {
		x.proto = "HTTP/3"
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				x.done()
				panic(v)
			}
			s.slog.Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			panic(http.ErrAbortHandler)
		}
	}()
	if err := fillStdRequest(req, r); err != nil {
		x.ensureRequestID()
		x.closeClient = true
		x.fail(&proxyError{status: 400, msg: err.Error()}, "")
		x.done()
		return
	}
	if r.ProtoMajor == 3 && req.chunked {
		peekHTTP3Body(req, r)
	}
	if req.hasBody() {
		if req.contentLength > 0 && req.contentLength <= replayLimit {
			buf := make([]byte, req.contentLength)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				x.ensureRequestID()
				x.closeClient = true
				x.fail(errClientBody, "")
				x.done()
				return
			}
			x.bodyBuffered = buf
		} else {
			bp := stdBufPool.Get().(*[]byte)
			defer stdBufPool.Put(bp)
			x.body = &stdBody{r: r.Body, buf: *bp}
			http.NewResponseController(w).EnableFullDuplex()
		}
	}
	x.serve()
	x.done()
	if x.closeClient && sink.wroteHead && !sink.finished {
		// The response is cut short: abort the stream so the client
		// cannot mistake it for a complete one.
		panic(http.ErrAbortHandler)
	}
}

func splitHostPortString(addr string) (string, string) {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]"), addr[i+1:]
	}
	return addr, ""
}

// fillStdRequest converts a net/http request into the proxy's request,
// applying the same checks as the fast engine's parser.
func fillStdRequest(req *request, r *http.Request) error {
	req.method = []byte(r.Method)
	if !isToken(req.method) {
		return errBadMethod
	}
	req.target = []byte(r.RequestURI)
	switch {
	case r.ProtoMajor == 3:
		req.proto = 30
	case r.ProtoMajor == 2:
		req.proto = 20
	case r.ProtoMinor == 0:
		req.proto = 10
	default:
		req.proto = 11
	}
	if r.Method == http.MethodConnect {
		return errBadTarget
	}
	if err := splitTarget(req); err != nil {
		return err
	}
	hostFromTarget := req.host != nil
	if !hostFromTarget && r.Host != "" {
		req.fields = append(req.fields, hfield{name: []byte("Host"), value: []byte(r.Host)})
	}
	for k, vs := range r.Header {
		if http.CanonicalHeaderKey(k) == "Host" {
			continue
		}
		for _, v := range vs {
			req.fields = append(req.fields, hfield{name: []byte(k), value: []byte(v)})
		}
	}
	// Header values were validated by net/http; Transfer-Encoding was
	// moved out of the map.
	for _, te := range r.TransferEncoding {
		if te != "chunked" {
			return errBadTE
		}
		req.fields = append(req.fields, hfield{name: []byte("Transfer-Encoding"), value: []byte(te)})
	}
	if err := req.interpretFields(); err != nil {
		return err
	}
	if req.proto >= 20 {
		req.closeConn = false
		req.upgrade = nil
		if r.ContentLength > 0 {
			req.contentLength = r.ContentLength
		} else if r.Body != nil && r.Body != http.NoBody && r.ContentLength < 0 {
			req.chunked = true
		}
	}
	if req.proto == 11 && r.ContentLength < 0 && len(r.TransferEncoding) == 0 && r.Body != nil && r.Body != http.NoBody {
		return errBadTE
	}
	return nil
}

// readBody reads the request body into memory for replays.
func (s *stdSink) readBody(x *exchange, n int64) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.r.Body, buf); err != nil {
		x.closeClient = true
		return nil, err
	}
	return buf, nil
}

// stdBody adapts a net/http request body to bodySource.
type stdBody struct {
	r   io.Reader
	buf []byte
	err error
}

// finished is false: the engine cannot tell from net/http's body alone.
func (b *stdBody) finished() bool { return false }

func (b *stdBody) next() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	n, err := b.r.Read(b.buf)
	if err != nil {
		b.err = err
		if n == 0 {
			return nil, err
		}
	}
	return b.buf[:n], nil
}

// stdSink writes responses through net/http.
type stdSink struct {
	w         http.ResponseWriter
	r         *http.Request
	wroteHead bool
	finished  bool
}

func (s *stdSink) informational(resp *response) error {
	if resp.status == 100 {
		return nil // net/http sends 100 Continue when the body is read
	}
	h := s.w.Header()
	for i := range resp.fields {
		if f := &resp.fields[i]; !f.skip {
			h.Add(string(f.name), string(f.value))
		}
	}
	s.w.WriteHeader(resp.status)
	for k := range h {
		delete(h, k)
	}
	return nil
}

func (s *stdSink) head(x *exchange, resp *response) error {
	h := s.w.Header()
	for i := range resp.fields {
		f := &resp.fields[i]
		if f.skip {
			continue
		}
		h[http.CanonicalHeaderKey(string(f.name))] = append(h[http.CanonicalHeaderKey(string(f.name))], string(f.value))
	}
	if resp.kind != bodyLength && resp.kind != bodyNone {
		h.Del("Content-Length")
	}
	h.Set("X-Request-Id", string(x.reqID))
	for _, a := range x.addResp {
		h.Add(a.name, a.value)
	}
	if v := x.srv.altSvc(x); v != "" {
		h.Add("Alt-Svc", v)
	}
	if x.closeClient && x.req.proto < 20 {
		h.Set("Connection", "close")
	}
	s.wroteHead = true
	s.w.WriteHeader(resp.status)
	if resp.kind == bodyChunked || resp.kind == bodyUntilClose {
		// Commit to a streamed response now: net/http would otherwise
		// buffer a short body, set a length and drop the trailers.
		return s.flush()
	}
	return nil
}

func (s *stdSink) body(p []byte) error {
	_, err := s.w.Write(p)
	return err
}

func (s *stdSink) flush() error {
	return http.NewResponseController(s.w).Flush()
}

func (s *stdSink) finish(trailers []hfield) error {
	h := s.w.Header()
	for i := range trailers {
		if f := &trailers[i]; !f.skip {
			h.Add(http.TrailerPrefix+string(f.name), string(f.value))
		}
	}
	s.finished = true
	return nil
}

func (s *stdSink) local(x *exchange, r *localReply) error {
	h := s.w.Header()
	x.localHeaders(mapHeaders(h), r)
	if v := x.srv.altSvc(x); v != "" {
		h.Add("Alt-Svc", v)
	}
	if x.closeClient && x.req.proto < 20 {
		h.Set("Connection", "close")
	}
	s.wroteHead = true
	s.finished = true
	s.w.WriteHeader(r.status)
	if r.sendBody {
		_, err := s.w.Write(r.body)
		return err
	}
	return nil
}

// abortRead closes an HTTP/2 or HTTP/3 request body, which ends a read waiting on
// the client; over HTTP/1.1 net/http gives no way to interrupt a body
// read from another goroutine, and the server's own timeouts end it.
func (s *stdSink) abortRead() {
	if s.r.ProtoMajor >= 2 && s.r.Body != nil {
		s.r.Body.Close()
	}
}

// context is the request's: done when the client resets the stream or
// closes the connection.
func (s *stdSink) context() context.Context { return s.r.Context() }

// mapHeaders puts header fields into a net/http header map. Content-Type,
// Content-Length and X-Request-Id replace what the map held; the others
// add.
type mapHeaders http.Header

func (h mapHeaders) add(name, value string) {
	switch name {
	case "Content-Type", "Content-Length", "X-Request-Id", "Allow":
		http.Header(h).Set(name, value)
	default:
		http.Header(h).Add(name, value)
	}
}

func (h mapHeaders) addBytes(name string, value []byte) { h.add(name, string(value)) }

func (h mapHeaders) addInt(name string, v int64) { h.add(name, strconv.FormatInt(v, 10)) }

func (s *stdSink) tunnel(x *exchange, resp *response, bc *backendConn) error {
	hj, ok := s.w.(http.Hijacker)
	if !ok {
		bc.close()
		return fmt.Errorf("upgrade not supported on %s", x.proto)
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		bc.close()
		return err
	}
	s.wroteHead, s.finished = true, true
	w := appendUpgradeHead(nil, resp)
	if _, err := conn.Write(w); err != nil {
		conn.Close()
		bc.close()
		return err
	}
	pending, _ := rw.Reader.Peek(rw.Reader.Buffered())
	pipe(conn, pending, bc.c, bc.buffered(), &x.bytesIn, &x.bytesOut)
	bc.close()
	return nil
}
