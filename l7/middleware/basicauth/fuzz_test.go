package basicauth

import (
	"bytes"
	"testing"
)

// FuzzParseUser: no line of a users file makes the parser panic, and an
// accepted one names a user.
func FuzzParseUser(f *testing.F) {
	for _, s := range []string{
		"alice:$2y$04$FHPnDiiGNAuIbTmQ.WNscO/kdmRhU66yOoRcPxCyUURQ8VUvmwK16",
		"bob:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"eve:$apr1$x$y", "x:", ":y", "a:$argon2id$v=19$m=,t=1,p=1$$", "a:$2y$99$",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseUser(s)
		if err == nil && (u.name == "" || u.hash == nil) {
			t.Fatalf("parseUser(%q) = %+v without an error", s, u)
		}
	})
}

// FuzzBasicToken: the credentials found are inside the header value and
// bounded.
func FuzzBasicToken(f *testing.F) {
	for _, s := range []string{"Basic YmVuY2g6cHc=", "basic   x  ", "Bearer x", "Basic", "BASIC "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		tok, ok := basicToken(h)
		if ok && (len(tok) == 0 || len(tok) > maxToken || !bytes.Contains(h, tok)) {
			t.Fatalf("basicToken(%q) = %q", h, tok)
		}
	})
}
