// Package outbound is what the policies that call another HTTP service
// share (forward_auth asks an auth service, mirror copies requests to a
// shadow backend): the service's URL and `tls` settings checked at load,
// a pooled net/http client to it, and the request headers a copy of the
// client's request carries.
//
// It owns no state of its own: each policy owns its transport and closes
// its idle connections when it is closed.
package outbound

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// ParseURL parses the URL of a service: http or https, with a host, no
// user information or fragment.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("invalid URL %q", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("invalid URL %q (want http:// or https://)", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("invalid URL %q (no host)", s)
	case u.User != nil:
		return nil, fmt.Errorf("invalid URL %q (user information is not allowed)", s)
	case u.Fragment != "":
		return nil, fmt.Errorf("invalid URL %q (a fragment is not allowed)", s)
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid URL %q (bad port)", s)
		}
	}
	return u, nil
}

// CheckURL reports a bad URL in field, and `tls` set on an http:// URL.
func CheckURL(c *config.SettingsCheck, field, s string, t *config.BackendTLS) {
	if s == "" {
		if c.Enabled() {
			c.Errorf(field, "is required")
		}
		return
	}
	u, err := ParseURL(s)
	if err != nil {
		c.Errorf(field, "%s", err)
		return
	}
	if t != nil && u.Scheme != "https" {
		c.Errorf("tls", "applies only to an https:// %s (got %q)", field, s)
	}
}

// CheckTLS checks a `tls` section: its version, and its files when the
// check reads files.
func CheckTLS(c *config.SettingsCheck, t *config.BackendTLS) {
	if t == nil {
		return
	}
	if t.MinVersion != "" {
		if _, err := certs.ParseVersion(t.MinVersion); err != nil {
			c.Errorf("tls.min_version", "unsupported version %q (supported: 1.2, 1.3)", t.MinVersion)
		}
	}
	if t.SkipVerify() && t.CAFile != "" {
		c.Errorf("tls.insecure_skip_verify", "contradicts ca_file %q: nothing is verified (drop one of them)", t.CAFile)
	}
	if (t.ClientCertFile == "") != (t.ClientKeyFile == "") {
		c.Errorf("tls", "client_cert_file and client_key_file go together")
		return
	}
	if !c.Files() {
		return
	}
	if t.CAFile != "" {
		if _, err := certs.LoadClientCAs(t.CAFile); err != nil {
			c.Errorf("tls.ca_file", "%s", err)
		}
	}
	if t.ClientCertFile != "" {
		if _, err := certs.LoadClientPair(t.ClientCertFile, t.ClientKeyFile, time.Now()); err != nil {
			c.Errorf("tls.client_cert_file", "%s", err)
		}
	}
}

// Client settings of NewTransport.
type Client struct {
	URL *url.URL
	TLS *config.BackendTLS
	// MaxConns bounds the connections to the service (0: no bound).
	MaxConns int
	// Timeout bounds connecting (each request has its own deadline too).
	Timeout time.Duration
}

// NewTransport returns a pooled transport to the service. It never uses
// the environment's proxy settings and speaks HTTP/1.1.
func NewTransport(c Client) (*http.Transport, error) {
	d := &net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: max(c.MaxConns, 64),
		MaxConnsPerHost:     c.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: c.Timeout,
		DisableCompression:  true,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if c.URL.Scheme == "https" {
		cfg, err := tlsConfig(c.URL, c.TLS)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

func tlsConfig(u *url.URL, t *config.BackendTLS) (*tls.Config, error) {
	if t == nil {
		t = &config.BackendTLS{}
	}
	version := uint16(tls.VersionTLS12)
	if t.MinVersion != "" {
		v, err := certs.ParseVersion(t.MinVersion)
		if err != nil {
			return nil, err
		}
		version = v
	}
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: version, InsecureSkipVerify: t.SkipVerify()}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if t.CAFile != "" {
		pool, err := certs.LoadClientCAs(t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.ClientCertFile != "" {
		cert, err := certs.LoadClientPair(t.ClientCertFile, t.ClientKeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg, nil
}

// ForwardedFor is the X-Forwarded-For a copy of r carries: the list the
// client sent, then the client's address, as the proxy forwards it.
func ForwardedFor(r middleware.Request) string {
	peer := r.PeerIP().Unmap().String()
	if xff := r.Header("X-Forwarded-For"); len(xff) > 0 {
		return string(xff) + ", " + peer
	}
	return peer
}

// CopyHeaders copies the headers r is forwarded with onto h, except those
// skip reports (lower-case names) and Host.
func CopyHeaders(h http.Header, r middleware.Request, skip func(lower string) bool) {
	var vals [][]byte
	for _, name := range r.RequestHeaderNames(nil) {
		lower := strings.ToLower(name)
		if lower == "host" || skip != nil && skip(lower) {
			continue
		}
		key := http.CanonicalHeaderKey(name)
		if _, done := h[key]; done {
			continue
		}
		vals = r.RequestHeaderValues(name, vals[:0])
		for _, v := range vals {
			h.Add(key, string(v))
		}
	}
}

// NotCopied reports the headers never copied from one message to
// another: those that describe one connection (RFC 9110 7.6.1) and the
// framing that net/http sets itself.
func NotCopied(lower string) bool {
	switch lower {
	case "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
		"te", "trailer", "transfer-encoding", "upgrade", "content-length":
		return true
	}
	return false
}
