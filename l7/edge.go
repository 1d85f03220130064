package l7

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/rustygate/rustygate/certs"
)

// ChallengeFunc answers an ACME HTTP-01 challenge request and reports
// whether it did (certmagic's ACMEIssuer.HandleHTTPChallenge has this
// shape). It is asked, on the plain listener, about every request for
// /.well-known/acme-challenge/, before redirect_https and routing.
type ChallengeFunc func(w http.ResponseWriter, r *http.Request) bool

// SetHTTPChallenge installs the HTTP-01 challenge answerer (nil removes
// it). It may be called while serving.
func (s *Server) SetHTTPChallenge(f ChallengeFunc) {
	if f == nil {
		s.challenge.Store(nil)
		return
	}
	s.challenge.Store(&f)
}

const acmeChallengePrefix = "/.well-known/acme-challenge/"

// edge applies what the listener decides before routing: ACME
// challenges and redirect_https on the plain listener, and the client
// certificate headers. It reports whether the exchange was answered.
func (x *exchange) edge() bool {
	sc := &x.snap.Config.Server
	if x.tls == nil {
		if f := x.srv.challenge.Load(); f != nil && strings.HasPrefix(string(x.req.path), acmeChallengePrefix) && x.answerChallenge(*f) {
			return true
		}
		if sc.RedirectHTTPS {
			x.redirectHTTPS()
			return true
		}
	}
	if sc.TLS != nil && sc.TLS.ClientAuth != nil {
		x.clientCertHeaders(sc.TLS.ClientAuth.SubjectHeader, sc.TLS.ClientAuth.SANHeader)
	}
	return false
}

// clientCertHeaders removes the client certificate headers the client
// sent (any case) and adds the verified certificate's subject and SANs.
func (x *exchange) clientCertHeaders(subjectName, sanName string) {
	for i := range x.req.fields {
		f := &x.req.fields[i]
		if len(f.name) == len(subjectName) && eqFoldAny(f.name, subjectName) || len(f.name) == len(sanName) && eqFoldAny(f.name, sanName) {
			f.skip = true
		}
	}
	if subject := certs.ClientSubject(x.tls); subject != "" {
		x.addReq = append(x.addReq, strHeader{subjectName, subject})
		if san := certs.ClientSANHeader(x.tls); san != "" {
			x.addReq = append(x.addReq, strHeader{sanName, san})
		}
	}
}

// hasClientCert reports whether the connection presented a verified
// client certificate.
func (x *exchange) hasClientCert() bool { return certs.ClientCertificate(x.tls) != nil }

var errClientCertRequired = &proxyError{403, "client certificate required"}

// refuseNoClientCert answers 403 on a route that requires a client
// certificate the connection did not present.
func (x *exchange) refuseNoClientCert() {
	x.srv.metrics.TLS().ClientCertFailure("route_requires")
	x.drainOrClose()
	x.fail(errClientCertRequired, "")
}

// redirectHTTPS answers 308 to the same host, path and query over
// https, on the TLS listener's port.
func (x *exchange) redirectHTTPS() {
	x.drainOrClose()
	host := redirectHost(string(x.req.host))
	if host == "" {
		x.fail(&proxyError{400, "missing or invalid host"}, "")
		return
	}
	port := int(x.srv.httpsPort.Load())
	if port == 0 && x.snap.Config.Server.TLS != nil {
		_, p, _ := net.SplitHostPort(x.snap.Config.Server.TLS.Listen)
		port, _ = strconv.Atoi(p)
	}
	loc := "https://" + host
	if port != 443 && port != 0 {
		loc += ":" + strconv.Itoa(port)
	}
	path := string(x.req.path)
	if !strings.HasPrefix(path, "/") {
		path = "/"
	}
	loc += path + string(x.req.query)
	x.replyHeaders = append(x.replyHeaders, [2]string{"Location", loc})
	x.writeLocal(http.StatusPermanentRedirect, "text/plain; charset=utf-8", []byte("Redirecting to "+loc+"\n"), "")
}

// redirectHost returns the host of a Host header without its port,
// lower-cased, or "" when it is not a valid host name or IP address.
func redirectHost(h string) string {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return ""
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() {
			return ""
		}
		return "[" + a.String() + "]"
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if h == "" || len(h) > 253 {
		return ""
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return ""
		}
	}
	return strings.ToLower(h)
}

// answerChallenge asks f about the request and relays its answer.
func (x *exchange) answerChallenge(f ChallengeFunc) bool {
	r := &http.Request{
		Method:     string(x.req.method),
		URL:        &url.URL{Path: string(x.req.path), RawQuery: strings.TrimPrefix(string(x.req.query), "?")},
		Proto:      x.proto,
		Host:       string(x.req.host),
		Header:     http.Header{},
		RemoteAddr: net.JoinHostPort(x.clientIP, strconv.Itoa(int(x.peerPort))),
		RequestURI: string(x.req.target),
		Body:       http.NoBody,
	}
	w := &challengeWriter{h: http.Header{}}
	if !f(w, r) {
		return false
	}
	x.drainOrClose()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	ctype := w.h.Get("Content-Type")
	if ctype == "" {
		ctype = "-"
	}
	x.writeLocal(w.status, ctype, w.body, "")
	return true
}

// challengeWriter records a challenge answer (a few bytes of text).
type challengeWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *challengeWriter) Header() http.Header { return w.h }

func (w *challengeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *challengeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// tlsStateKey carries a connection's TLS state in the contexts of
// net/http's requests (the standard engine's connections reach net/http
// after their handshake, as plain net.Conns).
type tlsStateKey struct{}

// connTLSContext is the standard engine's http.Server.ConnContext.
func connTLSContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*strictConn); ok && sc.tlsState != nil {
		return context.WithValue(ctx, tlsStateKey{}, sc.tlsState)
	}
	return ctx
}

// requestTLS returns the TLS state of a net/http request's connection.
func requestTLS(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	st, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}
