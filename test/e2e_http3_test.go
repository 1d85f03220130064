package e2e_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// TestHTTP3Gateway: with server.tls.http3 the gateway serves HTTP/3 on
// the UDP port of the HTTPS listener, through the route's middlewares,
// logs it as HTTP/3 and advertises it on HTTP/2 responses. A binary
// upgrade hands the UDP socket over: a request in flight on the old
// process finishes, and new ones reach the new process on the same port.
func TestHTTP3Gateway(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Env"))
	})
	route := hrRoute("api", "/api", be.URL, "middlewares: [ { name: headers, request: { set: { X-Env: prod } } } ]")
	p, addr := startTLSGateway(t, tlsYAML("fast", "    http3: true\n    certificates:\n"+item, "", route))
	p.killUpgradedLater(t)
	_, port, _ := net.SplitHostPort(addr)
	ccfg := &tls.Config{RootCAs: s.ca.Pool, ServerName: "a.example.com"}

	h3 := &http3.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(func() { h3.Close() })
	c := &http.Client{Transport: h3, Timeout: 10 * time.Second}
	resp, body := h3Get(t, c, "https://"+addr+"/api/x")
	if resp.StatusCode != 200 || resp.ProtoMajor != 3 || body != "https prod" {
		t.Fatalf("HTTP/3 GET: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if l := waitAccess(t, p, resp.Header.Get("X-Request-Id")); l["proto"] != "HTTP/3" {
		t.Errorf("access line proto %v, want HTTP/3", l["proto"])
	}

	h2 := &http2.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(h2.CloseIdleConnections)
	resp2, _ := h3Get(t, &http.Client{Transport: h2, Timeout: 10 * time.Second}, "https://"+addr+"/api/x")
	if want := `h3=":` + port + `"; ma=86400`; resp2.Header.Get("Alt-Svc") != want {
		t.Errorf("HTTP/2 Alt-Svc %q, want %q", resp2.Header.Get("Alt-Svc"), want)
	}

	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get("https://" + addr + "/api/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-arrived
	from := p.lineCount()
	p.signal(syscall.SIGUSR2)
	p.waitLine(t, from, 15*time.Second, "binary upgrade: new process serving", func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "binary upgrade: new process serving")
	})
	unblock()
	if got := <-slow; got != "200 https prod" {
		t.Errorf("request in flight across the upgrade: %q", got)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("old process exit code %d", code)
	}
	// The old process is gone: a new connection reaches the new one.
	fresh := &http3.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(func() { fresh.Close() })
	if resp, body := h3Get(t, &http.Client{Transport: fresh, Timeout: 10 * time.Second}, "https://"+addr+"/api/y"); resp.StatusCode != 200 || body != "https prod" {
		t.Errorf("HTTP/3 after the upgrade: %d %q", resp.StatusCode, body)
	}
}

func h3Get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(b)
}

// TestHTTP3Reload: a reload that leaves server.tls.listen alone keeps the
// UDP socket (a QUIC connection made before it serves the new routes);
// one that turns HTTP/3 off closes it and stops Alt-Svc; turning it on
// again serves it on the HTTPS listener's port.
func TestHTTP3Reload(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	be, _ := recordingBackend(t)
	yaml := func(h3 bool, routes string) string {
		return tlsYAML("fast", fmt.Sprintf("    http3: %v\n    certificates:\n", h3)+item, "", routes)
	}
	one := hrRoute("api", "/api", be)
	two := one + hrRoute("other", "/other", be)
	cfg := filepath.Join(t.TempDir(), "rustygate.yaml")
	hrWrite(t, cfg, yaml(true, one))
	p := hrStart(t, cfg)
	addr, _ := p.startLine(p.pid)["tls_listen"].(string)
	ccfg := &tls.Config{RootCAs: s.ca.Pool, ServerName: "a.example.com"}
	reload := func(y string) {
		t.Helper()
		hrWrite(t, cfg, y)
		if l := p.sighup(t); l["msg"] != hrMsgReloaded {
			t.Fatalf("reload: %v", l)
		}
	}
	h3 := &http3.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(func() { h3.Close() })
	c := &http.Client{Transport: h3, Timeout: 10 * time.Second}
	if resp, _ := h3Get(t, c, "https://"+addr+"/other"); resp.StatusCode != 404 {
		t.Fatalf("before the reload: %d", resp.StatusCode)
	}
	reload(yaml(true, two))
	if resp, _ := h3Get(t, c, "https://"+addr+"/other"); resp.StatusCode != 200 {
		t.Errorf("after a reload adding a route, on the same QUIC connection: %d", resp.StatusCode)
	}

	reload(yaml(false, two))
	h2 := &http2.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(h2.CloseIdleConnections)
	if resp, _ := h3Get(t, &http.Client{Transport: h2, Timeout: 10 * time.Second}, "https://"+addr+"/api/x"); resp.Header.Get("Alt-Svc") != "" {
		t.Errorf("Alt-Svc %q with HTTP/3 off", resp.Header.Get("Alt-Svc"))
	}
	off := &http3.Transport{TLSClientConfig: ccfg.Clone(), QUICConfig: &quic.Config{HandshakeIdleTimeout: 500 * time.Millisecond}}
	t.Cleanup(func() { off.Close() })
	if resp, err := (&http.Client{Transport: off, Timeout: 5 * time.Second}).Get("https://" + addr + "/api/x"); err == nil {
		resp.Body.Close()
		t.Errorf("HTTP/3 still served after it was turned off: %s", resp.Status)
	}

	reload(yaml(true, two))
	on := &http3.Transport{TLSClientConfig: ccfg.Clone()}
	t.Cleanup(func() { on.Close() })
	if resp, _ := h3Get(t, &http.Client{Transport: on, Timeout: 10 * time.Second}, "https://"+addr+"/api/x"); resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Errorf("HTTP/3 turned on again: %s %d", resp.Proto, resp.StatusCode)
	}
}
