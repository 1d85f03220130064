package basicauth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// user is one user and its password hash.
type user struct {
	name string
	hash hash
}

// hash is a parsed password hash.
type hash interface {
	verify(password []byte) bool
}

// parseUser parses "name:hash".
func parseUser(s string) (user, error) {
	name, h, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return user{}, errors.New(`want "name:hash"`)
	}
	if !printable(name) {
		return user{}, fmt.Errorf("invalid user name %q", name)
	}
	ph, err := parseHash(h)
	if err != nil {
		return user{}, fmt.Errorf("user %q: %w", name, err)
	}
	return user{name, ph}, nil
}

// supported names the accepted formats in errors.
const supported = "supported: bcrypt $2a$/$2b$/$2y$ (htpasswd -B), argon2id $argon2id$v=19$m=...,t=...,p=...$salt$hash"

// parseHash parses a hash in one of the supported formats.
func parseHash(h string) (hash, error) {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return nil, fmt.Errorf("invalid bcrypt hash: %v", err)
		}
		return bcryptHash(h), nil
	case strings.HasPrefix(h, "$argon2id$"):
		return parseArgon2id(h)
	}
	kind := "plain text or crypt(3) DES"
	for _, k := range []struct{ prefix, kind string }{
		{"$apr1$", "MD5 apr1"}, {"{SHA}", "SHA-1"}, {"$1$", "MD5-crypt"},
		{"$5$", "SHA-256-crypt"}, {"$6$", "SHA-512-crypt"},
		{"$argon2i$", "argon2i"}, {"$argon2d$", "argon2d"}, {"$2", "bcrypt of an unknown version"},
	} {
		if strings.HasPrefix(h, k.prefix) {
			kind = k.kind
			break
		}
	}
	return nil, fmt.Errorf("unknown hash format (%s); %s", kind, supported)
}

// bcryptHash is a bcrypt hash; x/crypto reads the $2a$, $2b$ and $2y$
// variants alike.
type bcryptHash string

func (h bcryptHash) verify(password []byte) bool {
	return bcrypt.CompareHashAndPassword([]byte(h), password) == nil
}

// argon2idHash is an argon2id hash (RFC 9106) in the PHC string format.
type argon2idHash struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// Bounds of argon2id parameters, so that one verification cannot take a
// gigabyte or minutes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
)

// parseArgon2id parses "$argon2id$v=19$m=65536,t=3,p=4$salt$key".
func parseArgon2id(h string) (hash, error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, errors.New("invalid argon2id hash (want $argon2id$v=19$m=...,t=...,p=...$salt$hash)")
	}
	var a argon2idHash
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		switch {
		case err != nil:
			return nil, fmt.Errorf("invalid argon2id parameter %q", kv)
		case k == "m" && n >= 8 && n <= maxArgonMemory:
			a.memory = uint32(n)
		case k == "t" && n >= 1 && n <= maxArgonTime:
			a.time = uint32(n)
		case k == "p" && n >= 1 && n <= 255:
			a.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id parameter %q out of range (m 8..%d KiB, t 1..%d, p 1..255)", kv, maxArgonMemory, maxArgonTime)
		}
	}
	if a.memory == 0 || a.time == 0 || a.threads == 0 {
		return nil, errors.New("argon2id hash lacks one of m, t, p")
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return nil, errors.New("invalid argon2id salt (want at least 8 bytes, unpadded base64)")
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 {
		return nil, errors.New("invalid argon2id hash value (want at least 16 bytes, unpadded base64)")
	}
	return &a, nil
}

func (a *argon2idHash) verify(password []byte) bool {
	k := argon2.IDKey(password, a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(k, a.key) == 1
}
