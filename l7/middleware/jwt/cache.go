package jwt

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cacheKey is a keyed SHA-256 of a token as sent.
type cacheKey [32]byte

// claimValue is a claim formatted for its claims_to_headers header; ok is
// false when the token lacks it (the header is then removed).
type claimValue struct {
	text string
	ok   bool
}

// verified is what a cached token gives a request: its claims (read,
// never written, by the requests that share them) and the values of the
// claims_to_headers headers.
type verified struct {
	claims  map[string]any
	headers []claimValue
}

// tokenCache keeps tokens that verified: a bounded LRU whose entries
// expire at the token's exp or after the configured TTL, whichever comes
// first, and that a change of the JWKS key set invalidates. Its nodes live
// in one slice, linked by index, so a hit allocates nothing. Only
// successes are kept: a refused token is verified again on every request,
// so a refusal that could turn into an acceptance (nbf, a key fetched
// later) never sticks.
type tokenCache struct {
	mu    sync.Mutex
	ttl   time.Duration
	size  int
	seed  [32]byte
	index map[cacheKey]int32
	nodes []tokenNode
	// head is the most recently used node, tail the least (-1: none).
	head, tail int32
}

type tokenNode struct {
	key        cacheKey
	val        *verified
	expires    int64  // unix nanoseconds
	gen        uint64 // key set generation the token verified with
	prev, next int32
}

// newTokenCache returns a cache of size entries, or nil (no caching) when
// size or ttl is 0.
func newTokenCache(size int, ttl time.Duration, seed [32]byte) *tokenCache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	return &tokenCache{ttl: ttl, size: size, seed: seed, index: make(map[cacheKey]int32, min(size, 4096)), head: -1, tail: -1}
}

// maxCachedToken bounds the tokens cached: a longer one is verified on
// every request (its key would take too much stack to compute).
const maxCachedToken = 4096

// keyBufs are the buffers keys are computed in. On the stack, the 4 KiB
// array would be cleared on every request, and would grow the small stack
// of a connection's coroutine.
var keyBufs = sync.Pool{New: func() any { return new([32 + maxCachedToken]byte) }}

// key computes the cache key of a token of at most maxCachedToken bytes.
func (c *tokenCache) key(token []byte, k *cacheKey) {
	buf := keyBufs.Get().(*[32 + maxCachedToken]byte)
	n := copy(buf[:], c.seed[:])
	n += copy(buf[n:], token)
	*k = sha256.Sum256(buf[:n])
	keyBufs.Put(buf)
}

// get returns the verification of k when it is still valid at now for the
// key set generation gen.
func (c *tokenCache) get(k *cacheKey, now time.Time, gen uint64) (*verified, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[*k]
	if !ok {
		return nil, false
	}
	n := &c.nodes[i]
	if now.UnixNano() >= n.expires || n.gen != gen {
		return nil, false
	}
	c.unlink(i)
	c.pushFront(i)
	return n.val, true
}

// put records that k verified at now with the key set generation gen;
// the entry expires at exp (zero: none) or after the TTL.
func (c *tokenCache) put(k *cacheKey, val *verified, now, exp time.Time, gen uint64) {
	if c == nil {
		return
	}
	expires := now.Add(c.ttl)
	if !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	if !expires.After(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[*k]
	switch {
	case ok:
		c.unlink(i)
	case len(c.nodes) < c.size:
		c.nodes = append(c.nodes, tokenNode{})
		i = int32(len(c.nodes) - 1)
	default:
		i = c.tail
		c.unlink(i)
		delete(c.index, c.nodes[i].key)
	}
	c.nodes[i] = tokenNode{key: *k, val: val, expires: expires.UnixNano(), gen: gen}
	c.index[*k] = i
	c.pushFront(i)
}

func (c *tokenCache) unlink(i int32) {
	n := &c.nodes[i]
	if n.prev >= 0 {
		c.nodes[n.prev].next = n.next
	} else {
		c.head = n.next
	}
	if n.next >= 0 {
		c.nodes[n.next].prev = n.prev
	} else {
		c.tail = n.prev
	}
}

func (c *tokenCache) pushFront(i int32) {
	n := &c.nodes[i]
	n.prev, n.next = -1, c.head
	if c.head >= 0 {
		c.nodes[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}
