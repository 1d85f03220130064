package jwt

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/rustygate/rustygate/config"
)

// cacheVerifier is a verifier of HS256 tokens with the token cache and a
// settable clock.
func cacheVerifier(t *testing.T, size int, ttl, leeway time.Duration) (*Verifier, *clock) {
	t.Helper()
	cfg := baseCfg()
	cfg.Secret = testSecret
	cfg.CacheSize, cfg.CacheTTL, cfg.Leeway = size, config.Duration(ttl), config.Duration(leeway)
	clk := &clock{t: now}
	v, err := NewVerifier(cfg, "api", nil, Options{Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, clk
}

// handle runs one request and returns its claims map's identity (0 when
// refused) and the refusal reason.
func handle(t *testing.T, v *Verifier, token string) (uintptr, string) {
	t.Helper()
	r := newRequest("Bearer " + token)
	if reply := v.Handle(r); reply != nil {
		return 0, reasonOf(reply.Body)
	}
	if r.set["X-User-Id"] != "user-42" {
		t.Errorf("X-User-Id = %q, want the sub claim", r.set["X-User-Id"])
	}
	return reflect.ValueOf(r.values[ClaimsKey]).Pointer(), ""
}

func hsToken(t *testing.T, claims gojwt.MapClaims) string {
	return sign(t, gojwt.SigningMethodHS256, []byte(testSecret), claims, nil)
}

// A repeated token is verified once: later requests get the claims of
// the first verification.
func TestTokenCacheHit(t *testing.T) {
	v, _ := cacheVerifier(t, 10, time.Minute, 0)
	tok := hsToken(t, validClaims())
	first, reason := handle(t, v, tok)
	if reason != "" {
		t.Fatalf("refused: %s", reason)
	}
	for range 3 {
		if again, _ := handle(t, v, tok); again != first {
			t.Fatal("a repeated token was verified again")
		}
	}
	if n := v.cache.len(); n != 1 {
		t.Errorf("%d cached tokens, want 1", n)
	}
}

// A cached token is refused once its exp has passed, even within the
// cache TTL; with a leeway it is verified again and accepted until
// exp + leeway.
func TestTokenCacheHonoursExp(t *testing.T) {
	for _, leeway := range []time.Duration{0, 30 * time.Second} {
		t.Run(fmt.Sprint("leeway=", leeway), func(t *testing.T) {
			v, clk := cacheVerifier(t, 10, time.Hour, leeway)
			tok := hsToken(t, with(validClaims(), "exp", now.Add(10*time.Second).Unix()))
			first, reason := handle(t, v, tok)
			if reason != "" {
				t.Fatalf("refused: %s", reason)
			}
			if again, _ := handle(t, v, tok); again != first {
				t.Fatal("not cached")
			}
			clk.Advance(10 * time.Second)
			if leeway > 0 {
				if p, reason := handle(t, v, tok); p == 0 || p == first {
					t.Fatalf("within the leeway: got %q, want a fresh verification that accepts", reason)
				}
				clk.Advance(leeway)
			}
			if _, reason := handle(t, v, tok); reason != reasonExpired {
				t.Fatalf("after exp: got %q, want %s", reason, reasonExpired)
			}
		})
	}
}

// cache_ttl bounds an entry whose token expires later.
func TestTokenCacheTTL(t *testing.T) {
	v, clk := cacheVerifier(t, 10, time.Minute, 0)
	tok := hsToken(t, validClaims()) // exp in 1h
	first, _ := handle(t, v, tok)
	clk.Advance(59 * time.Second)
	if p, _ := handle(t, v, tok); p != first {
		t.Fatal("not cached within the TTL")
	}
	clk.Advance(time.Second)
	if p, reason := handle(t, v, tok); p == 0 || p == first {
		t.Fatalf("after the TTL: got %q, want a fresh verification that accepts", reason)
	}
}

// Refusals are not cached: a token not valid yet is accepted once its
// nbf has come.
func TestTokenCacheKeepsNoRefusal(t *testing.T) {
	v, clk := cacheVerifier(t, 10, time.Hour, 0)
	tok := hsToken(t, with(validClaims(), "nbf", now.Add(time.Minute).Unix()))
	if _, reason := handle(t, v, tok); reason != reasonNotYetValid {
		t.Fatalf("got %q, want %s", reason, reasonNotYetValid)
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("%d cached tokens after a refusal", n)
	}
	clk.Advance(time.Minute)
	if _, reason := handle(t, v, tok); reason != "" {
		t.Fatalf("after nbf: refused (%s)", reason)
	}
	// A bad signature over a cached token's content is not that token.
	bad := tok[:strings.LastIndexByte(tok, '.')+1] + strings.Repeat("A", 43)
	if _, reason := handle(t, v, bad); reason != reasonBadSignature {
		t.Fatalf("forged signature: got %q, want %s", reason, reasonBadSignature)
	}
}

// The cache holds at most cache_size tokens, the least recently used
// evicted first.
func TestTokenCacheBounded(t *testing.T) {
	const size = 3
	v, _ := cacheVerifier(t, size, time.Hour, 0)
	toks := make([]string, 10)
	ptrs := make([]uintptr, len(toks))
	for i := range toks {
		toks[i] = hsToken(t, with(validClaims(), "jti", fmt.Sprint(i)))
		ptrs[i], _ = handle(t, v, toks[i])
		if n := v.cache.len(); n > size {
			t.Fatalf("%d cached tokens, want at most %d", n, size)
		}
	}
	if n := len(v.cache.nodes); n != size {
		t.Fatalf("%d cache nodes, want %d", n, size)
	}
	// Use token 7, so that 8 is the least recently used, then insert one.
	if p, _ := handle(t, v, toks[7]); p != ptrs[7] {
		t.Fatal("a recent token was evicted")
	}
	handle(t, v, hsToken(t, with(validClaims(), "jti", "new")))
	if p, _ := handle(t, v, toks[7]); p != ptrs[7] {
		t.Error("the most recently used token was evicted")
	}
	if p, _ := handle(t, v, toks[8]); p == ptrs[8] {
		t.Error("the least recently used token was kept")
	}
	if p, _ := handle(t, v, toks[0]); p == ptrs[0] {
		t.Error("the oldest token was kept")
	}
}

// cache_size 0 turns the cache off.
func TestTokenCacheOff(t *testing.T) {
	v, _ := cacheVerifier(t, 0, time.Hour, 0)
	tok := hsToken(t, validClaims())
	first, _ := handle(t, v, tok)
	if p, _ := handle(t, v, tok); p == first || p == 0 {
		t.Error("cached with cache_size 0")
	}
}

func TestCacheSettings(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{Secret: testSecret, Algorithms: []string{"HS256"}, CacheSize: -1}, "cache_size"},
		{Settings{Secret: testSecret, Algorithms: []string{"HS256"}, CacheSize: maxCacheSize + 1}, "cache_size"},
		{Settings{Secret: testSecret, Algorithms: []string{"HS256"}, CacheTTL: -1}, "cache_ttl"},
	} {
		var got []string
		tc.s.Validate(config.NewSettingsCheck(true, false, nil, func(field, msg string) { got = append(got, field+": "+msg) }))
		if len(got) != 1 || !strings.HasPrefix(got[0], tc.want+":") {
			t.Errorf("%+v: %q, want one error on %s", tc.s, got, tc.want)
		}
	}
}
