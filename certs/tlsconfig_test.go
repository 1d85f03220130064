package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestTLSConfigVersionsAndSuites(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files})
	addr := serveTLS(t, m.TLSConfig([]string{"h2", "http/1.1"}))

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientFor(f.ca, "a.example.com")
		cfg.MinVersion, cfg.MaxVersion = v, v
		cs, err := dial(addr, cfg)
		if err != nil {
			t.Fatalf("%s refused: %v", tls.VersionName(v), err)
		}
		if v == tls.VersionTLS12 && !slices.Contains(CipherSuites, cs.CipherSuite) {
			t.Errorf("TLS 1.2 negotiated %s, not one of CipherSuites", tls.CipherSuiteName(cs.CipherSuite))
		}
	}
	old := clientFor(f.ca, "a.example.com")
	old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if _, err := dial(addr, old); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	// A client offering only CBC (non-AEAD) suites is refused.
	cbc := clientFor(f.ca, "a.example.com")
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	if _, err := dial(addr, cbc); err == nil {
		t.Error("a CBC-only TLS 1.2 client was accepted")
	}
	// The RSA certificate negotiates an ECDHE_RSA suite.
	rsa12 := clientFor(f.ca, "b.example.com")
	rsa12.MaxVersion = tls.VersionTLS12
	if cs, err := dial(addr, rsa12); err != nil || !slices.Contains(CipherSuites, cs.CipherSuite) {
		t.Errorf("RSA certificate over TLS 1.2: %v (suite %s)", err, tls.CipherSuiteName(cs.CipherSuite))
	}

	m13 := startManager(t, Options{Certificates: f.files, MinVersion: tls.VersionTLS13})
	addr13 := serveTLS(t, m13.TLSConfig(nil))
	c12 := clientFor(f.ca, "a.example.com")
	c12.MaxVersion = tls.VersionTLS12
	if _, err := dial(addr13, c12); err == nil {
		t.Error("min_version 1.3 accepted a TLS 1.2 client")
	}
	if _, err := ParseVersion("1.1"); err == nil {
		t.Error("ParseVersion accepted 1.1")
	}
}

func TestTLSConfigALPN(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files})
	addr := serveTLS(t, m.TLSConfig([]string{"h2", "http/1.1"}))
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"h2", "http/1.1"}, "h2"},
		{[]string{"http/1.1", "h2"}, "h2"}, // the server's preference wins
		{[]string{"http/1.1"}, "http/1.1"},
		{nil, ""},
	} {
		cfg := clientFor(f.ca, "a.example.com")
		cfg.NextProtos = tc.offer
		cs, err := dial(addr, cfg)
		if err != nil {
			t.Fatalf("offer %q: %v", tc.offer, err)
		}
		if cs.NegotiatedProtocol != tc.want {
			t.Errorf("offer %q negotiated %q, want %q", tc.offer, cs.NegotiatedProtocol, tc.want)
		}
	}
	// A client offering only protocols the server does not speak fails.
	cfg := clientFor(f.ca, "a.example.com")
	cfg.NextProtos = []string{"spdy/3"}
	if _, err := dial(addr, cfg); err == nil {
		t.Error("an ALPN mismatch was accepted")
	}
}

// TestTLSConfigWithNetHTTP serves HTTP/2 and HTTP/1.1 with net/http,
// which clones the config (ServeTLS): the clone still selects by SNI.
func TestTLSConfigWithNetHTTP(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto+" "+r.TLS.ServerName)
		}),
		TLSConfig: m.TLSConfig([]string{"h2", "http/1.1"}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	port := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		host  string
		alpn  []string
		proto string
		want  *issued
	}{
		{"a.example.com", nil, "HTTP/2.0", f.a},
		{"x.wild.example.com", []string{"http/1.1"}, "HTTP/1.1", f.wild},
	} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: f.ca.pool, NextProtos: tc.alpn},
			ForceAttemptHTTP2: tc.alpn == nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			},
		}
		res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(fmt.Sprintf("https://%s:%d/", tc.host, port))
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != tc.proto+" "+tc.host || res.TLS.PeerCertificates[0].SerialNumber.Text(16) != tc.want.serialHex {
			t.Errorf("%s: got %q from serial %s, want %q from %s", tc.host, body,
				res.TLS.PeerCertificates[0].SerialNumber.Text(16), tc.proto+" "+tc.host, tc.want.serialHex)
		}
	}
}
