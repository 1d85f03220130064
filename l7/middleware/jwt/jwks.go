package jwt

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// jwksCache holds the key set of a JWKS URL. Keys live in a jwkset
// memory storage and are looked up by kid through keyfunc; fetching is
// done here rather than by jwkset's HTTP storage so that:
//
//   - a token with an unknown kid triggers at most one fetch per
//     minRefetch, and a request never waits for that limit (keyfunc's
//     limiter makes callers wait for its next token), only for a fetch
//     in progress;
//   - concurrent needs share one fetch;
//   - Close stops the background refresher and waits for it.
//
// A failed fetch (network error, status other than 200, a document that
// is not a key set, or one whose keys are all unusable) leaves the last
// good key set in place. A valid empty set replaces it: that is how an
// issuer revokes every key.
type jwksCache struct {
	url        string
	logURL     string
	route      string
	client     *http.Client
	ownClient  bool
	log        *slog.Logger
	now        func() time.Time
	refresh    time.Duration
	minRefetch time.Duration
	timeout    time.Duration

	store *jwkset.MemoryJWKSet
	kf    keyfunc.Keyfunc
	// gen counts the replacements of the key set.
	gen atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	lastRefetch time.Time     // last fetch caused by an unknown kid
	inflight    chan struct{} // closed when the fetch in progress ends
	lastErr     error         // of the fetch that ended last
}

func newJWKSCache(rawURL, route string, refresh, minRefetch time.Duration, opts Options) (*jwksCache, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("jwt: invalid jwks_url %q", rawURL)
	}
	if refresh <= 0 || minRefetch <= 0 {
		return nil, fmt.Errorf("jwt: jwks_refresh and jwks_min_refetch must be greater than 0")
	}
	c := &jwksCache{
		url:        rawURL,
		logURL:     u.Scheme + "://" + u.Host + u.EscapedPath(),
		route:      route,
		client:     opts.HTTPClient,
		log:        opts.Logger,
		now:        opts.Now,
		refresh:    refresh,
		minRefetch: minRefetch,
		timeout:    opts.FetchTimeout,
		store:      jwkset.NewMemoryStorage(),
	}
	if c.client == nil {
		c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownClient = true
	}
	c.kf, err = keyfunc.New(keyfunc.Options{Storage: c.store})
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	firstErr := c.fetchShared()
	c.wg.Add(1)
	go c.refresher(firstErr != nil)
	return c, nil
}

// close stops the refresher and waits for it.
func (c *jwksCache) close() {
	c.cancel()
	c.wg.Wait()
	if c.ownClient {
		c.client.CloseIdleConnections()
	}
}

// refresher fetches the key set every refresh interval; after a failure
// it retries sooner, from 1s doubling up to the interval (at most 5m).
func (c *jwksCache) refresher(failing bool) {
	defer c.wg.Done()
	const minRetry, maxRetry = time.Second, 5 * time.Minute
	retry := min(minRetry, c.refresh)
	for {
		delay := c.refresh
		if failing {
			delay = retry
			retry = min(2*retry, c.refresh, maxRetry)
		} else {
			retry = min(minRetry, c.refresh)
		}
		t := time.NewTimer(delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		failing = c.fetchShared() != nil
	}
}

// fetchShared fetches the key set, or waits for the fetch in progress,
// and returns its error.
func (c *jwksCache) fetchShared() error {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		return c.wait(ch)
	}
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()
	return c.runFetch(ch)
}

func (c *jwksCache) wait(ch chan struct{}) error {
	select {
	case <-ch:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *jwksCache) runFetch(ch chan struct{}) error {
	err := c.fetch()
	if err != nil && c.ctx.Err() == nil {
		c.log.Warn("jwt: JWKS fetch failed; keeping the last good key set", "route", c.route, "url", c.logURL, "error", err)
	}
	c.mu.Lock()
	c.inflight, c.lastErr = nil, err
	c.mu.Unlock()
	close(ch)
	return err
}

// refetchForUnknownKID fetches the key set for a kid that is not in it,
// unless a fetch for an unknown kid ran less than minRefetch ago. When a
// fetch is already in progress it waits for that one instead.
func (c *jwksCache) refetchForUnknownKID() {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		c.wait(ch)
		return
	}
	now := c.now()
	if !c.lastRefetch.IsZero() && now.Sub(c.lastRefetch) < c.minRefetch {
		c.mu.Unlock()
		return
	}
	c.lastRefetch = now
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()
	c.runFetch(ch)
}

// fetch downloads and parses the key set and, when it is good, replaces
// the stored one.
func (c *jwksCache) fetch() error {
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return err
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("invalid key set: %w", err)
	}
	if doc.Keys == nil {
		return errors.New(`invalid key set: no "keys" member`)
	}
	set := make([]jwkset.JWK, 0, len(*doc.Keys))
	var skipped []error
	for i, raw := range *doc.Keys {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(raw, &m); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		if m.USE == jwkset.UseEnc || m.KTY == jwkset.KtyOct {
			// Encryption keys and shared secrets never verify tokens.
			continue
		}
		// Public key material only: private parts, if published by
		// mistake, are ignored.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err == nil {
			err = checkKey(publicOf(jwk.Key()))
		}
		if err != nil {
			if !errors.Is(err, jwkset.ErrUnsupportedKey) {
				skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, m.KID, err))
			}
			continue
		}
		set = append(set, jwk)
	}
	if len(skipped) > 0 {
		if len(set) == 0 {
			return fmt.Errorf("no usable key: %w", errors.Join(skipped...))
		}
		c.log.Warn("jwt: JWKS keys skipped", "route", c.route, "url", c.logURL, "error", errors.Join(skipped...))
	}
	if err := c.store.KeyReplaceAll(ctx, set); err != nil {
		return err
	}
	c.gen.Add(1)
	return nil
}

// publicOf returns the public half of a key.
func publicOf(key any) any {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return pk.Public()
	}
	return key
}

// key returns the key for a token that names kid, fetching the set again
// (within the limits above) when kid is not in it.
func (c *jwksCache) key(t *gojwt.Token, kid string) (any, error) {
	if _, err := c.store.KeyRead(c.ctx, kid); errors.Is(err, jwkset.ErrKeyNotFound) {
		// Look again even when no fetch ran: one may have ended since.
		c.refetchForUnknownKID()
		if _, err := c.store.KeyRead(c.ctx, kid); err != nil {
			return nil, errUnknownKey
		}
	}
	key, err := c.kf.Keyfunc(t)
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, errUnknownKey
	case err != nil:
		// The key's own alg differs from the token's.
		return nil, errBadAlgorithm
	}
	return key, nil
}

// keys returns every stored key that fits alg, for a token without kid.
func (c *jwksCache) keys(alg string) []any {
	all, err := c.store.KeyReadAll(c.ctx)
	if err != nil {
		return nil
	}
	var out []any
	for _, j := range all {
		if a := j.Marshal().ALG; a != "" && string(a) != alg {
			continue
		}
		if k := publicOf(j.Key()); keyFits(alg, k) {
			out = append(out, k)
		}
	}
	return out
}
