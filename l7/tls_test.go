package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/internal/testpki"
)

// serveTLSFor runs ServeTLS beside the plain listener of g with a
// certificate for a.example.com; it returns the address and a client
// config that trusts it.
func serveTLSFor(t *testing.T, g *testGateway) (string, *tls.Config, chan error) {
	t.Helper()
	ca := testpki.NewCA(t, "l7 test CA")
	leaf := ca.Issue(t, testpki.Spec{Hosts: []string{"a.example.com"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- g.srv.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}})
	}()
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "a.example.com"}, done
}

// TestServeTLSShutdown: with a connection stuck in its handshake, an
// idle HTTPS keep-alive connection and an idle HTTP/2 connection, a
// shutdown ends gracefully and promptly, every goroutine gone (goleak).
func TestServeTLSShutdown(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			be := backend(t, func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get("X-Forwarded-Proto"))
			})
			g := startGateway(t, engine, fmt.Sprintf("  - { path: /, backend: %q }\n", be.URL))
			addr, ccfg, done := serveTLSFor(t, g)

			silent, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			h1 := &http.Transport{TLSClientConfig: ccfg.Clone()}
			h2 := &http2.Transport{TLSClientConfig: ccfg.Clone()}
			defer h1.CloseIdleConnections()
			defer h2.CloseIdleConnections()
			for rt, want := range map[http.RoundTripper]string{h1: "HTTP/1.1 https", h2: "HTTP/1.1 https"} {
				resp, err := (&http.Client{Transport: rt, Timeout: 5 * time.Second}).Get("https://" + addr + "/x")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				wantProto := map[http.RoundTripper]int{h1: 1, h2: 2}[rt]
				if resp.ProtoMajor != wantProto || string(body) != want {
					t.Errorf("%s to the client, %q from the backend; want HTTP/%d, %q", resp.Proto, body, wantProto, want)
				}
			}
			// Plain HTTP to the TLS port: a 400 and a close.
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, "HTTP/1.0 400 ") {
				t.Errorf("plain HTTP to the TLS port: %q", line)
			}

			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v after %v", err, time.Since(start))
			}
			if err := <-done; err != nil {
				t.Errorf("ServeTLS: %v", err)
			}
			t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestHTTPChallengeAndRedirect: on a plain listener with redirect_https,
// the ACME HTTP-01 hook answers its challenges; everything else gets a
// 308 to https with the host, the normalized path and the query.
func TestHTTPChallengeAndRedirect(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "l7 test CA")
	cf, kf := ca.Issue(t, testpki.Spec{Hosts: []string{"a.example.com"}}).WriteFiles(t, dir, "a")
	server := fmt.Sprintf("redirect_https: true, tls: { listen: \"127.0.0.1:8443\", certificates: [{ cert_file: %q, key_file: %q }] }", cf, kf)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			g := startGatewayServer(t, engine, server, "  - { path: /, backend: \"http://127.0.0.1:9\" }\n", nil)
			g.srv.SetHTTPChallenge(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != acmeChallengePrefix+"tok" || r.Host != "a.example.com" {
					return false
				}
				io.WriteString(w, "tok.keyauth")
				return true
			})
			for _, tc := range []struct{ req, status, want string }{
				{"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "200", "\r\n\r\ntok.keyauth"},
				{"GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "308", "Location: https://a.example.com:8443/.well-known/acme-challenge/other\r\n"},
				{"POST /a//b?x=1&y HTTP/1.1\r\nHost: A.Example.COM:80\r\nContent-Length: 2\r\n\r\nhi", "308", "Location: https://a.example.com:8443/a/b?x=1&y\r\n"},
				{"GET / HTTP/1.1\r\nHost: bad!host\r\n\r\n", "400", ""},
			} {
				resp, _ := rawExchange(t, g.addr, tc.req)
				if !strings.HasPrefix(resp, "HTTP/1.1 "+tc.status) || !strings.Contains(resp, tc.want) {
					t.Errorf("%q:\n%s\nwant %s with %q", tc.req, resp, tc.status, tc.want)
				}
			}
		})
	}
}
