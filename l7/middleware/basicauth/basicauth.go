package basicauth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Auth is a built basic_auth policy.
type Auth struct {
	route      string
	rep        middleware.Reporter
	users      map[string]hash
	dummy      hash // verified for unknown users
	cache      *cache
	seed       [32]byte
	remove     bool
	userHeader string
	challenge  [][2]string
	now        func() time.Time

	// flights are the verifications running, by cache key: a request
	// whose credentials are being verified for another waits for that
	// result instead of verifying them again. Without it, an entry
	// expiring under load had every connection of that client verify the
	// same hash at once, a few at a time: 64 connections waited up to 2 s.
	flightMu sync.Mutex
	flights  map[cacheKey]*flight
}

// flight is one verification of credentials, shared by the requests that
// came with them while it ran.
type flight struct {
	done            chan struct{}
	waiters         int // under flightMu
	name            string
	verified, valid bool
}

var _ middleware.Handler = (*Auth)(nil)

// maxToken bounds the credentials considered (base64 of user:password).
const maxToken = 1024

// verifySlots bounds the hash verifications running at once, process
// wide: each takes a CPU (and argon2id its memory) for tens of
// milliseconds.
var verifySlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// New builds the policy from settings, reading users_file.
func New(s Settings, route string, rep middleware.Reporter) (*Auth, error) {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	var us []user
	for i, line := range s.Users {
		u, err := parseUser(line)
		if err != nil {
			return nil, fmt.Errorf("basic_auth: users[%d]: %w", i, err)
		}
		us = append(us, u)
	}
	if s.UsersFile != "" {
		fu, err := readUsersFile(s.UsersFile)
		if err != nil {
			return nil, fmt.Errorf("basic_auth: users_file: %w", err)
		}
		us = append(us, fu...)
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("basic_auth: no users")
	}
	a := &Auth{
		route: route, rep: rep, users: make(map[string]hash, len(us)), dummy: us[0].hash,
		cache: newCache(s.CacheSize, s.CacheTTL.D()), remove: s.RemoveHeader, userHeader: s.UserHeader,
		challenge: [][2]string{
			{"WWW-Authenticate", `Basic realm="` + s.Realm + `", charset="UTF-8"`},
			{"Content-Type", "application/json"},
		},
		now: time.Now,
	}
	for _, u := range us {
		if _, dup := a.users[u.name]; dup {
			return nil, fmt.Errorf("basic_auth: user %q is listed twice", u.name)
		}
		a.users[u.name] = u.hash
	}
	if _, err := rand.Read(a.seed[:]); err != nil {
		return nil, err
	}
	return a, nil
}

var unauthorizedBody = []byte(`{"error":"unauthorized"}` + "\n")

// Handle implements middleware.Handler.
func (a *Auth) Handle(r middleware.Request) *middleware.Reply {
	token, ok := basicToken(r.Header("Authorization"))
	if !ok {
		reason := "missing"
		if token != nil {
			reason = "malformed"
		}
		return a.refuse(r.PeerIP(), reason)
	}
	var key cacheKey
	a.key(token, &key)
	now := a.now()
	user, hit := a.cache.get(&key, now)
	if !hit {
		// Verifying (or waiting for it) takes long: never on an event loop.
		r.Offload()
		name, verified, ok := a.verifyShared(&key, token, now)
		if !ok {
			return a.refuse(r.PeerIP(), "malformed")
		}
		if !verified {
			return a.refuse(r.PeerIP(), "invalid")
		}
		user = name
	}
	if a.remove {
		r.DelHeader("Authorization")
	}
	if a.userHeader != "" {
		r.SetHeader(a.userHeader, user)
	}
	return nil
}

// basicToken returns the credentials of a Basic Authorization value. ok
// is false when there are none; token is then non-nil when the header
// was there but is not usable Basic credentials.
func basicToken(h []byte) (token []byte, ok bool) {
	if h == nil {
		return nil, false
	}
	if len(h) < 6 || !eqFoldBasic(h[:6]) {
		return h[:0], false
	}
	token = bytes.TrimLeft(h[6:], " ")
	token = bytes.TrimRight(token, " \t")
	if len(token) == 0 || len(token) > maxToken {
		return h[:0], false
	}
	return token, true
}

func eqFoldBasic(b []byte) bool {
	return b[5] == ' ' && (b[0]|0x20) == 'b' && (b[1]|0x20) == 'a' && (b[2]|0x20) == 's' && (b[3]|0x20) == 'i' && (b[4]|0x20) == 'c'
}

// key computes the cache key of token: SHA-256 of the policy's random
// seed and the token, on the stack.
func (a *Auth) key(token []byte, k *cacheKey) {
	var buf [len(a.seed) + maxToken]byte
	n := copy(buf[:], a.seed[:])
	n += copy(buf[n:], token)
	*k = sha256.Sum256(buf[:n])
}

// verify decodes token and checks the password. ok is false when the
// token is not base64 of "user:password". An unknown user costs the
// verification of a known user's hash.
func (a *Auth) verify(token []byte) (name string, verified, ok bool) {
	creds := make([]byte, base64.StdEncoding.DecodedLen(len(token)))
	n, err := base64.StdEncoding.Decode(creds, token)
	if err != nil {
		return "", false, false
	}
	creds = creds[:n]
	i := bytes.IndexByte(creds, ':')
	if i < 0 {
		return "", false, false
	}
	name = string(creds[:i])
	h, known := a.users[name]
	if !known {
		h = a.dummy
	}
	verifySlots <- struct{}{}
	verified = h.verify(creds[i+1:])
	<-verifySlots
	return name, verified && known, true
}

// verifyShared verifies token, or waits for the verification of the same
// credentials already running, and caches a success.
func (a *Auth) verifyShared(key *cacheKey, token []byte, now time.Time) (name string, verified, ok bool) {
	a.flightMu.Lock()
	if f := a.flights[*key]; f != nil {
		f.waiters++
		a.flightMu.Unlock()
		<-f.done
		return f.name, f.verified, f.valid
	}
	if a.flights == nil {
		a.flights = make(map[cacheKey]*flight)
	}
	f := &flight{done: make(chan struct{})}
	a.flights[*key] = f
	a.flightMu.Unlock()
	defer func() {
		a.flightMu.Lock()
		delete(a.flights, *key)
		a.flightMu.Unlock()
		close(f.done)
	}()
	f.name, f.verified, f.valid = a.verify(token)
	if f.verified {
		// Cached before the flight ends: a request arriving after it
		// finds the entry.
		a.cache.put(key, f.name, now)
	}
	return f.name, f.verified, f.valid
}

func (a *Auth) refuse(ip netip.Addr, reason string) *middleware.Reply {
	a.rep.Rejected(Name, a.route, reason, ip)
	return &middleware.Reply{Status: 401, Headers: a.challenge, Body: unauthorizedBody}
}
