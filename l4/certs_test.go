package l4

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/observe"
)

// plainTagged is a plain TCP backend that sends "plain\n" and echoes.
func plainTagged(t *testing.T) string {
	return tcpBackend(t, func(c net.Conn) {
		io.WriteString(c, "plain\n")
		echo(c)
	})
}

// handshake makes a TLS connection to addr with cfg, reads the backend's
// tag (which also takes in the session tickets the gateway sends after
// the handshake) and returns the connection's state; the error is the
// handshake's.
func handshake(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	if tag, err := bufio.NewReader(tc).ReadString('\n'); tag != "plain\n" {
		t.Fatalf("backend tag %q, %v", tag, err)
	}
	return tc.ConnectionState(), nil
}

// servedSerial returns the serial number of the certificate addr serves.
func servedSerial(t *testing.T, addr string, ca *testCA) string {
	t.Helper()
	cs, err := handshake(t, addr, &tls.Config{ServerName: "tcp.example.com", RootCAs: ca.pool})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.PeerCertificates[0].SerialNumber.String()
}

// termManager runs a manager with the TLS listeners ls (defaults
// applied), logging into the returned buffer.
func termManager(t *testing.T, ls ...config.L4Listener) (*Manager, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m := NewManager(slog.New(slog.NewJSONHandler(logs, nil)), observe.NewMetrics(), plainListen)
	t.Cleanup(func() { m.Shutdown(t.Context()) })
	if err := m.Apply(withDefaults(ls...)); err != nil {
		t.Fatal(err)
	}
	return m, logs
}

func withDefaults(ls ...config.L4Listener) []config.L4Listener {
	cfg := &config.Config{L4: ls}
	cfg.ApplyDefaults()
	return cfg.L4
}

func tlsListener(name, backend, certFile, keyFile, minVersion string) config.L4Listener {
	l := l4cfg(name, backend)
	l.TLS = &config.L4TLS{CertFile: certFile, KeyFile: keyFile, MinVersion: minVersion}
	return l
}

// TestTLSRenewedWithoutReload: a renewed pair written over the files is
// served within 2 s with no reload; garbage written over the certificate
// is refused with a log line naming the listener and the file, and the
// renewed pair keeps serving.
func TestTLSRenewedWithoutReload(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writePair(t, "tcp.example.com")
	m, logs := termManager(t, tlsListener("term", plainTagged(t), certFile, keyFile, ""))
	addr := m.Addr("term").String()
	first := servedSerial(t, addr, ca)

	renewed := ca.writePairTo(t, certFile, keyFile, "tcp.example.com")
	want := renewed.Leaf.SerialNumber.String()
	written := time.Now()
	for servedSerial(t, addr, ca) != want {
		if time.Since(written) > 2*time.Second {
			t.Fatalf("the renewed certificate is not served 2s after the file change (still %s, was %s)", servedSerial(t, addr, ca), first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("renewed certificate served %v after the file change", time.Since(written).Round(time.Millisecond))

	replaceFile(t, certFile, []byte("garbage"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := logs.lines("certificate reload refused; the previous certificate keeps serving")
		if len(lines) > 0 {
			if l := lines[0]; l["listener"] != "term" || l["file"] != certFile || l["reason"] != certs.ReasonNoCertificate {
				t.Errorf("refusal line %v", l)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no log line refusing the garbage certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := servedSerial(t, addr, ca); got != want {
		t.Fatalf("after the garbage file serial %s is served, want the renewed %s", got, want)
	}
}

// certsOf returns the certificate manager of listener name.
func certsOf(m *Manager, name string) *certs.Manager {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.current(name); st != nil {
		return st.certs
	}
	return nil
}

// closed reports whether cm was closed: Update refuses then.
func closed(t *testing.T, cm *certs.Manager, l config.L4Listener) bool {
	t.Helper()
	opts, err := certOptions(l.TLS)
	if err != nil {
		t.Fatal(err)
	}
	err = cm.Update(opts)
	return err != nil && strings.Contains(err.Error(), "manager closed")
}

// watchers counts the file watchers of certificate managers running.
func watchers() int {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "certs.(*Manager).watch(")
}

// watchersSettle waits up to 2 s for the number of running watchers to
// be want (a watcher being started or stopped is seen for a moment), and
// returns the last count.
func watchersSettle(want int) int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := watchers()
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSCertManagerReplacedOnChange: a reload that keeps a listener's
// tls keeps its certificate manager; one that changes it gets a new
// manager, closes the old one, and the clients resume their sessions.
func TestTLSCertManagerReplacedOnChange(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writePair(t, "tcp.example.com")
	l := tlsListener("term", plainTagged(t), certFile, keyFile, "")
	m, _ := termManager(t, l)
	addr := m.Addr("term").String()
	l.Listen = addr
	m1 := certsOf(m, "term")
	if err := m.Apply(withDefaults(l)); err != nil {
		t.Fatal(err)
	}
	if certsOf(m, "term") != m1 || watchersSettle(1) != 1 {
		t.Fatalf("an unchanged tls block: manager replaced %v, %d watchers", certsOf(m, "term") != m1, watchers())
	}
	client := &tls.Config{ServerName: "tcp.example.com", RootCAs: ca.pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if _, err := handshake(t, addr, client); err != nil {
		t.Fatal(err)
	}

	l13 := l
	l13.TLS = &config.L4TLS{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.3"}
	if err := m.Apply(withDefaults(l13)); err != nil {
		t.Fatal(err)
	}
	if certsOf(m, "term") == m1 || !closed(t, m1, l) || watchersSettle(1) != 1 {
		t.Fatalf("min_version changed: new manager %v, old one closed %v, %d watchers", certsOf(m, "term") != m1, closed(t, m1, l), watchers())
	}
	if cs, err := handshake(t, addr, client); err != nil || !cs.DidResume {
		t.Errorf("after the tls change: resumed %v, %v", cs.DidResume, err)
	}
	old := &tls.Config{ServerName: "tcp.example.com", RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}
	if _, err := handshake(t, addr, old); err == nil {
		t.Error("a TLS 1.2 client was served with min_version 1.3")
	}
}

// TestTLSCertManagerClosedWithItsState: the manager a failed reload built
// is closed and the listener keeps its own; removing the tls block or the
// listener, and Shutdown, close the listener's manager.
func TestTLSCertManagerClosedWithItsState(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writePair(t, "tcp.example.com")
	be := plainTagged(t)
	l := tlsListener("term", be, certFile, keyFile, "")
	m, _ := termManager(t, l)
	addr := m.Addr("term").String()
	l.Listen = addr
	cm := certsOf(m, "term")

	l13 := l
	l13.TLS = &config.L4TLS{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.3"}
	missing := tlsListener("bad", be, certFile+".none", keyFile, "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := l4cfg("busy", be)
	taken.Listen = busy.Addr().String()
	for _, next := range [][]config.L4Listener{{l13, missing}, {l13, taken}} {
		if err := m.Apply(withDefaults(next...)); err == nil {
			t.Fatalf("reload to %s succeeded", next[1].Name)
		}
		if certsOf(m, "term") != cm || watchersSettle(1) != 1 {
			t.Fatalf("failed reload (%s): manager replaced %v, %d watchers", next[1].Name, certsOf(m, "term") != cm, watchers())
		}
	}
	if _, err := handshake(t, addr, &tls.Config{ServerName: "tcp.example.com", RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}); err != nil {
		t.Fatalf("after the failed reloads TLS 1.2 is refused: %v", err)
	}

	plain := l4cfg("term", be)
	plain.Listen = addr
	apply := func(ls ...config.L4Listener) {
		t.Helper()
		if err := m.Apply(withDefaults(ls...)); err != nil {
			t.Fatal(err)
		}
	}
	apply(plain)
	if !closed(t, cm, l) || watchersSettle(0) != 0 {
		t.Fatalf("tls removed: closed %v, %d watchers", closed(t, cm, l), watchers())
	}
	apply(l)
	cm = certsOf(m, "term")
	apply()
	if !closed(t, cm, l) || watchersSettle(0) != 0 {
		t.Fatalf("listener removed: closed %v, %d watchers", closed(t, cm, l), watchers())
	}
	apply(l)
	cm = certsOf(m, "term")
	if err := m.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !closed(t, cm, l) || watchersSettle(0) != 0 {
		t.Fatalf("shutdown: closed %v, %d watchers", closed(t, cm, l), watchers())
	}
}
