package certs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// renewalLimit is how soon a renewed pair must serve new handshakes.
const renewalLimit = 2 * time.Second

// watchFixture serves one watched pair for a.example.com.
type watchFixture struct {
	ca    *testCA
	files PairFiles
	first *issued
	m     *Manager
	addr  string
	logs  *logBuffer
}

func newWatchFixture(t *testing.T, files func(dir string, c *issued) PairFiles) *watchFixture {
	f := &watchFixture{ca: newCA(t, "Watch CA"), logs: &logBuffer{}}
	f.first = f.ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	dir := t.TempDir()
	if files == nil {
		files = func(dir string, c *issued) PairFiles { return writePair(t, dir, "a", c) }
	}
	f.files = files(dir, f.first)
	f.m = startManager(t, Options{Certificates: []PairFiles{f.files}, Watch: true, Logger: f.logs.logger()})
	f.addr = serveTLS(t, f.m.TLSConfig(nil))
	if got := f.serial(t); got != f.first.serialHex {
		t.Fatalf("serving %s, want %s", got, f.first.serialHex)
	}
	return f
}

func (f *watchFixture) serial(t *testing.T) string {
	return servedSerial(t, f.addr, clientFor(f.ca, "a.example.com"))
}

// waitServed waits until handshakes get serial, at most renewalLimit
// after since.
func (f *watchFixture) waitServed(t *testing.T, serial string, since time.Time) {
	t.Helper()
	if !waitFor(renewalLimit-time.Since(since), func() bool { return f.serial(t) == serial }) {
		t.Fatalf("serial %s not served %v after the change (still %s); log:\n%s", serial, renewalLimit, f.serial(t), f.logs.String())
	}
}

func TestWatchRenewalServedWithin2s(t *testing.T) {
	f := newWatchFixture(t, nil)
	for range 2 {
		next := f.ca.issue(t, leafSpec{names: []string{"a.example.com"}, keyType: "rsa"})
		changed := time.Now()
		writeFile(t, f.files.KeyFile, next.keyPEM)
		writeFile(t, f.files.CertFile, next.chainPEM)
		f.waitServed(t, next.serialHex, changed)
		f.logs.waitLog(t, "certificate reloaded", "serial="+next.serialHex)
	}
	if got := f.m.Certificates()[0].Serial; got == f.first.serialHex {
		t.Error("Certificates still lists the first serial")
	}
}

func TestWatchRefusesBrokenReplacements(t *testing.T) {
	f := newWatchFixture(t, nil)
	other := f.ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	expired := f.ca.issue(t, leafSpec{names: []string{"a.example.com"}, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})

	// Garbage in place of the certificate: refused, the old pair serves.
	writeFile(t, f.files.CertFile, []byte("-----BEGIN GARBAGE-----\n"))
	f.logs.waitLog(t, "certificate reload refused", "file="+f.files.CertFile, `reason="no certificate"`)
	if got := f.serial(t); got != f.first.serialHex {
		t.Fatalf("after a garbage certificate, serving %s, want the previous %s", got, f.first.serialHex)
	}

	// A certificate with someone else's key: refused, naming the key.
	writeFile(t, f.files.CertFile, other.chainPEM)
	f.logs.waitLog(t, "certificate reload refused", "file="+f.files.KeyFile, `reason="key does not match certificate"`)
	if got := f.serial(t); got != f.first.serialHex {
		t.Fatalf("after a mismatched pair, serving %s, want the previous %s", got, f.first.serialHex)
	}

	// An expired pair: refused.
	writeFile(t, f.files.KeyFile, expired.keyPEM)
	writeFile(t, f.files.CertFile, expired.chainPEM)
	f.logs.waitLog(t, "certificate reload refused", "file="+f.files.CertFile, "reason=expired")
	if got := f.serial(t); got != f.first.serialHex {
		t.Fatalf("after an expired pair, serving %s, want the previous %s", got, f.first.serialHex)
	}

	// The matching key arrives: the pair is complete and serves.
	changed := time.Now()
	writeFile(t, f.files.CertFile, other.chainPEM)
	writeFile(t, f.files.KeyFile, other.keyPEM)
	f.waitServed(t, other.serialHex, changed)

	// A deleted file is refused too, and the listener keeps serving.
	if err := os.Remove(f.files.CertFile); err != nil {
		t.Fatal(err)
	}
	f.logs.waitLog(t, "certificate reload refused", "reason=unreadable")
	if got := f.serial(t); got != other.serialHex {
		t.Fatalf("after a deleted file, serving %s, want %s", got, other.serialHex)
	}
}

// TestWatchKubernetesSecretSwap renews a pair as a Kubernetes Secret
// volume does: the files are symlinks through ..data, which is swapped to
// a new timestamped directory in one rename.
func TestWatchKubernetesSecretSwap(t *testing.T) {
	var dir string
	publish := func(t *testing.T, stamp string, c *issued) {
		data := filepath.Join(dir, stamp)
		if err := os.Mkdir(data, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(data, "tls.crt"), c.chainPEM)
		writeFile(t, filepath.Join(data, "tls.key"), c.keyPEM)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(stamp, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	f := newWatchFixture(t, func(d string, c *issued) PairFiles {
		dir = d
		publish(t, "..2026_12_06_01", c)
		for _, n := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", n), filepath.Join(d, n)); err != nil {
				t.Fatal(err)
			}
		}
		return PairFiles{CertFile: filepath.Join(d, "tls.crt"), KeyFile: filepath.Join(d, "tls.key")}
	})
	for i, stamp := range []string{"..2026_12_06_02", "..2026_12_06_03"} {
		next := f.ca.issue(t, leafSpec{names: []string{"a.example.com"}})
		changed := time.Now()
		publish(t, stamp, next)
		f.waitServed(t, next.serialHex, changed)
		if err := os.RemoveAll(filepath.Join(dir, []string{"..2026_12_06_01", "..2026_12_06_02"}[i])); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWatchSymlinkTargetRewritten rewrites the file a symlink points to
// in another directory (certbot's live/ -> archive/ layout).
func TestWatchSymlinkTargetRewritten(t *testing.T) {
	archive := t.TempDir()
	f := newWatchFixture(t, func(live string, c *issued) PairFiles {
		real := writePair(t, archive, "a1", c)
		out := PairFiles{CertFile: filepath.Join(live, "fullchain.pem"), KeyFile: filepath.Join(live, "privkey.pem")}
		for link, target := range map[string]string{out.CertFile: real.CertFile, out.KeyFile: real.KeyFile} {
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
		}
		return out
	})
	next := f.ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	changed := time.Now()
	key, _ := filepath.EvalSymlinks(f.files.KeyFile)
	cert, _ := filepath.EvalSymlinks(f.files.CertFile)
	// In place, not by rename: only the target's directory sees it.
	if err := os.WriteFile(key, next.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, next.chainPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	f.waitServed(t, next.serialHex, changed)
}

func TestWatchEventFilter(t *testing.T) {
	fw := &fileWatch{
		files:    map[string]bool{"/etc/tls/a.crt": true, "/etc/tls/a.key": true, "/srv/archive/a3.pem": true},
		linkDirs: map[string]bool{"/etc/tls": true},
	}
	for _, tc := range []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{"/etc/tls/a.crt", fsnotify.Write, true},
		{"/etc/tls/a.key", fsnotify.Create, true},
		{"/etc/tls/a.crt", fsnotify.Rename, true},
		{"/etc/tls/..data", fsnotify.Create, true},
		{"/srv/archive/a3.pem", fsnotify.Write, true},
		{"/etc/tls/a.crt", fsnotify.Chmod, false},
		{"/etc/tls/b.crt", fsnotify.Write, false},
		{"/etc/tls/a.crt.swp", fsnotify.Write, false},
		{"/srv/archive/..data", fsnotify.Create, false},
		{"/srv/archive/a4.pem", fsnotify.Create, false},
	} {
		if got := fw.relevant(fsnotify.Event{Name: tc.name, Op: tc.op}); got != tc.want {
			t.Errorf("%s %s: relevant %v, want %v", tc.op, tc.name, got, tc.want)
		}
	}
}
