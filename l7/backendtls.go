package l7

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/upstream"
)

// reasonTLS labels a failed TLS handshake with a backend: in
// rustygate_backend_failures_total, the retry log and outlier detection.
// The request never reached the backend, so `retries.on:
// connect_failure` covers it.
const reasonTLS = "tls"

var (
	errBackendTLS = &proxyError{502, "backend TLS handshake failed"}
	errTLSTimeout = &proxyError{504, "backend TLS handshake timeout"}
)

// sessionCacheSize bounds the TLS sessions kept per backend. The cache is
// keyed by server name, one per backend, so a few entries are plenty.
const sessionCacheSize = 8

// backendTLS is the TLS client side of one https:// backend: the config
// every connection to it handshakes with, and key, which identifies the
// settings and the contents of the files they name (a pool is shared by
// the snapshots whose key is the same).
type backendTLS struct {
	config *tls.Config
	key    string
}

// newBackendTLS reads the files of t and builds the client config for
// backend b. sessions is the backend's session cache.
func newBackendTLS(t *config.BackendTLS, b *upstream.Backend, sessions func(key string) tls.ClientSessionCache) (*backendTLS, error) {
	version, err := certs.ParseVersion(t.MinVersion)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		ServerName:         t.ServerName,
		MinVersion:         version,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: t.SkipVerify(),
	}
	if cfg.ServerName == "" {
		cfg.ServerName = b.Host
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%t|", b.URL, cfg.ServerName, version, cfg.InsecureSkipVerify)
	if t.CAFile != "" {
		if cfg.RootCAs, err = certs.LoadClientCAs(t.CAFile); err != nil {
			return nil, err
		}
		hashFile(h, t.CAFile)
	}
	if t.ClientCertFile != "" {
		cert, err := certs.LoadClientPair(t.ClientCertFile, t.ClientKeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		// Sent whenever the backend asks, whatever CAs it names, as
		// OpenSSL does: a refusal then shows up in the backend's log.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		hashFile(h, t.ClientCertFile)
		hashFile(h, t.ClientKeyFile)
	}
	key := hex.EncodeToString(h.Sum(nil)[:12])
	cfg.ClientSessionCache = sessions(key)
	return &backendTLS{config: cfg, key: key}, nil
}

func hashFile(h io.Writer, file string) {
	data, _ := os.ReadFile(file)
	fmt.Fprintf(h, "%s|%d|", file, len(data))
	h.Write(data)
}

// tlsDialError is a failed handshake with a backend.
type tlsDialError struct{ err error }

func (e *tlsDialError) Error() string { return e.err.Error() }
func (e *tlsDialError) Unwrap() error { return e.err }

// handshake runs the TLS handshake on a new connection to the backend,
// bounded by ctx.
func handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &tlsDialError{err}
	}
	return tc, nil
}

// tlsFailure describes a failed handshake for the log line: what went
// wrong in a few words, then crypto/tls's message.
func tlsFailure(err error) (string, bool) {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
		ne       net.Error
	)
	what := ""
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "handshake timeout", true
	case errors.As(err, &unknown):
		what = "unknown authority"
	case errors.As(err, &hostname):
		what = "name mismatch"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		what = "certificate expired or not yet valid"
	case errors.As(err, &invalid):
		what = "invalid certificate"
	case isTLSAlert(err):
		what = "refused by the backend"
	case errors.As(err, &record):
		what = "not TLS"
	case isConnGone(err):
		what = "connection closed during the handshake"
	default:
		what = "handshake failed"
	}
	return what + " (" + err.Error() + ")", false
}

// isTLSAlert reports an alert the backend sent: its refusal of the
// handshake, seen by a read.
func isTLSAlert(err error) bool {
	var op *net.OpError
	var alert tls.AlertError
	return errors.As(err, &op) && op.Op == "remote error" || errors.As(err, &alert)
}

// tlsDialFailed reports a failed handshake: 502, or 504 for a timeout.
func (x *exchange) tlsDialFailed(err error) (*proxyError, string) {
	what, timeout := tlsFailure(err)
	x.errMsg = "TLS to backend " + x.backend.URL + ": " + what
	if timeout {
		return errTLSTimeout, reasonTLS
	}
	return errBackendTLS, reasonTLS
}
