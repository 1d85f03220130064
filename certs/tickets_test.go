package certs

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// resumes reports whether a handshake with a client that already has a
// session in its cache resumed it.
func resumes(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	cs, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.DidResume
}

// rotateNow rotates the ticket keys at once, as the schedule would.
func (m *Manager) rotateNow() {
	m.tickets.rotate(time.Now())
	m.mu.Lock()
	m.setTicketKeys(m.tickets.current())
	m.mu.Unlock()
}

func TestSessionTicketsSurviveTwoRotations(t *testing.T) {
	f := newSNIFixture(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			m := startManager(t, Options{Certificates: f.files})
			// A clone (as net/http makes) still follows the rotations.
			addr := serveTLS(t, m.TLSConfig(nil).Clone())
			for rotations := 0; rotations <= ticketKeysKept; rotations++ {
				cfg := clientFor(f.ca, "a.example.com")
				cfg.MaxVersion = v
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				if resumes(t, addr, cfg) {
					t.Fatal("first handshake resumed")
				}
				for range rotations {
					m.rotateNow()
				}
				got, want := resumes(t, addr, cfg), rotations < ticketKeysKept
				if got != want {
					t.Errorf("after %d rotations: resumed %v, want %v", rotations, got, want)
				}
			}
		})
	}
}

func TestOnHandshakeSeesVersionsAndResumption(t *testing.T) {
	f := newSNIFixture(t)
	var mu sync.Mutex
	seen := map[string]int{}
	m := startManager(t, Options{Certificates: f.files, OnHandshake: func(cs tls.ConnectionState) {
		mu.Lock()
		defer mu.Unlock()
		seen[fmt.Sprintf("%s resumed=%v sni=%s", tls.VersionName(cs.Version), cs.DidResume, cs.ServerName)]++
	}})
	addr := serveTLS(t, m.TLSConfig(nil))
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientFor(f.ca, "a.example.com")
		cfg.MaxVersion = v
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		resumes(t, addr, cfg)
		resumes(t, addr, cfg)
	}
	old := clientFor(f.ca, "a.example.com")
	old.MaxVersion = tls.VersionTLS11
	dial(addr, old)
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{
		"TLS 1.2 resumed=false sni=a.example.com": 1, "TLS 1.2 resumed=true sni=a.example.com": 1,
		"TLS 1.3 resumed=false sni=a.example.com": 1, "TLS 1.3 resumed=true sni=a.example.com": 1,
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("handshakes seen %v, want %v", seen, want)
	}
}

func TestTicketKeysRotateOnSchedule(t *testing.T) {
	f := newSNIFixture(t)
	m := startManager(t, Options{Certificates: f.files, TicketKeyRotation: 100 * time.Millisecond})
	first := m.tickets.current()[0]
	if !waitFor(5*time.Second, func() bool { return len(m.tickets.current()) == ticketKeysKept }) {
		t.Fatalf("after 5s the ring holds %d keys, want %d", len(m.tickets.current()), ticketKeysKept)
	}
	keys := m.tickets.current()
	if keys[0] == first || keys[len(keys)-1] == keys[0] {
		t.Error("rotation did not put a new key first")
	}
}

func TestTicketKeysHandedToANewProcess(t *testing.T) {
	f := newSNIFixture(t)
	old := startManager(t, Options{Certificates: f.files})
	oldAddr := serveTLS(t, old.TLSConfig(nil))
	cfg := clientFor(f.ca, "a.example.com")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resumes(t, oldAddr, cfg)

	// The new process knows nothing of the session...
	next := startManager(t, Options{Certificates: f.files})
	nextAddr := serveTLS(t, next.TLSConfig(nil))
	probe := cfg.Clone()
	probe.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resumes(t, oldAddr, probe)
	if resumes(t, nextAddr, probe) {
		t.Fatal("a process with its own keys resumed another's session")
	}
	// ...until it imports the old process's keys: then sessions resume,
	// and its rotation goes on from the imported key's age.
	exported := old.ExportTicketKeys()
	if err := next.ImportTicketKeys(exported); err != nil {
		t.Fatal(err)
	}
	if !resumes(t, nextAddr, cfg) {
		t.Error("session of the old process not resumed after the import")
	}
	if !bytes.Equal(next.ExportTicketKeys(), exported) {
		t.Error("export after import differs")
	}
	for _, bad := range [][]byte{nil, []byte("RGTK\x01short"), append(exported, 0), append([]byte("XXXX"), exported[4:]...)} {
		if err := next.ImportTicketKeys(bad); err == nil {
			t.Errorf("import of %d malformed bytes accepted", len(bad))
		}
	}
}
