package certs

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The ACME tests run Pebble, Let's Encrypt's test CA, with
// internal/testacme; acmeFront is the gateway side Pebble validates.

// acmeFront is a gateway's pair of listeners on loopback: plain HTTP,
// which answers http-01 through the Manager before anything else, and
// HTTPS with the Manager's config (tls-alpn-01 included).
type acmeFront struct {
	plain, secure net.Listener
}

func newACMEFront(t testing.TB) *acmeFront {
	t.Helper()
	f := &acmeFront{}
	var err error
	if f.plain, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.secure, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.plain.Close()
		f.secure.Close()
	})
	return f
}

func (f *acmeFront) httpPort() int  { return f.plain.Addr().(*net.TCPAddr).Port }
func (f *acmeFront) httpsPort() int { return f.secure.Addr().(*net.TCPAddr).Port }
func (f *acmeFront) httpsAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.httpsPort()))
}

// serve serves both listeners with m until cleanup.
func (f *acmeFront) serve(t testing.TB, m *Manager) {
	t.Helper()
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.HandleHTTPChallenge(w, r) {
			return
		}
		http.Error(w, "routed", http.StatusNotFound)
	})}
	secure := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over "+r.Proto)
	})}
	secure.TLSConfig = m.TLSConfig([]string{"h2", "http/1.1"})
	secure.ErrorLog = log.New(io.Discard, "", 0) // probes that fail the handshake on purpose
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); plain.Serve(f.plain) }()
	go func() { defer wg.Done(); secure.ServeTLS(f.secure, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		plain.Shutdown(ctx)
		secure.Shutdown(ctx)
		wg.Wait()
	})
}
