package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// altSvcMaxAge is how long clients may remember the HTTP/3 endpoint
// advertised in Alt-Svc (a day, as most servers send).
const altSvcMaxAge = "86400"

// newHTTP3Server builds the HTTP/3 server; its requests run through the
// standard engine's handler, as HTTP/2's do.
func (s *Server) newHTTP3Server() *http3.Server {
	sc := s.snap.Load().Config.Server
	return &http3.Server{
		Handler:        http.HandlerFunc(s.serveStd),
		MaxHeaderBytes: sc.MaxHeaderBytes,
		IdleTimeout:    sc.IdleTimeout.D(),
		Logger:         s.slog,
		ConnContext:    s.countQUICHandshake,
	}
}

// countQUICHandshake counts a QUIC connection's completed handshake in
// rustygate_tls_handshakes_total, as the HTTPS listener counts its own.
// (quic-go does not report failed ones.)
func (s *Server) countQUICHandshake(ctx context.Context, c *quic.Conn) context.Context {
	st := c.ConnectionState().TLS
	result := "full"
	if st.DidResume {
		result = "resumed"
	}
	s.metrics.TLS().Handshake(result, tlsVersion(st.Version))
	return ctx
}

// quicConfig refuses 0-RTT: early data can be replayed by an attacker,
// and the proxy cannot tell which requests are safe to accept twice.
func quicConfig() *quic.Config {
	return &quic.Config{Allow0RTT: false, MaxIncomingStreams: 250}
}

// ServeHTTP3 serves HTTP/3 on pc until Shutdown or StopHTTP3, with cfg
// (a certs.Manager's config: its certificates and SNI; ALPN becomes
// "h3"), and advertises pc's port in Alt-Svc on the responses of the
// TLS listeners. pc stays open: the caller closes it after Shutdown, so
// that a binary upgrade can hand it over. It returns nil after a
// shutdown or stop, or the error.
func (s *Server) ServeHTTP3(pc net.PacketConn, cfg *tls.Config) error {
	ln, err := quic.ListenEarly(pc, http3.ConfigureTLSConfig(cfg), quicConfig())
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.stopping.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.h3lns[pc] = ln
	s.acceptWG.Add(1)
	s.mu.Unlock()
	defer s.acceptWG.Done()
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		s.h3Port.Store(int32(ua.Port))
	}
	err = s.h3.ServeListener(ln)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) || s.stopping.Load() || !s.servingHTTP3(pc) {
		return nil
	}
	return err
}

func (s *Server) servingHTTP3(pc net.PacketConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h3lns[pc] != nil
}

// StopHTTP3 stops accepting QUIC connections on pc (HTTP/3 turned off or
// moved by a reload); its connections go on until they end or Shutdown.
// Alt-Svc stops being advertised when no socket is left.
func (s *Server) StopHTTP3(pc net.PacketConn) {
	s.mu.Lock()
	ln := s.h3lns[pc]
	delete(s.h3lns, pc)
	if len(s.h3lns) == 0 {
		s.h3Port.Store(0)
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// shutdownHTTP3 closes the QUIC listeners (new handshakes are dropped;
// after a binary upgrade the new process, reading the same socket,
// answers the client's retry), sends GOAWAY on every HTTP/3 connection
// and waits for their requests until ctx ends (then closes them). A
// listener's connections outlive it.
func (s *Server) shutdownHTTP3(ctx context.Context) {
	s.h3Port.Store(0) // responses from now on stop advertising it
	s.mu.Lock()
	lns := s.h3lns
	s.h3lns = map[net.PacketConn]*quic.EarlyListener{}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	s.h3.Shutdown(ctx)
}

// peekHTTP3Body tells a request without a body from one whose length is
// unknown: HTTP/3 ends a request with the stream, not with a flag on its
// HEADERS as HTTP/2 does, so net/http's view is "length unknown" for
// every request without Content-Length. For the methods that seldom
// carry a body (GET, HEAD, OPTIONS, DELETE, TRACE), whose clients end the
// stream with the head, the first read tells: an empty body is forwarded
// as none (no chunked GET to the backend); bytes read are put back.
func peekHTTP3Body(req *request, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodTrace:
	default:
		return
	}
	var b [1]byte
	n, err := r.Body.Read(b[:])
	if n == 0 && errors.Is(err, io.EOF) {
		req.chunked = false
		return
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b[:n]), errReader{err}, r.Body), r.Body}
}

// errReader returns err once (nil: nothing), so a read error of the peek
// is not lost.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// altSvc is the Alt-Svc value that advertises HTTP/3 on a response over
// TLS, "" when HTTP/3 is off or the response is itself HTTP/3.
func (s *Server) altSvc(x *exchange) string {
	if x.tls == nil || x.req.proto >= 30 {
		return ""
	}
	port := s.h3Port.Load()
	if port == 0 {
		return ""
	}
	return `h3=":` + strconv.Itoa(int(port)) + `"; ma=` + altSvcMaxAge
}
