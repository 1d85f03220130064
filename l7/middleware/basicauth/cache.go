package basicauth

import (
	"sync"
	"time"
)

// cacheKey is a keyed SHA-256 of the credentials as sent.
type cacheKey [32]byte

// cache keeps successful verifications: a bounded LRU whose entries
// expire. Its nodes live in one slice, linked by index, so a hit or an
// insert into a full cache allocates nothing.
type cache struct {
	mu    sync.Mutex
	ttl   time.Duration
	size  int
	index map[cacheKey]int32
	nodes []cacheNode
	// head is the most recently used node, tail the least (-1: none).
	head, tail int32
}

type cacheNode struct {
	key        cacheKey
	user       string
	expires    int64 // unix nanoseconds
	prev, next int32
}

func newCache(size int, ttl time.Duration) *cache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	return &cache{ttl: ttl, size: size, index: make(map[cacheKey]int32, size), head: -1, tail: -1}
}

// get returns the user of k when it was verified within the TTL.
func (c *cache) get(k *cacheKey, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.index[*k]
	if !ok {
		return "", false
	}
	n := &c.nodes[i]
	if now.UnixNano() >= n.expires {
		return "", false
	}
	c.unlink(i)
	c.pushFront(i)
	return n.user, true
}

// put records a successful verification of k for user.
func (c *cache) put(k *cacheKey, user string, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	expires := now.Add(c.ttl).UnixNano()
	if i, ok := c.index[*k]; ok {
		c.nodes[i].user, c.nodes[i].expires = user, expires
		c.unlink(i)
		c.pushFront(i)
		return
	}
	var i int32
	if len(c.nodes) < c.size {
		c.nodes = append(c.nodes, cacheNode{})
		i = int32(len(c.nodes) - 1)
	} else {
		i = c.tail
		c.unlink(i)
		delete(c.index, c.nodes[i].key)
	}
	c.nodes[i] = cacheNode{key: *k, user: user, expires: expires}
	c.index[*k] = i
	c.pushFront(i)
}

func (c *cache) unlink(i int32) {
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

func (c *cache) pushFront(i int32) {
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
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}
