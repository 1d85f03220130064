// Package testacme runs Pebble, Let's Encrypt's test ACME server (a tool
// of the module: go.mod's tool directive), on loopback for tests, with a
// DNS server that resolves every name to 127.0.0.1 so that Pebble
// validates challenges against the test's own listeners, for real. It is
// for tests only.
package testacme

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testnet"
	"github.com/rustygate/rustygate/internal/testpki"
)

// The Pebble binary is built once per test binary into a temporary
// directory that RemoveBinary removes: the build cache makes it a link
// step after the first time.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of the Pebble binary, building it on first use.
func Binary(t testing.TB) string {
	t.Helper()
	b := &build
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

// RemoveBinary removes the built Pebble; TestMain calls it after the
// tests.
func RemoveBinary() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// Options are the ports Pebble validates challenges on (http-01 and
// tls-alpn-01: the listeners under test) and the lifetime of the
// certificates it issues.
type Options struct {
	HTTPPort, TLSPort int
	Validity          time.Duration
}

// Pebble is a running Pebble.
type Pebble struct {
	// DirURL is the ACME directory URL.
	DirURL string
	// Mgmt is the address of the management API (HTTPS).
	Mgmt string
	// CAFile is the root of Pebble's own HTTPS certificate (an ACME
	// client's ca_root); DirPool holds the same.
	CAFile  string
	DirPool *x509.CertPool
	log     *Buffer
}

// Start runs Pebble on loopback with its own HTTPS certificate and the
// loopback DNS server until the test ends.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "Pebble directory test CA")
	certFile, keyFile := ca.Issue(t, testpki.Spec{Hosts: []string{"localhost", "127.0.0.1"}}).WriteFiles(t, dir, "pebble")
	p := &Pebble{CAFile: ca.WriteCA(t, dir, "ca"), DirPool: ca.Pool, log: &Buffer{}}
	port := testnet.FreePortRange(t, "127.0.0.1", 2)
	p.DirURL = fmt.Sprintf("https://127.0.0.1:%d/dir", port)
	p.Mgmt = fmt.Sprintf("127.0.0.1:%d", port+1)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": p.Mgmt,
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                o.HTTPPort,
		"tlsPort":                 o.TLSPort,
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 0, "order": 0},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(o.Validity / time.Second),
		}},
	}}
	js, _ := json.Marshal(conf)
	testpki.WriteFile(t, filepath.Join(dir, "pebble.json"), js)
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", StartDNS(t))
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
func (p *Pebble) waitReady(t testing.TB, exited chan struct{}) {
	t.Helper()
	c := p.client()
	defer c.CloseIdleConnections()
	ok := WaitFor(15*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		resp, err := c.Get(p.DirURL)
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
		t.Fatalf("pebble did not answer on %s:\n%s", p.DirURL, p.log)
	}
}

func (p *Pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.DirPool},
	}}
}

// IssuerRoots returns the root Pebble signs certificates under, from its
// management API (/roots/0).
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	c := p.client()
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + p.Mgmt + "/roots/0")
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

// Log is Pebble's output so far.
func (p *Pebble) Log() string { return p.log.String() }

// Issued counts the certificates Pebble issued.
func (p *Pebble) Issued() int {
	return strings.Count(p.log.String(), "Issued certificate serial")
}

// Orders counts the orders Pebble took.
func (p *Pebble) Orders() int {
	return strings.Count(p.log.String(), "Added order")
}

// WaitFor polls cond every 20ms until it holds or limit passes, and
// reports whether it held.
func WaitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer collects a process's output; safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
