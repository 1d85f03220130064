package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP stapling timing.
const (
	// ocspMaxResponse bounds a responder's answer.
	ocspMaxResponse = 1 << 20
	// defaultOCSPMinRefresh is the shortest wait between two fetches
	// after a good response.
	defaultOCSPMinRefresh = time.Minute
	// defaultOCSPRetry is the first wait after a failed fetch; it doubles
	// up to ocspMaxRetry.
	defaultOCSPRetry = time.Minute
	ocspMaxRetry     = time.Hour
	// ocspNoNextUpdate is the refresh period of a response without
	// nextUpdate.
	ocspNoNextUpdate = time.Hour
	// ocspClockSkew tolerates a responder whose clock is a little ahead.
	ocspClockSkew = 5 * time.Minute
)

// errRevoked is returned by fetchOCSP for a revoked certificate.
var errRevoked = errors.New("the responder says the certificate is revoked")

// startStapler starts stapling OCSP responses for the pair of ps, if its
// certificate names a responder and its chain holds the issuer. m.mu is
// held (or m is not shared yet).
func (m *Manager) startStapler(ps *pairState) {
	select {
	case <-m.stop:
		return
	default:
	}
	if ps.stopStaple != nil {
		return // running already (a pair carried over by Update)
	}
	p := ps.pair
	if len(p.Leaf().OCSPServer) == 0 {
		return
	}
	if len(p.Certificate.Certificate) < 2 {
		m.log.Info("ocsp stapling off for this certificate: its file holds no issuer certificate", "cert_file", p.CertFile)
		return
	}
	issuer, err := x509.ParseCertificate(p.Certificate.Certificate[1])
	if err != nil {
		return // parseChain parsed it already
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps.stopStaple = cancel
	timing := ocspTiming{
		minRefresh: orDefault(m.opts.ocspMinRefresh, defaultOCSPMinRefresh),
		firstRetry: orDefault(m.opts.ocspRetry, defaultOCSPRetry),
	}
	m.wg.Add(1)
	go m.staple(ctx, p, issuer, timing)
}

// ocspTiming is a stapler's refresh floor and first retry delay.
type ocspTiming struct{ minRefresh, firstRetry time.Duration }

// stopStapler ends the stapler of ps, if any. m.mu is held.
func (m *Manager) stopStapler(ps *pairState) {
	if ps.stopStaple != nil {
		ps.stopStaple()
		ps.stopStaple = nil
	}
}

// staple keeps a good OCSP response stapled to p: it fetches one, staples
// it, refreshes it halfway to its nextUpdate, retries failures with a
// growing delay, and unstaples a response that expired or a certificate
// found revoked. It never blocks a handshake.
func (m *Manager) staple(ctx context.Context, p *Pair, issuer *x509.Certificate, timing ocspTiming) {
	defer m.wg.Done()
	minRefresh, firstRetry := timing.minRefresh, timing.firstRetry
	retry := firstRetry
	var cur *ocsp.Response
	responder := p.Leaf().OCSPServer[0]
	for {
		resp, der, err := m.fetchOCSP(ctx, responder, p.Leaf(), issuer)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		var wait time.Duration
		switch {
		case err == nil:
			cur, retry = resp, firstRetry
			m.setStaple(p, der)
			wait = refreshDelay(resp, now, minRefresh)
		case errors.Is(err, errRevoked):
			m.log.Error("ocsp: certificate revoked; not stapled", "cert_file", p.CertFile, "responder", responder)
			cur = nil
			m.setStaple(p, nil)
			wait, retry = retry, min(2*retry, ocspMaxRetry)
		default:
			m.log.Warn("ocsp fetch failed; handshakes go on without a fresh staple", "cert_file", p.CertFile,
				"responder", responder, "error", err.Error(), "retry_in", retry.String())
			if cur != nil && !cur.NextUpdate.IsZero() && !now.Before(cur.NextUpdate) {
				m.log.Warn("ocsp staple expired; no longer stapled", "cert_file", p.CertFile)
				cur = nil
				m.setStaple(p, nil)
			}
			wait, retry = retry, min(2*retry, ocspMaxRetry)
		}
		if cur != nil && !cur.NextUpdate.IsZero() {
			wait = min(wait, max(cur.NextUpdate.Sub(now), time.Millisecond))
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// refreshDelay is when to fetch again after a good response: halfway
// between its thisUpdate and nextUpdate, not sooner than minRefresh.
func refreshDelay(r *ocsp.Response, now time.Time, minRefresh time.Duration) time.Duration {
	if r.NextUpdate.IsZero() {
		return ocspNoNextUpdate
	}
	at := r.ThisUpdate.Add(r.NextUpdate.Sub(r.ThisUpdate) / 2)
	return max(at.Sub(now), minRefresh)
}

// fetchOCSP asks the responder about leaf and returns a good, current
// response and its DER form.
func (m *Manager) fetchOCSP(ctx context.Context, responder string, leaf, issuer *x509.Certificate) (*ocsp.Response, []byte, error) {
	reqDER, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, responder, bytes.NewReader(reqDER))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	res, err := m.ocspClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("responder answered %s", res.Status)
	}
	der, err := io.ReadAll(io.LimitReader(res.Body, ocspMaxResponse+1))
	if err != nil {
		return nil, nil, err
	}
	if len(der) > ocspMaxResponse {
		return nil, nil, fmt.Errorf("response larger than %d bytes", ocspMaxResponse)
	}
	r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid response: %w", err)
	}
	return checkOCSP(r, der, time.Now())
}

func checkOCSP(r *ocsp.Response, der []byte, now time.Time) (*ocsp.Response, []byte, error) {
	switch {
	case r.Status == ocsp.Revoked:
		return nil, nil, errRevoked
	case r.Status != ocsp.Good:
		return nil, nil, errors.New("the responder does not know the certificate")
	case r.ThisUpdate.After(now.Add(ocspClockSkew)):
		return nil, nil, fmt.Errorf("response from the future (thisUpdate %s)", r.ThisUpdate.UTC().Format(time.RFC3339))
	case !r.NextUpdate.IsZero() && !now.Before(r.NextUpdate):
		return nil, nil, fmt.Errorf("stale response (nextUpdate %s)", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	return r, der, nil
}

// setStaple staples der (nil: nothing) to p, if p is still served.
func (m *Manager) setStaple(p *Pair, der []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ps := range m.pairs {
		if ps.pair != p {
			continue
		}
		if der == nil {
			ps.served = p.Certificate
		} else {
			c := *p.Certificate
			c.OCSPStaple = der
			ps.served = &c
		}
		m.publish()
		return
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// sleepCtx waits d, or less if ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
