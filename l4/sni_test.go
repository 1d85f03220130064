package l4

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
)

// testCA issues the certificates of a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "l4 test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a leaf certificate for names, signed by the CA.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writePair writes a certificate for names and its key as PEM files.
func (ca *testCA) writePair(t *testing.T, names ...string) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.writePairTo(t, certFile, keyFile, names...)
	return certFile, keyFile
}

// writePairTo issues a certificate for names and writes it and its key
// over certFile and keyFile, each replaced at once (renamed into place),
// as a renewal does.
func (ca *testCA) writePairTo(t *testing.T, certFile, keyFile string, names ...string) tls.Certificate {
	t.Helper()
	c := ca.issue(t, names...)
	kder, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
	replaceFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return c
}

// replaceFile writes data to a temporary file beside path and renames
// it over path.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsEcho serves TLS with cert: it sends tag and a newline, echoes what it
// reads, and ends its side after the client ended its own. before, if
// set, runs on the raw connection first (to read a PROXY header).
func tlsEcho(t *testing.T, tag string, cert tls.Certificate, before func(net.Conn)) string {
	return tcpBackend(t, func(c net.Conn) {
		if before != nil {
			before(c)
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		io.WriteString(tc, tag+"\n")
		io.Copy(tc, tc)
		tc.CloseWrite()
	})
}

// tlsExchange makes a TLS connection to addr for serverName through wrap
// (nil: none), sends payload, ends its side and checks it reads payload
// back intact. It returns the backend's tag and certificate.
func tlsExchange(t *testing.T, addr, serverName string, roots *x509.CertPool, payload []byte, wrap func(net.Conn) net.Conn) (string, *x509.Certificate) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	conn := raw
	if wrap != nil {
		conn = wrap(raw)
	}
	cfg := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: serverName == ""}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := tc.Write(payload)
		if err == nil {
			err = tc.CloseWrite()
		}
		errc <- err
	}()
	r := bufio.NewReader(tc)
	tag, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%q: reading the backend's tag: %v", serverName, err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%q: reading the echo: %v", serverName, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("%q: sending: %v", serverName, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("%q: echoed %d bytes, checksum differs from the %d sent", serverName, len(got), len(payload))
	}
	raw.Close()
	return strings.TrimSuffix(tag, "\n"), tc.ConnectionState().PeerCertificates[0]
}

func randomPayload(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func sniCfg(name string, routes ...config.L4Route) config.L4Listener {
	return config.L4Listener{Name: name, Listen: "127.0.0.1:0", Routes: routes}
}

func route(name string, sni []string, backends ...string) config.L4Route {
	r := config.L4Route{Name: name, SNI: sni}
	for _, b := range backends {
		r.Backends = append(r.Backends, config.L4Backend{Addr: b})
	}
	return r
}

func TestSNIPassthroughRoutes(t *testing.T) {
	ca := newTestCA(t)
	dbCert := ca.issue(t, "db.example.com")
	appsCert := ca.issue(t, "*.apps.example.com", "*.web.apps.example.com")
	specialCert := ca.issue(t, "special.apps.example.com", "*.x.apps.example.com")
	defCert := ca.issue(t, "other.example.com")
	db := tlsEcho(t, "db", dbCert, nil)
	apps := tlsEcho(t, "apps", appsCert, nil)
	special := tlsEcho(t, "special", specialCert, nil)
	def := tlsEcho(t, "default", defCert, nil)
	l := sniCfg("edge",
		route("db", []string{"db.example.com"}, db),
		route("apps", []string{"*.apps.example.com"}, apps),
		route("", []string{"*.x.apps.example.com", "special.apps.example.com"}, special))
	l.Backends = []config.L4Backend{{Addr: def}}
	m, metrics := startManager(t, l)
	addr := m.Addr("edge").String()
	payload := randomPayload(1 << 20)
	for _, tt := range []struct {
		sni, tag string
		cert     tls.Certificate
	}{
		{"db.example.com", "db", dbCert},
		{"DB.Example.COM", "db", dbCert},
		{"web.apps.example.com", "apps", appsCert},
		{"special.apps.example.com", "special", specialCert}, // exact before wildcard
		{"a.x.apps.example.com", "special", specialCert},     // longer wildcard first
		{"deep.web.apps.example.com", "apps", appsCert},      // below a wildcard, any depth
		{"other.example.com", "default", defCert},
		{"", "default", defCert},
	} {
		tag, peer := tlsExchange(t, addr, tt.sni, ca.pool, payload, nil)
		if tag != tt.tag || !peer.Equal(tt.cert.Leaf) {
			t.Errorf("%q reached %q with the certificate of %v, want %q", tt.sni, tag, peer.DNSNames, tt.tag)
		}
	}
	waitMetrics(t, metrics, []string{
		`rustygate_l4_route_connections_total{listener="edge",route="db"} 2`,
		`rustygate_l4_route_connections_total{listener="edge",route="apps"} 2`,
		`rustygate_l4_route_connections_total{listener="edge",route="*.x.apps.example.com"} 2`,
		`rustygate_l4_route_connections_total{listener="edge",route="default"} 2`,
		`rustygate_l4_connections_total{listener="edge",result="proxied"} 8`,
	})
}

// splitWriter cuts the first write (the ClientHello) into TLS records of
// recordSize bytes and sends them in TCP segments of segSize bytes.
type splitWriter struct {
	net.Conn
	t                 *testing.T
	recordSize, segSz int
	done              bool
}

func (w *splitWriter) Write(p []byte) (int, error) {
	if w.done {
		return w.Conn.Write(p)
	}
	w.done = true
	out := refragment(w.t, p, w.recordSize)
	for len(out) > 0 {
		n := min(w.segSz, len(out))
		if _, err := w.Conn.Write(out[:n]); err != nil {
			return 0, err
		}
		out = out[n:]
		time.Sleep(time.Millisecond) // separate segments
	}
	return len(p), nil
}

func TestSNIHelloSplitAcrossSegmentsAndRecords(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "db.example.com")
	db := tlsEcho(t, "db", cert, nil)
	m, _ := startManager(t, sniCfg("edge", route("db", []string{"db.example.com"}, db)))
	split := func(c net.Conn) net.Conn {
		c.(*net.TCPConn).SetNoDelay(true)
		return &splitWriter{Conn: c, t: t, recordSize: 40, segSz: 7}
	}
	tag, _ := tlsExchange(t, m.Addr("edge").String(), "db.example.com", ca.pool, randomPayload(64<<10), split)
	if tag != "db" {
		t.Fatalf("reached %q", tag)
	}
}

// closedWithin reads from c until it ends and fails unless that happens
// within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %s", d)
	}
	return time.Since(start)
}

func TestSNIRefusals(t *testing.T) {
	ca := newTestCA(t)
	db := tlsEcho(t, "db", ca.issue(t, "db.example.com"), nil)
	l := sniCfg("edge", route("db", []string{"db.example.com"}, db))
	// The refusals below must come well before the handshake timeout, and
	// the silent client not before it: 3 s leaves room for a guest under
	// software emulation, whose clock can stall for a good part of a second.
	const handshakeTimeout = 3 * time.Second
	l.HandshakeTimeout = config.Duration(handshakeTimeout)
	m, metrics := startManager(t, l)
	addr := m.Addr("edge").String()

	t.Run("unknown name without default", func(t *testing.T) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		err = tls.Client(raw, &tls.Config{ServerName: "unknown.example.com", RootCAs: ca.pool}).Handshake()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handshake: %v, want the connection closed", err)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c := dialAddr(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n")
		if d := closedWithin(t, c, 5*time.Second); d > handshakeTimeout*2/3 {
			t.Fatalf("closed after %s: waited for the handshake timeout", d)
		}
	})
	t.Run("one byte of something else", func(t *testing.T) {
		c := dialAddr(t, addr)
		io.WriteString(c, "\n")
		if d := closedWithin(t, c, 5*time.Second); d > handshakeTimeout*2/3 {
			t.Fatalf("closed after %s: waited for the handshake timeout", d)
		}
	})
	t.Run("silent client", func(t *testing.T) {
		// Timed from before the dial: the gateway arms its timeout after
		// accepting, so the close cannot come earlier than this.
		start := time.Now()
		c := dialAddr(t, addr)
		closedWithin(t, c, 2*handshakeTimeout)
		if d := time.Since(start); d < handshakeTimeout {
			t.Fatalf("closed after %s, before the handshake timeout", d)
		}
	})
	t.Run("hello cut short", func(t *testing.T) {
		c := dialAddr(t, addr)
		c.Write(clientHello(t, "db.example.com")[:40])
		c.CloseWrite()
		closedWithin(t, c, 5*time.Second)
	})
	want := []string{
		`rustygate_l4_tls_hello_failures_total{listener="edge",reason="not_tls"} 2`,
		`rustygate_l4_tls_hello_failures_total{listener="edge",reason="timeout"} 1`,
		`rustygate_l4_tls_hello_failures_total{listener="edge",reason="client_closed"} 1`,
		`rustygate_l4_connections_total{listener="edge",result="no_route"} 1`,
		`rustygate_l4_connections_total{listener="edge",result="hello_failed"} 4`,
	}
	waitMetrics(t, metrics, want)
}

func dialAddr(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitMetrics waits until the scrape has every line of want (counted
// after the client saw the close).
func waitMetrics(t *testing.T, metrics *observe.Metrics, want []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := scrape(t, metrics)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(got, w) })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %v:\n%s", missing, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSNIProxyProtocolAndReload(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "db.example.com", "db2.example.com")
	headers := make(chan string, 4)
	// The v1 header is read a byte at a time so the TLS bytes stay.
	oneByte := func(c net.Conn) {
		var line []byte
		b := make([]byte, 1)
		for len(line) < 107 && !strings.HasSuffix(string(line), "\r\n") {
			if _, err := c.Read(b); err != nil {
				break
			}
			line = append(line, b[0])
		}
		headers <- string(line)
	}
	a := tlsEcho(t, "a", cert, oneByte)
	b := tlsEcho(t, "b", cert, oneByte)
	l := sniCfg("edge", route("db", []string{"db.example.com"}, a))
	l.ProxyProtocol = "v1"
	m, _ := startManager(t, l)
	addr := m.Addr("edge").String()
	payload := randomPayload(32 << 10)
	if tag, _ := tlsExchange(t, addr, "db.example.com", ca.pool, payload, nil); tag != "a" {
		t.Fatalf("reached %q", tag)
	}
	if h := <-headers; !strings.HasPrefix(h, "PROXY TCP4 127.0.0.1 127.0.0.1 ") {
		t.Fatalf("PROXY header %q", h)
	}
	// A reload moves the name to another backend and adds one.
	next := sniCfg("edge", route("db", []string{"db.example.com", "db2.example.com"}, b))
	next.Listen, next.ProxyProtocol = addr, "v1"
	cfg := &config.Config{L4: []config.L4Listener{next}}
	cfg.ApplyDefaults()
	if err := m.Apply(cfg.L4); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"db.example.com", "db2.example.com"} {
		if tag, _ := tlsExchange(t, addr, name, ca.pool, payload, nil); tag != "b" {
			t.Fatalf("%s after reload reached %q", name, tag)
		}
		<-headers
	}
}

func TestTLSTermination(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writePair(t, "tcp.example.com")
	be := tcpBackend(t, func(c net.Conn) {
		io.WriteString(c, "plain\n")
		echo(c)
	})
	l := l4cfg("term", be)
	l.TLS = &config.L4TLS{CertFile: certFile, KeyFile: keyFile}
	l.Datapath = datapathKernel // falls back: the plaintext is in the process
	l.HandshakeTimeout = config.Duration(300 * time.Millisecond)
	cfg := &config.Config{L4: []config.L4Listener{l}}
	cfg.ApplyDefaults()
	logs := &logBuffer{}
	metrics := observe.NewMetrics()
	m := NewManager(slog.New(slog.NewJSONHandler(logs, nil)), metrics, plainListen)
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Apply(cfg.L4); err != nil {
		t.Fatal(err)
	}
	addr := m.Addr("term").String()
	tag, peer := tlsExchange(t, addr, "tcp.example.com", ca.pool, randomPayload(1<<20), nil)
	if tag != "plain" || peer.Subject.CommonName != "tcp.example.com" {
		t.Fatalf("got %q from %s", tag, peer.Subject.CommonName)
	}
	c := dialAddr(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
	closedWithin(t, c, 5*time.Second)
	waitMetrics(t, metrics, []string{`rustygate_l4_tls_hello_failures_total{listener="term",reason="not_tls"} 1`})
	var fallback, conn map[string]any
	for _, line := range logs.lines("l4: datapath kernel requested, but the listener terminates TLS: its plaintext is relayed in userspace") {
		fallback = line
	}
	for _, line := range logs.lines("l4 connection") {
		if line["result"] == nil {
			conn = line
		}
	}
	if started := logs.lines("l4 listener started"); len(started) != 1 || started[0]["tls"] != true {
		t.Errorf("started line %v", started)
	}
	if fallback["datapath_fallback"] != fallbackTLSTermination || conn["datapath"] != "userspace" || conn["tls"] != true {
		t.Fatalf("fallback line %v, connection line %v", fallback, conn)
	}
}

func TestSNIRouteFailsOver(t *testing.T) {
	ca := newTestCA(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	live := tlsEcho(t, "live", ca.issue(t, "db.example.com"), nil)
	m, metrics := startManager(t, sniCfg("edge", route("db", []string{"db.example.com"}, deadAddr, live)))
	for range 3 {
		if tag, _ := tlsExchange(t, m.Addr("edge").String(), "db.example.com", ca.pool, randomPayload(1024), nil); tag != "live" {
			t.Fatalf("reached %q", tag)
		}
	}
	waitMetrics(t, metrics, []string{
		`rustygate_backend_failures_total{backend="tcp://` + deadAddr + `",reason="connect_failure",route="edge"}`,
		`rustygate_l4_route_connections_total{listener="edge",route="db"} 3`,
	})
}

func TestTLSTerminationRoutesByHandshakeName(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writePair(t, "a.example.com", "b.example.com")
	tagged := func(tag string) string {
		return tcpBackend(t, func(c net.Conn) { io.WriteString(c, tag+"\n"); echo(c) })
	}
	l := sniCfg("term", route("a", []string{"a.example.com"}, tagged("a")), route("b", []string{"B.example.com"}, tagged("b")))
	l.TLS = &config.L4TLS{CertFile: certFile, KeyFile: keyFile}
	m, metrics := startManager(t, l)
	for _, name := range []string{"a.example.com", "b.example.com", "A.EXAMPLE.COM"} {
		tag, _ := tlsExchange(t, m.Addr("term").String(), name, ca.pool, randomPayload(4096), nil)
		if want := strings.ToLower(name[:1]); tag != want {
			t.Errorf("%s reached %q, want %q", name, tag, want)
		}
	}
	waitMetrics(t, metrics, []string{
		`rustygate_l4_route_connections_total{listener="term",route="a"} 2`,
		`rustygate_l4_route_connections_total{listener="term",route="b"} 1`,
	})
}
