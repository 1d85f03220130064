package e2e_test

// End-to-end tests of the HTTPS listener (server.tls) through the real
// binary: certificates chosen by SNI, HTTP/2 and HTTP/1.1 chosen by ALPN
// (with curl), renewal and refused replacements, client certificates,
// bad clients on the TLS port, redirect_https, the TLS metrics and
// session resumption across a binary upgrade.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testpki"
)

// tlsSetup is a CA and the files a TLS test configures.
type tlsSetup struct {
	ca     *testpki.CA
	dir    string
	caFile string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	s := &tlsSetup{ca: testpki.NewCA(t, "e2e TLS CA"), dir: t.TempDir()}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	testpki.WriteFile(t, s.caFile, s.ca.PEM)
	return s
}

// pair issues a server certificate for names and writes it; it returns
// the YAML list item naming its files.
func (s *tlsSetup) pair(t *testing.T, names ...string) (string, *testpki.Issued) {
	l := s.ca.Issue(t, testpki.Spec{Hosts: names})
	cf, kf := l.WriteFiles(t, s.dir, names[0])
	return fmt.Sprintf("      - { cert_file: %q, key_file: %q }\n", cf, kf), l
}

// tlsYAML is a configuration with the plain and the HTTPS listener on
// loopback ports chosen by the kernel, an admin listener, JSON logs with
// access lines. tls is the body of server.tls (lines indented by four
// spaces), server more lines of server (two spaces).
func tlsYAML(engine, tls, server, routes string) string {
	return fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  %s
  shutdown_timeout: 5s
%s  tls:
    listen: "127.0.0.1:0"
%sadmin:
  listen: "127.0.0.1:0"
log:
  format: json
  level: debug
  access: true
routes:
%s`, engineYAML(engine), server, tls, routes)
}

// startTLSGateway runs the gateway on yaml and returns it with the
// address of its HTTPS listener.
func startTLSGateway(t *testing.T, yaml string) (*hrProc, string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "rustygate.yaml")
	hrWrite(t, cfg, yaml)
	p := hrStart(t, cfg)
	addr, _ := p.startLine(p.pid)["tls_listen"].(string)
	if addr == "" || addr == "off" {
		t.Fatalf("startup line without tls_listen: %v", p.startLine(p.pid))
	}
	return p, addr
}

// seenRequest is what a backend saw of a request.
type seenRequest struct {
	proto, subject, san string
}

// recordingBackend answers "ok" and records the forwarding headers.
func recordingBackend(t *testing.T) (string, func() seenRequest) {
	var mu sync.Mutex
	var last seenRequest
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = seenRequest{r.Header.Get("X-Forwarded-Proto"), strings.Join(r.Header.Values("X-Client-Cert-Subject"), "|"),
			strings.Join(r.Header.Values("X-Client-Cert-San"), "|")}
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	return be.URL, func() seenRequest {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

// servedLeaf handshakes with addr for serverName and returns the leaf
// served (not verified: the default certificate need not match).
func servedLeaf(t *testing.T, addr, serverName string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// curlTLS runs curl against the gateway's HTTPS listener for host, with
// the test CA, and returns the HTTP version it used, the status and the
// response headers.
func curlTLS(t *testing.T, s *tlsSetup, addr, host, path string, args ...string) (version, status string, hdr http.Header) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	hfile := filepath.Join(t.TempDir(), "headers")
	argv := append([]string{"-sS", "--max-time", "10", "--cacert", s.caFile,
		"--resolve", host + ":" + port + ":127.0.0.1", "-D", hfile, "-o", "/dev/null",
		"-w", "%{http_version} %{http_code}"}, args...)
	argv = append(argv, "https://"+host+":"+port+path)
	out, err := exec.Command("curl", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", argv, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("curl output %q", out)
	}
	raw, _ := os.ReadFile(hfile)
	hdr = http.Header{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			hdr.Add(k, strings.TrimSpace(v))
		}
	}
	return f[0], f[1], hdr
}

// TestTLSSNIAndALPN: two names get their certificates and a third the
// default; curl negotiates HTTP/2 and HTTP/1.1 by ALPN; the backend sees
// X-Forwarded-Proto: https; the access line has tls_version and sni; the
// handshake and expiry metrics are exported.
func TestTLSSNIAndALPN(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		s := newTLSSetup(t)
		a, la := s.pair(t, "a.example.com")
		b, lb := s.pair(t, "b.example.com")
		d, ld := s.pair(t, "fallback.example.com")
		be, seen := recordingBackend(t)
		tlsBlock := "    certificates:\n" + a + b + d + "    default_certificate: fallback.example.com\n"
		p, addr := startTLSGateway(t, tlsYAML(engine, tlsBlock, "", hrRoute("api", "/api", be)))

		for name, want := range map[string]*testpki.Issued{"a.example.com": la, "b.example.com": lb, "c.example.com": ld, "": ld} {
			if got := servedLeaf(t, addr, name); got.SerialNumber.Cmp(want.Leaf.SerialNumber) != 0 {
				t.Errorf("SNI %q: served %v, want %v", name, got.DNSNames, want.Leaf.DNSNames)
			}
		}
		for _, tc := range []struct{ flag, version, host string }{{"--http2", "2", "a.example.com"}, {"--http1.1", "1.1", "b.example.com"}} {
			version, status, hdr := curlTLS(t, s, addr, tc.host, "/api/x", tc.flag)
			if version != tc.version || status != "200" {
				t.Errorf("curl %s: HTTP/%s %s, want HTTP/%s 200", tc.flag, version, status, tc.version)
			}
			if got := seen().proto; got != "https" {
				t.Errorf("curl %s: backend saw X-Forwarded-Proto %q, want https", tc.flag, got)
			}
			id := hdr.Get("X-Request-Id")
			line := waitAccess(t, p, id)
			if line["tls_version"] != "1.3" || line["sni"] != tc.host {
				t.Errorf("curl %s: access line tls_version %v sni %v, want 1.3 %s", tc.flag, line["tls_version"], line["sni"], tc.host)
			}
		}
		c := newClient(t)
		if v := hrMetric(t, c, p.admin, `rustygate_tls_handshakes_total{result="full",version="1.3"}`); v < 6 {
			t.Errorf("full TLS 1.3 handshakes counted %v, want >= 6", v)
		}
		for _, l := range []*testpki.Issued{la, lb, ld} {
			series := fmt.Sprintf(`rustygate_tls_certificate_expiry_timestamp_seconds{file=%q,name=%q}`,
				filepath.Join(s.dir, l.Leaf.DNSNames[0]+".crt"), l.Leaf.DNSNames[0])
			if v := hrMetric(t, c, p.admin, series); int64(v) != l.Leaf.NotAfter.Unix() {
				t.Errorf("%s = %v, want %d", series, v, l.Leaf.NotAfter.Unix())
			}
		}
	})
}

// waitAccess waits up to 3 s for the access line of request id.
func waitAccess(t *testing.T, p *hrProc, id string) map[string]any {
	t.Helper()
	return p.waitLine(t, 0, 3*time.Second, "access line "+id, func(l map[string]any) bool {
		return l["msg"] == "access" && l["request_id"] == id
	})
}

// TestTLSRenewal: a renewed certificate serves new handshakes within 2 s
// of the file change; garbage written over it is refused with a log line
// naming the file while the renewed one keeps serving.
func TestTLSRenewal(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	be, _ := recordingBackend(t)
	p, addr := startTLSGateway(t, tlsYAML("fast", "    certificates:\n"+item, "", hrRoute("api", "/api", be)))

	renewed := s.ca.Issue(t, testpki.Spec{Hosts: []string{"a.example.com"}})
	written := time.Now()
	renewed.WriteFiles(t, s.dir, "a.example.com")
	var took time.Duration
	for {
		if servedLeaf(t, addr, "a.example.com").SerialNumber.Cmp(renewed.Leaf.SerialNumber) == 0 {
			took = time.Since(written)
			break
		}
		if time.Since(written) > 2*time.Second {
			t.Fatalf("the renewed certificate is not served 2s after the file change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("renewed certificate served %v after the file change", took.Round(time.Millisecond))

	from := p.lineCount()
	certFile := filepath.Join(s.dir, "a.example.com.crt")
	testpki.WriteFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	l := p.waitLine(t, from, 5*time.Second, "the refused reload", func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "certificate reload refused") && l["file"] == certFile
	})
	t.Logf("logged: %v", l)
	if got := servedLeaf(t, addr, "a.example.com"); got.SerialNumber.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Errorf("after the garbage file, serial %x is served, want the renewed %x", got.SerialNumber, renewed.Leaf.SerialNumber)
	}
	if _, status, _ := curlTLS(t, s, addr, "a.example.com", "/api/x", "--http1.1"); status != "200" {
		t.Errorf("request after the garbage file: status %s", status)
	}
}

// clientTransport is an HTTPS client trusting the test CA, presenting
// cert when not nil.
func clientTransport(t *testing.T, s *tlsSetup, addr string, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: s.ca.Pool, ServerName: "a.example.com"}
	if cert != nil {
		// Presented whatever CAs the server names (a Go client otherwise
		// sends none when its certificate is not from one of them).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// httpsGet sends GET path to the HTTPS listener with a forged client
// certificate header; it returns the status, or the error.
func httpsGet(c *http.Client, addr, path string) (int, error) {
	req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
	req.Host = "a.example.com"
	req.Header.Set("x-client-CERT-subject", "CN=forged")
	req.Header.Set("X-Client-Cert-SAN", "DNS:forged")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestTLSClientAuth: with client_auth require, a certificate of the
// configured CA is accepted and its subject and SANs reach the backend
// (the client's own such headers removed); none, or one of another CA,
// fails the handshake. With optional, a route with client_auth require
// answers 403 without a certificate.
func TestTLSClientAuth(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	alice := s.ca.Issue(t, testpki.Spec{CN: "alice", Hosts: []string{"alice.example.com"}, Client: true})
	foreign := testpki.NewCA(t, "foreign CA").Issue(t, testpki.Spec{CN: "mallory", Client: true})
	be, seen := recordingBackend(t)
	routes := hrRoute("open", "/open", be) + hrRoute("secure", "/secure", be, "client_auth: { mode: require }")

	t.Run("require", func(t *testing.T) {
		tlsBlock := "    certificates:\n" + item + fmt.Sprintf("    client_auth: { ca_file: %q, mode: require }\n", s.caFile)
		p, addr := startTLSGateway(t, tlsYAML("fast", tlsBlock, "", routes))
		if code, err := httpsGet(clientTransport(t, s, addr, &alice.TLS), addr, "/open"); err != nil || code != 200 {
			t.Fatalf("with alice's certificate: %d %v", code, err)
		}
		want := seenRequest{"https", "CN=alice,O=RustyGate Test", "DNS:alice.example.com"}
		if got := seen(); got != want {
			t.Errorf("backend saw %+v, want %+v", got, want)
		}
		for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "another CA's certificate": &foreign.TLS} {
			if code, err := httpsGet(clientTransport(t, s, addr, cert), addr, "/open"); err == nil {
				t.Errorf("%s: answered %d, want a failed handshake", name, code)
			}
		}
		c := newClient(t)
		for _, reason := range []string{"missing", "untrusted"} {
			if v := hrMetric(t, c, p.admin, fmt.Sprintf(`rustygate_tls_client_certificate_failures_total{reason=%q}`, reason)); v < 1 {
				t.Errorf("client certificate failures %s = %v, want >= 1", reason, v)
			}
		}
	})

	t.Run("optional with a route that requires", func(t *testing.T) {
		forEachEngine(t, func(t *testing.T, engine string) {
			tlsBlock := "    certificates:\n" + item + fmt.Sprintf("    client_auth: { ca_file: %q, mode: optional }\n", s.caFile)
			_, addr := startTLSGateway(t, tlsYAML(engine, tlsBlock, "", routes))
			anon := clientTransport(t, s, addr, nil)
			if code, err := httpsGet(anon, addr, "/open"); err != nil || code != 200 {
				t.Fatalf("without a certificate on /open: %d %v", code, err)
			}
			if got := seen(); got.subject != "" || got.san != "" {
				t.Errorf("the client's forged headers reached the backend: %+v", got)
			}
			if code, err := httpsGet(anon, addr, "/secure"); err != nil || code != 403 {
				t.Errorf("without a certificate on /secure: %d %v, want 403", code, err)
			}
			if code, err := httpsGet(clientTransport(t, s, addr, &alice.TLS), addr, "/secure"); err != nil || code != 200 {
				t.Errorf("with alice's certificate on /secure: %d %v, want 200", code, err)
			}
			if got := seen(); got.subject != "CN=alice,O=RustyGate Test" {
				t.Errorf("backend saw subject %q", got.subject)
			}
		})
	})
}

// TestTLSBadClients: plain HTTP sent to the TLS port gets a 400 and a
// close; a client that never completes its handshake is closed after
// read_header_timeout; bytes that are not TLS are closed at once.
func TestTLSBadClients(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	be, _ := recordingBackend(t)
	p, addr := startTLSGateway(t, tlsYAML("fast", "    certificates:\n"+item, "  read_header_timeout: 1s\n", hrRoute("api", "/api", be)))

	cases := []struct {
		name, send string
		within     time.Duration
		want       string
	}{
		{"plain HTTP", "GET /api/x HTTP/1.1\r\nHost: a.example.com\r\n\r\n", time.Second, "HTTP/1.0 400 Bad Request"},
		{"silent client", "", 3 * time.Second, ""},
		{"half a ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 3 * time.Second, ""},
		{"not TLS", "\x00\x01\x02\x03\x04\x05\x06\x07", time.Second, ""},
	}
	for _, tc := range cases {
		c := dialRaw(t, addr, 10*time.Second)
		start := time.Now()
		io.WriteString(c, tc.send)
		got, _ := io.ReadAll(bufio.NewReader(c))
		took := time.Since(start)
		c.Close()
		if took > tc.within {
			t.Errorf("%s: closed after %v, want within %v", tc.name, took, tc.within)
		}
		if !strings.HasPrefix(string(got), tc.want) || tc.want == "" && len(got) > 0 && got[0] != 0x15 {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		t.Logf("%s: closed after %v", tc.name, took.Round(time.Millisecond))
	}
	c := newClient(t)
	for _, result := range []string{"not_tls", "timeout"} {
		if v := hrMetric(t, c, p.admin, fmt.Sprintf(`rustygate_tls_handshakes_total{result=%q,version="unknown"}`, result)); v < 1 {
			t.Errorf("handshakes %s = %v, want >= 1", result, v)
		}
	}
}

// TestTLSRedirectHTTPS: the plain listener answers 308 to the HTTPS
// listener with the host, the normalized path and the query.
func TestTLSRedirectHTTPS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		s := newTLSSetup(t)
		item, _ := s.pair(t, "a.example.com")
		be, _ := recordingBackend(t)
		p, addr := startTLSGateway(t, tlsYAML(engine, "    certificates:\n"+item, "  redirect_https: true\n", hrRoute("api", "/api", be)))
		_, port, _ := net.SplitHostPort(addr)
		c := newClient(t)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		for host, want := range map[string]string{
			"www.example.com":      "https://www.example.com:" + port + "/api//x?q=1&r=%20",
			"WWW.example.com:8080": "https://www.example.com:" + port + "/api//x?q=1&r=%20",
		} {
			req, _ := http.NewRequest("GET", p.url()+"/api//x?q=1&r=%20", nil)
			req.Host = host
			resp, _ := do(t, c, req)
			want = strings.Replace(want, "//x", "/x", 1) // slashes merged
			if resp.StatusCode != 308 || resp.Header.Get("Location") != want {
				t.Errorf("Host %s: %d Location %q, want 308 %q", host, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
		// The HTTPS listener serves the request the redirect names.
		if _, status, _ := curlTLS(t, s, addr, "a.example.com", "/api/x?q=1", "--http1.1"); status != "200" {
			t.Errorf("HTTPS request: status %s", status)
		}
	})
}

// TestTLSResumptionAcrossUpgrade: a session made with the old process
// resumes with the new one after a binary upgrade, whose process got the
// session ticket keys.
func TestTLSResumptionAcrossUpgrade(t *testing.T) {
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	be, _ := recordingBackend(t)
	p, addr := startTLSGateway(t, tlsYAML("fast", "    certificates:\n"+item, "", hrRoute("api", "/api", be)))
	p.killUpgradedLater(t)
	cache := tls.NewLRUClientSessionCache(8)
	get := func() *tls.ConnectionState {
		tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool, ServerName: "a.example.com", ClientSessionCache: cache}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/api/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.TLS
	}
	if get().DidResume {
		t.Fatal("the first connection resumed a session")
	}
	if !get().DidResume {
		t.Fatal("the second connection to the same process did not resume")
	}
	from := p.lineCount()
	p.signal(syscall.SIGUSR2)
	p.waitLine(t, from, 15*time.Second, "binary upgrade: new process serving", func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "binary upgrade: new process serving")
	})
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("old process exit code %d", code)
	}
	// The old process is gone: this is the new one.
	if st := get(); !st.DidResume {
		t.Errorf("the connection to the upgraded process did not resume the session")
	}
}

// h2specPath finds h2spec on PATH or in GOPATH/bin (go install
// github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible).
func h2specPath() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	out, err := exec.Command(goTool(), "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "h2spec")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// h2specFailures runs h2spec against port and returns the cases that
// failed, as "section/case" ("8.1.2.2/1").
func h2specFailures(t *testing.T, bin, port string, tlsArgs ...string) map[string]bool {
	t.Helper()
	args := append([]string{"-h", "127.0.0.1", "-p", port, "-o", "2"}, tlsArgs...)
	out, _ := exec.Command(bin, args...).CombinedOutput()
	text := string(out)
	i := strings.Index(text, "\nFailures:")
	if !strings.Contains(text, "145 tests, ") {
		t.Fatalf("h2spec %v: no summary of its 145 tests:\n%s", args, text)
	}
	failed := map[string]bool{}
	if i < 0 {
		return failed
	}
	section := ""
	for line := range strings.SplitSeq(text[i:], "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "×":
			failed[section+"/"+strings.TrimSuffix(f[1], ":")] = true
		case len(f) >= 2 && strings.HasSuffix(f[0], ".") && strings.Trim(f[0], "0123456789.") == "":
			section = strings.TrimSuffix(f[0], ".")
		}
	}
	return failed
}

// TestTLSH2Spec: h2spec passes all its 145 cases over TLS (h2 by ALPN)
// and over h2c with prior knowledge; a failure is named by section.
func TestTLSH2Spec(t *testing.T) {
	bin := h2specPath()
	if bin == "" {
		const how = "go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible"
		if os.Getenv("RUSTYGATE_REQUIRE_H2SPEC") == "1" {
			t.Fatalf("h2spec not installed and RUSTYGATE_REQUIRE_H2SPEC=1 (%s)", how)
		}
		t.Skipf("h2spec not installed (%s)", how)
	}
	s := newTLSSetup(t)
	item, _ := s.pair(t, "a.example.com")
	be, _ := recordingBackend(t)
	p, addr := startTLSGateway(t, tlsYAML("fast", "    certificates:\n"+item, "", hrRoute("root", "/", be)))
	_, tlsPort, _ := net.SplitHostPort(addr)
	_, plainPort, _ := net.SplitHostPort(p.addr)
	overTLS := h2specFailures(t, bin, tlsPort, "-t", "-k")
	overH2C := h2specFailures(t, bin, plainPort)
	for name, failed := range map[string]map[string]bool{"TLS": overTLS, "h2c": overH2C} {
		if len(failed) > 0 {
			t.Errorf("h2spec over %s: %d of 145 cases fail: %v", name, len(failed), slices.Sorted(maps.Keys(failed)))
		}
	}
}

// TestTLSReload: a reload that adds server.tls opens the HTTPS listener;
// one that adds a certificate and moves the listener serves the new
// certificate on the new address and closes the old one; one that
// removes server.tls closes the listener.
func TestTLSReload(t *testing.T) {
	s := newTLSSetup(t)
	a, la := s.pair(t, "a.example.com")
	b, lb := s.pair(t, "b.example.com")
	be, _ := recordingBackend(t)
	routes := hrRoute("api", "/api", be)
	withTLS := func(listen, certs string) string {
		return strings.Replace(tlsYAML("fast", "    certificates:\n"+certs, "", routes),
			`    listen: "127.0.0.1:0"`, fmt.Sprintf("    listen: %q", listen), 1)
	}
	plain := strings.Replace(tlsYAML("fast", "", "", routes), "  tls:\n    listen: \"127.0.0.1:0\"\n", "", 1)
	cfg := filepath.Join(t.TempDir(), "rustygate.yaml")
	hrWrite(t, cfg, plain)
	p := hrStart(t, cfg)
	if l := p.startLine(p.pid); l["tls_listen"] != "off" {
		t.Fatalf("tls_listen %v without server.tls", l["tls_listen"])
	}
	// The file watcher or the SIGHUP, whichever comes first, applies
	// the new file.
	reload := func(yaml string) {
		t.Helper()
		from := p.lineCount()
		hrWrite(t, cfg, yaml)
		p.signal(syscall.SIGHUP)
		p.waitLine(t, from, 5*time.Second, "a reload changing server.tls", func(l map[string]any) bool {
			return l["msg"] == hrMsgReloaded && strings.Contains(fmt.Sprint(l["changed"]), "server.tls")
		})
	}
	refuses := func(addr string) bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}

	addr1 := closedAddr(t)
	reload(withTLS(addr1, a))
	if got := servedLeaf(t, addr1, "a.example.com"); !got.Equal(la.Leaf) {
		t.Errorf("after adding server.tls: served %v", got.DNSNames)
	}
	addr2 := closedAddr(t)
	reload(withTLS(addr2, a+b))
	if got := servedLeaf(t, addr2, "b.example.com"); !got.Equal(lb.Leaf) {
		t.Errorf("after adding b.example.com: served %v", got.DNSNames)
	}
	if !refuses(addr1) {
		t.Errorf("the previous HTTPS address %s still accepts", addr1)
	}
	reload(plain)
	if !refuses(addr2) {
		t.Errorf("the HTTPS address %s still accepts after server.tls was removed", addr2)
	}
}

// TestTLSValidate: rustygate validate reads the files server.tls names
// and reports a key that does not match its certificate at its line.
func TestTLSValidate(t *testing.T) {
	s := newTLSSetup(t)
	s.pair(t, "a.example.com")
	other := s.ca.Issue(t, testpki.Spec{Hosts: []string{"other.example.com"}})
	otherKey := filepath.Join(s.dir, "other.key")
	testpki.WriteFile(t, otherKey, other.KeyPEM)
	item := fmt.Sprintf("      - { cert_file: %q, key_file: %q }\n", filepath.Join(s.dir, "a.example.com.crt"), otherKey)
	cfg := filepath.Join(t.TempDir(), "rustygate.yaml")
	hrWrite(t, cfg, tlsYAML("fast", "    certificates:\n"+item, "", hrRoute("api", "/api", "http://127.0.0.1:9")))
	out, err := exec.Command(gatewayBin, "validate", cfg).CombinedOutput()
	want := cfg + ":8: server.tls.certificates[0].key_file: " + otherKey + ": key does not match certificate"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("validate: %v\n%s\nwant a line starting %q", err, out, want)
	}
}
