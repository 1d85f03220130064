package l7

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/internal/testpki"
	"github.com/rustygate/rustygate/observe"
)

// serveHTTP3For runs ServeTLS and ServeHTTP3 of g on one port of
// loopback (TCP and UDP) with a certificate for a.example.com; it
// returns the address and a client config that trusts it.
func serveHTTP3For(t *testing.T, g *testGateway) (string, *tls.Config) {
	t.Helper()
	ca := testpki.NewCA(t, "l7 test CA")
	leaf := ca.Issue(t, testpki.Spec{Hosts: []string{"a.example.com"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}}
	tlsDone, h3Done := make(chan error, 1), make(chan error, 1)
	go func() { tlsDone <- g.srv.ServeTLS(ln, cfg) }()
	go func() { h3Done <- g.srv.ServeHTTP3(pc, cfg) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.srv.Shutdown(ctx)
		if err := <-tlsDone; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
		if err := <-h3Done; err != nil {
			t.Errorf("ServeHTTP3: %v", err)
		}
		pc.Close()
	})
	waitAltSvc(t, g.srv)
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "a.example.com"}
}

// waitAltSvc waits until the server advertises HTTP/3.
func waitAltSvc(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.h3Port.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("HTTP/3 not serving")
		}
	}
}

func h3Client(t *testing.T, ccfg *tls.Config) *http.Client {
	tr := &http3.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHTTP3: requests over HTTP/3 go through the same routes and
// middlewares as HTTP/1.1 and HTTP/2: the backend sees the client's
// address, https and the protocol in Via; a 1 MiB body arrives intact; a
// streamed response reaches the client before the backend ends it, with
// its trailers. HTTP/1.1 and HTTP/2 responses over TLS advertise HTTP/3.
func TestHTTP3(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			release := make(chan struct{})
			be := backend(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/upload":
					h := sha256.New()
					n, _ := io.Copy(h, r.Body)
					fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
				case "/stream":
					w.Header().Set("Trailer", "X-Done")
					io.WriteString(w, "first;")
					w.(http.Flusher).Flush()
					<-release
					io.WriteString(w, "second")
					w.Header().Set("X-Done", "yes")
				default:
					fmt.Fprintf(w, "%s|%s|%s|%s|%s|%v%d", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Via"), r.Header.Get("X-Env"), r.Host, r.TransferEncoding, r.ContentLength)
				}
			})
			g := startGateway(t, engine, fmt.Sprintf("  - { path: /deny, backend: %q, middlewares: [ { name: ip_filter, deny: [127.0.0.0/8] } ] }\n", be.URL)+fmt.Sprintf("  - { path: /, backend: %q, middlewares: [ { name: headers, request: { set: { X-Env: prod } }, response: { set: { X-Frame-Options: DENY } } } ] }\n", be.URL))
			addr, ccfg := serveHTTP3For(t, g)
			_, port, _ := net.SplitHostPort(addr)
			c := h3Client(t, ccfg)
			base := "https://" + addr

			resp, body := h3Do(t, c, "GET", base+"/x", nil)
			if want := "127.0.0.1|https|3 rustygate|prod|" + addr + "|[]0"; resp.ProtoMajor != 3 || body != want || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("GET: %s %q, X-Frame-Options %q; want HTTP/3 %q, DENY", resp.Proto, body, resp.Header.Get("X-Frame-Options"), want)
			}
			if v := resp.Header.Get("Alt-Svc"); v != "" {
				t.Errorf("Alt-Svc %q on an HTTP/3 response", v)
			}

			payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			sum := sha256.Sum256(payload)
			if _, body := h3Do(t, c, "POST", base+"/upload", payload); body != strconv.Itoa(len(payload))+" "+hex.EncodeToString(sum[:]) {
				t.Errorf("POST 1 MiB: the backend got %q", body)
			}

			// A DELETE's body, whose first byte told it from none.
			abc := sha256.Sum256([]byte("abc"))
			if _, body := h3Do(t, c, "DELETE", base+"/upload", []byte("abc")); body != "3 "+hex.EncodeToString(abc[:]) {
				t.Errorf("DELETE with a body: the backend got %q", body)
			}

			h3Stream(t, c, base+"/stream", release)

			want := `h3=":` + port + `"; ma=86400`
			h1 := &http.Transport{TLSClientConfig: ccfg.Clone()}
			h2 := &http2.Transport{TLSClientConfig: ccfg.Clone()}
			t.Cleanup(h1.CloseIdleConnections)
			t.Cleanup(h2.CloseIdleConnections)
			for _, rt := range []http.RoundTripper{h1, h2} {
				for _, path := range []string{"/x", "/deny"} {
					resp, err := (&http.Client{Transport: rt, Timeout: 5 * time.Second}).Get(base + path)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if got := resp.Header.Get("Alt-Svc"); got != want {
						t.Errorf("%s %s: %d, Alt-Svc %q, want %q", resp.Proto, path, resp.StatusCode, got, want)
					}
				}
			}
			if resp, _ := h3Do(t, c, "GET", base+"/deny", nil); resp.StatusCode != 403 {
				t.Errorf("ip_filter over HTTP/3: %d, want 403", resp.StatusCode)
			}
			// The plain listener does not advertise it.
			resp2, err := http.Get("http://" + g.addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp2.Body.Close()
			if v := resp2.Header.Get("Alt-Svc"); v != "" {
				t.Errorf("Alt-Svc %q over plain HTTP", v)
			}
		})
	}
}

func h3Do(t *testing.T, c *http.Client, method, url string, body []byte) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		// No length: the body streams in DATA frames as it is read.
		rd = io.MultiReader(bytes.NewReader(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

// h3Stream reads the first chunk of a response the backend holds open,
// then lets the backend finish and checks the rest and the trailer.
func h3Stream(t *testing.T, c *http.Client, url string, release chan struct{}) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk: %q, %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Errorf("rest: %q, %v", rest, err)
	}
	if v := resp.Trailer.Get("X-Done"); v != "yes" {
		t.Errorf("trailer X-Done %q, want yes", v)
	}
}

// TestHTTP3Shutdown: a request in flight over HTTP/3 when the shutdown
// starts completes; the shutdown returns once it has, before its
// deadline, and every goroutine is gone (goleak).
func TestHTTP3Shutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	})
	metrics := observe.NewMetrics()
	g := startGatewayMetrics(t, "standard", fmt.Sprintf("  - { path: /, backend: %q }\n", be.URL), metrics)
	_, ccfg := serveHTTP3For(t, g)
	port := g.srv.h3Port.Load()
	c := h3Client(t, ccfg)
	got := make(chan string, 1)
	go func() {
		resp, err := c.Get("https://127.0.0.1:" + strconv.Itoa(int(port)) + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	<-arrived
	shut := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- g.srv.Shutdown(ctx)
	}()
	// The shutdown waits for the request.
	for g.srv.h3Port.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	default:
	}
	unblock()
	if s := <-got; s != "200 finished" {
		t.Errorf("request in flight: %q, want 200 finished", s)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if n := handshakes(t, metrics, "full", "1.3"); n != 1 {
		t.Errorf("rustygate_tls_handshakes_total{result=full,version=1.3} = %v, want 1 (the QUIC connection)", n)
	}
}

func handshakes(t *testing.T, metrics *observe.Metrics, result, version string) float64 {
	t.Helper()
	mfs, err := metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if mf.GetName() == "rustygate_tls_handshakes_total" && label(m, "result") == result && label(m, "version") == version {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
