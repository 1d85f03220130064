package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
)

// sniFixture is three pairs: a (a.example.com), wild (*.wild.example.com
// and b.example.com, RSA) and ip (IP SAN 127.0.0.1), written to files.
type sniFixture struct {
	ca             *testCA
	a, wild, ip    *issued
	files          []PairFiles
	aF, wildF, ipF PairFiles
}

func newSNIFixture(t *testing.T) *sniFixture {
	t.Helper()
	f := &sniFixture{ca: newCA(t, "Test CA")}
	dir := t.TempDir()
	f.a = f.ca.issue(t, leafSpec{names: []string{"a.example.com"}})
	f.wild = f.ca.issue(t, leafSpec{names: []string{"*.wild.example.com", "b.example.com"}, keyType: "rsa", keyFormat: "pkcs1"})
	f.ip = f.ca.issue(t, leafSpec{names: []string{"ip.example.com"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	f.aF, f.wildF, f.ipF = writePair(t, dir, "a", f.a), writePair(t, dir, "wild", f.wild), writePair(t, dir, "ip", f.ip)
	f.files = []PairFiles{f.aF, f.wildF, f.ipF}
	return f
}

func TestSNISelection(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files, Default: f.wildF.CertFile})
	addr := serveTLS(t, m.TLSConfig([]string{"http/1.1"}))
	tests := []struct {
		sni  string
		want *issued
	}{
		{"a.example.com", f.a},
		{"A.Example.COM", f.a},
		{"b.example.com", f.wild},
		{"x.wild.example.com", f.wild},
		{"X.WILD.example.com", f.wild},
		{"ip.example.com", f.ip},
		// A wildcard covers one label: neither the parent nor two labels.
		{"y.x.wild.example.com", f.wild}, // the default, see below
		{"unknown.example.org", f.wild},
	}
	for _, tc := range tests {
		cfg := clientFor(f.ca, tc.sni)
		cfg.InsecureSkipVerify = true // the default is served for names it does not cover
		if got := servedSerial(t, addr, cfg); got != tc.want.serialHex {
			t.Errorf("SNI %q: served serial %s, want %s", tc.sni, got, tc.want.serialHex)
		}
	}
	// Verified as a browser would: the names each certificate covers.
	for _, sni := range []string{"a.example.com", "x.wild.example.com", "b.example.com"} {
		if _, err := dial(addr, clientFor(f.ca, sni)); err != nil {
			t.Errorf("verified handshake for %s: %v", sni, err)
		}
	}
	t.Run("wildcard covers one label only", func(t *testing.T) {
		tab := m.tab.Load()
		for _, name := range []string{"y.x.wild.example.com", "wild.example.com", ".wild.example.com"} {
			if i := tab.lookup(name, nil); i != -1 {
				t.Errorf("lookup(%q) = pair %d, want no match", name, i)
			}
		}
	})
}

func TestSNIAbsentUsesIPSANThenDefault(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files})
	addr := serveTLS(t, m.TLSConfig(nil))
	// Dialling an IP literal sends no SNI: the certificate with that IP
	// SAN is served and verifies.
	cs, err := dial(addr, &tls.Config{RootCAs: f.ca.pool})
	if err != nil {
		t.Fatalf("IP-literal handshake: %v", err)
	}
	if cs.ServerName != "" || cs.PeerCertificates[0].SerialNumber.Text(16) != f.ip.serialHex {
		t.Errorf("no-SNI connection to 127.0.0.1 got serial %s (sni %q), want the IP SAN certificate %s",
			cs.PeerCertificates[0].SerialNumber.Text(16), cs.ServerName, f.ip.serialHex)
	}
	// Without an IP match, the first pair is the default.
	m2 := startManager(t, Options{Certificates: f.files[:2]})
	addr2 := serveTLS(t, m2.TLSConfig(nil))
	if got := servedSerial(t, addr2, &tls.Config{InsecureSkipVerify: true}); got != f.a.serialHex {
		t.Errorf("no SNI, no IP match: served %s, want the first pair %s", got, f.a.serialHex)
	}
}

func TestDefaultByName(t *testing.T) {
	f := newSNIFixture(t)
	// A name covered by a wildcard designates that pair.
	m := startManager(t, Options{Certificates: f.files, Default: "anything.wild.example.com"})
	addr := serveTLS(t, m.TLSConfig(nil))
	cfg := &tls.Config{ServerName: "nowhere.example.org", InsecureSkipVerify: true}
	if got := servedSerial(t, addr, cfg); got != f.wild.serialHex {
		t.Errorf("unknown SNI served %s, want the default by name %s", got, f.wild.serialHex)
	}
	// So does an IP SAN.
	if i := DefaultIndex("127.0.0.1", []*Pair{m.pairs[0].pair, m.pairs[1].pair, m.pairs[2].pair}); i != 2 {
		t.Errorf("DefaultIndex(127.0.0.1) = %d, want the IP SAN pair 2", i)
	}
	if _, err := New(Options{Certificates: f.files, Default: "nowhere.example.org"}); err == nil ||
		!strings.Contains(err.Error(), "nowhere.example.org") {
		t.Errorf("a default that designates nothing: err = %v", err)
	}
	if _, err := New(Options{Certificates: f.files, Default: f.aF.CertFile, StrictSNI: true}); err == nil {
		t.Error("default with strict SNI accepted")
	}
}

func TestStrictSNI(t *testing.T) {
	f := newSNIFixture(t)
	var logs logBuffer
	m := startManager(t, Options{Certificates: f.files, StrictSNI: true, Logger: logs.logger()})
	addr := serveTLS(t, m.TLSConfig(nil))
	if _, err := dial(addr, clientFor(f.ca, "a.example.com")); err != nil {
		t.Fatalf("known name refused: %v", err)
	}
	if _, err := dial(addr, clientFor(f.ca, "unknown.example.org")); err == nil {
		t.Fatal("unknown SNI handshake succeeded under strict_sni")
	}
	logs.waitLog(t, "tls handshake refused", "sni=unknown.example.org", "strict_sni")
	// The listener's Handshake returns an error it can count by reason.
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go tls.Client(client, clientFor(f.ca, "other.example.org")).Handshake()
	if err := tls.Server(server, m.TLSConfig(nil)).Handshake(); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("server handshake error %v, want ErrNoCertificate", err)
	}
}

func TestGetCertificateAllocatesNothing(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files})
	for _, name := range []string{"a.example.com", "X.Wild.Example.Com", "unknown.example.org", ""} {
		hello := &tls.ClientHelloInfo{ServerName: name}
		if n := testing.AllocsPerRun(100, func() { m.GetCertificate(hello) }); n != 0 {
			t.Errorf("GetCertificate(%q) allocates %v times", name, n)
		}
	}
}

// BenchmarkGetCertificate measures the SNI selection of a handshake
// against a table of 100 names and 10 wildcards; the naive-* rows are the
// baseline in the same run: a lookup that lower-cases with
// strings.ToLower and cuts the wildcard parent with strings.Cut.
func BenchmarkGetCertificate(b *testing.B) {
	ca := newCA(b, "Bench CA")
	dir := b.TempDir()
	var files []PairFiles
	for i := range 10 {
		names := []string{"*.zone" + string(rune('a'+i)) + ".example.com"}
		for j := range 10 {
			names = append(names, "host"+string(rune('a'+j))+".zone"+string(rune('a'+i))+".example.net")
		}
		files = append(files, writePair(b, dir, "p"+string(rune('a'+i)), ca.issue(b, leafSpec{names: names})))
	}
	m := startManager(b, Options{Certificates: files})
	for _, bc := range []struct{ name, sni string }{
		{"exact", "hostc.zoned.example.net"},
		{"mixed-case", "HostC.ZoneD.Example.NET"},
		{"wildcard", "www.zonee.example.com"},
		{"default", "unknown.example.org"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: bc.sni}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("naive-"+bc.name, func(b *testing.B) {
			tab := m.tab.Load()
			b.ReportAllocs()
			for b.Loop() {
				naiveLookup(tab, bc.sni)
			}
		})
	}
}

// naiveLookup is the straightforward selection the benchmark compares
// with.
func naiveLookup(t *table, sni string) *tls.Certificate {
	name := strings.ToLower(sni)
	if i, ok := t.exact[name]; ok {
		return t.certs[i]
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if i, ok := t.wild[parent]; ok {
			return t.certs[i]
		}
	}
	return t.certs[t.def]
}
