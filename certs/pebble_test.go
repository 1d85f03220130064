package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/rustygate/rustygate/internal/testnet"
)

// The Pebble ACME server (Let's Encrypt's test CA), a tool of the module
// (go.mod's tool directive), is built once per test binary into a
// temporary directory that TestMain removes: the build cache makes it a
// link step after the first time.
var pebbleBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func pebbleBinary(t testing.TB) string {
	t.Helper()
	b := &pebbleBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "rustygate-pebble-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "pebble")
		cmd := exec.Command("go", "build", "-o", b.path, "github.com/letsencrypt/pebble/v2/cmd/pebble")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building pebble: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func removePebble() {
	if pebbleBuild.dir != "" {
		os.RemoveAll(pebbleBuild.dir)
	}
}

// pebbleOpts are the ports Pebble validates challenges on (the test's
// listeners) and the lifetime of the certificates it issues.
type pebbleOpts struct {
	httpPort, tlsPort int
	validity          time.Duration
}

// pebbleServer is a running Pebble.
type pebbleServer struct {
	dirURL   string
	mgmt     string
	caFile   string         // the root of Pebble's HTTPS certificate
	dirPool  *x509.CertPool // the same, as a pool
	log      *logBuffer     // Pebble's output
	certsDir string
}

// startPebble runs Pebble on loopback with its own HTTPS certificate and
// a DNS server that resolves every name to 127.0.0.1, so it validates
// challenges against the test's listeners, for real.
func startPebble(t testing.TB, o pebbleOpts) *pebbleServer {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()
	ca := newCA(t, "Pebble directory test CA")
	leaf := ca.issue(t, leafSpec{names: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	pf := writePair(t, dir, "pebble", leaf)
	p := &pebbleServer{caFile: filepath.Join(dir, "ca.pem"), dirPool: ca.pool, log: &logBuffer{}, certsDir: dir}
	writeFile(t, p.caFile, ca.pem)
	port := testnet.FreePortRange(t, "127.0.0.1", 2)
	p.dirURL = fmt.Sprintf("https://127.0.0.1:%d/dir", port)
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", port+1)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": p.mgmt,
		"certificate":             pf.CertFile,
		"privateKey":              pf.KeyFile,
		"httpPort":                o.httpPort,
		"tlsPort":                 o.tlsPort,
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 0, "order": 0},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(o.validity / time.Second),
		}},
	}}
	js, _ := json.Marshal(conf)
	writeFile(t, filepath.Join(dir, "pebble.json"), js)
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", startDNS(t))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	p.waitReady(t, exited)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble:\n%s", p.log)
		}
	})
	return p
}

// waitReady waits for Pebble's directory to answer.
func (p *pebbleServer) waitReady(t testing.TB, exited chan struct{}) {
	t.Helper()
	c := p.client()
	defer c.CloseIdleConnections()
	ok := waitFor(15*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		resp, err := c.Get(p.dirURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-exited:
		t.Fatalf("pebble exited:\n%s", p.log)
	default:
	}
	if !ok {
		t.Fatalf("pebble did not answer on %s:\n%s", p.dirURL, p.log)
	}
}

func (p *pebbleServer) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.dirPool},
	}}
}

// issuerRoots returns the root Pebble signs certificates under, from its
// management API.
func (p *pebbleServer) issuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	c := p.client()
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble root: %s: %q", resp.Status, body)
	}
	return pool
}

// issued counts the certificates Pebble issued.
func (p *pebbleServer) issued() int {
	return strings.Count(p.log.String(), "Issued certificate serial")
}

// startDNS serves DNS on loopback (TCP, which Pebble uses, and UDP),
// answering every A query with 127.0.0.1 and every other one with no
// record; it returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{Listener: ln, Handler: h}, {PacketConn: pc, Handler: h}} {
		started, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { srv.ActivateAndServe(); close(done) }()
		<-started
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return ln.Addr().String()
}

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
