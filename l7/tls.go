package l7

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/certs"
)

// ServeTLS accepts connections on ln until Shutdown and serves them over
// TLS with cfg (a certs.Manager's config offering "h2" and "http/1.1").
// Each handshake runs on the connection's own goroutine, bounded by
// read_header_timeout; then ALPN "h2" goes to the HTTP/2 server that
// serves h2c, and HTTP/1.1 to the fast engine on that goroutine (a TLS
// connection cannot be read by the event loops) or to net/http with
// `engine: standard`. It returns nil after a shutdown, or the accept
// error.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	if !s.addListener(ln) {
		return nil
	}
	defer s.acceptWG.Done()
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		s.httpsPort.Store(int32(ta.Port))
	}
	var q *connQueue
	if s.snap.Load().Config.Server.Engine == "standard" {
		q = newConnQueue(ln.Addr())
		defer q.Close()
		sc := s.snap.Load().Config.Server
		go s.std.Serve(strictListener{Listener: q, maxHead: sc.MaxHeaderBytes, headTimeout: sc.ReadHeaderTimeout.D()})
	}
	return s.acceptLoop(ln, func(c net.Conn) {
		cc := s.newClientConn(c)
		go cc.serveTLS(cfg, q)
	})
}

// acmeTLSALPN is the ALPN protocol of ACME TLS-ALPN-01 validations (RFC
// 8737); the certificate configuration answers them.
const acmeTLSALPN = "acme-tls/1"

// serveTLS runs the handshake, then serves the connection by the
// protocol ALPN chose.
func (cc *clientConn) serveTLS(cfg *tls.Config, q *connQueue) {
	s := cc.srv
	tc, ok := cc.handshake(cfg)
	if !ok {
		cc.c.Close()
		cc.forget()
		return
	}
	st := tc.ConnectionState()
	cc.c, cc.tls, cc.accepted = tc, &st, time.Now()
	switch {
	case st.NegotiatedProtocol == acmeTLSALPN:
		// A TLS-ALPN-01 validation ends with the handshake.
		cc.c.Close()
		cc.forget()
	case st.NegotiatedProtocol == http2.NextProtoTLS:
		defer cc.forget()
		cc.busy.Store(3) // the HTTP/2 server drains it on shutdown
		s.h2wg.Add(1)
		defer s.h2wg.Done()
		if q != nil {
			s.h2.ServeConn(tc, &http2.ServeConnOpts{Handler: s.h2base.Handler, BaseConfig: s.h2base})
			return
		}
		s.serveHTTP2(cc, tc, tc)
	case q != nil:
		// net/http tracks the connection from here on.
		cc.forget()
		if !q.push(tc) {
			tc.Close()
		}
	default:
		cc.serve()
	}
}

// handshake runs the TLS handshake within read_header_timeout of the
// accept and counts its result.
func (cc *clientConn) handshake(cfg *tls.Config) (*tls.Conn, bool) {
	s := cc.srv
	rht := s.snap.Load().Config.Server.ReadHeaderTimeout.D()
	tc := tls.Server(cc.c, cfg)
	cc.c.SetDeadline(cc.accepted.Add(rht))
	err := tc.Handshake()
	tm := s.metrics.TLS()
	if err != nil {
		result := handshakeFailure(err)
		switch result {
		case "not_tls":
			answerPlainHTTP(err)
		case "client_certificate":
			tm.ClientCertFailure(clientCertReason(err))
		}
		tm.Handshake(result, tlsVersion(tc.ConnectionState().Version))
		s.slog.Debug("tls handshake failed", "client_ip", cc.clientIP, "sni", tc.ConnectionState().ServerName, "result", result, "error", err.Error())
		return nil, false
	}
	cc.c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	result := "full"
	if st.DidResume {
		result = "resumed"
	}
	tm.Handshake(result, tlsVersion(st.Version))
	return tc, true
}

// handshakeFailure names why a handshake failed, for the metrics.
func handshakeFailure(err error) string {
	var rhe tls.RecordHeaderError
	var cve *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.As(err, &rhe):
		return "not_tls"
	case errors.As(err, &cve) || strings.Contains(err.Error(), "client didn't provide a certificate"):
		return "client_certificate"
	case errors.Is(err, certs.ErrNoCertificate):
		return "no_certificate"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return "client_closed"
	}
	return "error"
}

func clientCertReason(err error) string {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return "untrusted"
	}
	return "missing"
}

// answerPlainHTTP answers 400 to a client that sent plain HTTP to the TLS
// port, as net/http does, when its first bytes look like an HTTP method.
func answerPlainHTTP(err error) {
	var rhe tls.RecordHeaderError
	if !errors.As(err, &rhe) || rhe.Conn == nil || !looksLikeHTTP(rhe.RecordHeader[:]) {
		return
	}
	rhe.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
}

func looksLikeHTTP(h []byte) bool {
	switch string(h) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// tlsVersion is the version label of the metrics and the access log.
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	case 0:
		return "unknown"
	}
	return "other"
}

// connQueue is a net.Listener fed with connections whose TLS handshake
// is done, for net/http (`engine: standard`).
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to net/http; false when the queue is closed.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
