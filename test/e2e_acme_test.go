package e2e_test

// End-to-end tests of automatic HTTPS (server.tls.acme) through the real
// binary against Pebble, Let's Encrypt's test CA, on loopback: Pebble
// validates http-01 on the gateway's plain listener and tls-alpn-01 on
// its HTTPS listener, for real (its DNS resolves every name to
// 127.0.0.1).

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testacme"
	"github.com/rustygate/rustygate/internal/testnet"
)

const acmeHost = "app.test"

// acmeBackend answers "ok" and records the path and X-Forwarded-Proto of
// every request it gets.
type acmeBackend struct {
	url   string
	mu    sync.Mutex
	paths []string
	proto string
}

func newACMEBackend(t *testing.T) *acmeBackend {
	b := &acmeBackend{}
	b.url = newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.paths = append(b.paths, r.URL.Path)
		b.proto = r.Header.Get("X-Forwarded-Proto")
		b.mu.Unlock()
		io.WriteString(w, "ok")
	}).URL
	return b
}

func (b *acmeBackend) seen() (paths []string, proto string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...), b.proto
}

// acmeSetup is Pebble and the gateway's listener ports it validates on.
type acmeSetup struct {
	pebble      *testacme.Pebble
	plain, tls  int
	storage     string
	challenge   string
	backend     *acmeBackend
	config      string
	issuerRoots *x509.CertPool
}

func newACMESetup(t *testing.T, challenge string, validity time.Duration) *acmeSetup {
	port := testnet.FreePortRange(t, "127.0.0.1", 2)
	s := &acmeSetup{plain: port, tls: port + 1, storage: t.TempDir(), challenge: challenge,
		backend: newACMEBackend(t), config: filepath.Join(t.TempDir(), "rustygate.yaml")}
	// Held while Pebble picks its own ports, so it cannot take these.
	for _, port := range []int{s.plain, s.tls} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	s.pebble = testacme.Start(t, testacme.Options{HTTPPort: s.plain, TLSPort: s.tls, Validity: validity})
	s.issuerRoots = s.pebble.IssuerRoots(t)
	return s
}

// yaml is the gateway's configuration: both listeners on the ports
// Pebble validates on, ACME from Pebble, a route per host to the backend.
func (s *acmeSetup) yaml(hosts ...string) string {
	acme := fmt.Sprintf("    acme:\n      email: ops@example.com\n      ca: %q\n      ca_root: %q\n      storage: %q\n      challenges: [%s]\n",
		s.pebble.DirURL, s.pebble.CAFile, s.storage, s.challenge)
	var routes string
	for i, h := range hosts {
		routes += hrRoute(fmt.Sprintf("app%d", i), "/", s.backend.url, "host: "+h)
	}
	y := tlsYAML("fast", acme, "", routes)
	for _, port := range []int{s.plain, s.tls} { // server.listen, then server.tls.listen
		y = strings.Replace(y, `listen: "127.0.0.1:0"`, fmt.Sprintf(`listen: "127.0.0.1:%d"`, port), 1)
	}
	return y
}

// get requests path from the HTTPS listener for host, verifying the
// chain against Pebble's issuing root.
func (s *acmeSetup) get(host, path string) (*x509.Certificate, int, string, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.issuerRoots, ServerName: host},
		DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(s.tls)+path, nil)
	req.Host = host
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.TLS.PeerCertificates[0], resp.StatusCode, string(body), nil
}

// waitServed waits until the HTTPS listener serves host a verified
// certificate whose serial is not `not`, and returns it.
func (s *acmeSetup) waitServed(t *testing.T, host string, not *x509.Certificate, limit time.Duration) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	var last error
	ok := testacme.WaitFor(limit, func() bool {
		l, status, body, err := s.get(host, "/")
		if err != nil || status != http.StatusOK || body != "ok" {
			last = fmt.Errorf("status %d body %q err %v", status, body, err)
			return false
		}
		leaf = l
		return not == nil || l.SerialNumber.Cmp(not.SerialNumber) != 0
	})
	if !ok {
		t.Fatalf("%s: no new verified certificate served within %s (last: %v)", host, limit, last)
	}
	return leaf
}

// expiryMetric returns the value of the certificate expiry gauge of an
// ACME certificate for name (no file label) on the admin /metrics.
func expiryMetric(t *testing.T, admin, name string) float64 {
	t.Helper()
	resp, body := get(t, http.DefaultClient, "http://"+admin+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	series := fmt.Sprintf(`rustygate_tls_certificate_expiry_timestamp_seconds{file="",name=%q} `, name)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics:\n%s", series, grepLines(string(body), "certificate_expiry"))
	return 0
}

func grepLines(s, part string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, part) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestACME: the gateway obtains a certificate for a route host from
// Pebble, which validates the challenge on the gateway's own listener
// (http-01 on the plain one, tls-alpn-01 on the HTTPS one), and serves
// it: a client verifying against Pebble's issuing root gets the
// backend's answer, forwarded as https. The challenge request never
// reaches the backend, and the expiry gauge shows the certificate. The
// certificate Pebble issues lives two minutes: a configuration reload
// that adds a host finds it due (certmagic renews when a renewal check
// could come too late) and renews it, and the new serial is served
// without a restart.
func TestACME(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			start := time.Now()
			s := newACMESetup(t, challenge, 2*time.Minute)
			hrWrite(t, s.config, s.yaml(acmeHost))
			p := hrStart(t, s.config)
			first := s.waitServed(t, acmeHost, nil, 20*time.Second)
			t.Logf("certificate %x served %s after the start", first.SerialNumber, time.Since(start).Round(time.Millisecond))
			s.checkFirst(t, p, first)

			from := p.lineCount()
			hrWrite(t, s.config, s.yaml(acmeHost, "www."+acmeHost))
			if l := p.sighup(t); l["msg"] != hrMsgReloaded {
				t.Fatalf("reload: %v", l)
			}
			renewed := s.waitServed(t, acmeHost, first, 20*time.Second)
			s.waitServed(t, "www."+acmeHost, nil, 20*time.Second)
			p.waitLine(t, from, 5*time.Second, "the renewal", func(l map[string]any) bool {
				return l["msg"] == "certificate renewed successfully" && l["identifier"] == acmeHost
			})
			if !p.running() || p.startLine(p.pid) == nil {
				t.Fatal("the gateway restarted")
			}
			if got := expiryMetric(t, p.admin, acmeHost); got != float64(renewed.NotAfter.Unix()) {
				t.Errorf("expiry gauge %v after the renewal, want %d", got, renewed.NotAfter.Unix())
			}
			t.Logf("renewed %x, %d certificates issued, %s in all", renewed.SerialNumber, s.pebble.Issued(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// checkFirst checks the first certificate served: issued by Pebble for
// the host, with a short lifetime, the request forwarded as https, the
// challenge answered by the gateway and not routed, the expiry gauge.
func (s *acmeSetup) checkFirst(t *testing.T, p *hrProc, leaf *x509.Certificate) {
	t.Helper()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeHost || leaf.NotAfter.Sub(leaf.NotBefore) > 3*time.Minute {
		t.Fatalf("served certificate for %v valid %s - %s", leaf.DNSNames, leaf.NotBefore, leaf.NotAfter)
	}
	paths, proto := s.backend.seen()
	if proto != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q, want https", proto)
	}
	for _, path := range paths {
		if strings.HasPrefix(path, "/.well-known/acme-challenge/") {
			t.Errorf("the challenge request %s reached the backend", path)
		}
	}
	p.waitLine(t, 0, 5*time.Second, "the gateway answering the "+s.challenge+" validation", func(l map[string]any) bool {
		// "served key authentication" (http-01, identifier) or "... certificate" (tls-alpn-01, server_name)
		return strings.HasPrefix(fmt.Sprint(l["msg"]), "served key authentication") && l["challenge"] == s.challenge &&
			(l["identifier"] == acmeHost || l["server_name"] == acmeHost)
	})
	if got := expiryMetric(t, p.admin, acmeHost); got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want %d", got, leaf.NotAfter.Unix())
	}
}
