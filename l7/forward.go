package l7

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/rustygate/rustygate/upstream"
)

// maxTried bounds the backends remembered for retries of one request.
const maxTried = 8

// Failure reasons: labels of rustygate_backend_failures_total and the
// conditions of `retries.on`.
const (
	reasonConnect = "connect_failure"
	reasonTimeout = "timeout"
	reasonReset   = "reset"
	reasonInvalid = "invalid_response"
)

var statusReasons = func() (t [600]string) {
	for i := 100; i < 600; i++ {
		t[i] = "status_" + strconv.Itoa(i)
	}
	return
}()

func statusReason(code int) string {
	if code < 100 || code >= 600 {
		return "status"
	}
	return statusReasons[code]
}

// retryPolicy is a route's compiled `retries` and `outlier_detection`.
type retryPolicy struct {
	attempts      int
	onConnect     bool
	onTimeout     bool
	onReset       bool
	statuses      [6]uint128 // retry on these statuses, by hundred
	outlierStatus [6]uint128 // count these statuses as backend failures
	budget        *upstream.RetryBudget
	maxBody       int64
	nonIdempotent bool
	total         time.Duration
	// grpcOn is the set of gRPC statuses (bit per code) retried when a
	// backend answered a call with its status alone.
	grpcOn uint32
}

// uint128 is a 100-bit set of statuses within one hundred.
type uint128 struct{ lo, hi uint64 }

func (u *uint128) set(i int) {
	if i < 64 {
		u.lo |= 1 << i
	} else {
		u.hi |= 1 << (i - 64)
	}
}

func (u uint128) has(i int) bool {
	if i < 64 {
		return u.lo&(1<<i) != 0
	}
	return u.hi&(1<<(i-64)) != 0
}

func statusIn(set *[6]uint128, code int) bool {
	if code < 100 || code >= 600 {
		return false
	}
	return set[code/100].has(code % 100)
}

func (rt *Route) retryStatus(code int) bool { return statusIn(&rt.retry.statuses, code) }

// hashSource is what consistent_hash hashes.
type hashSource struct {
	kind int // 0 ip, 1 header, 2 cookie
	name string
}

// forward picks a backend, sends the request, and retries on another
// backend as the route allows. The client gets the first relayed
// response, or an error once no retry is left.
func (x *exchange) forward() {
	rt := x.route
	if rt.Pool.NeedsHash() {
		x.hash = x.hashKey(rt.hashBy)
	}
	if rt.retry.budget != nil {
		rt.retry.budget.OnRequestAt(x.start)
	}
	if rt.retry.total > 0 {
		x.deadline = x.start.Add(rt.retry.total)
	}
	if x.isGRPC() {
		if !rt.h2 {
			x.drainOrClose()
			x.fail(errGRPCOverH1, "")
			return
		}
		x.applyGRPCTimeout()
	}
	x.replayable = x.prepareReplay(rt)
	for {
		if x.ntried > 0 && x.totalSpent(time.Now()) {
			x.drainOrClose()
			x.errMsg = x.deadlineMsg()
			x.fail(errBackendTimeout, "")
			return
		}
		var b *upstream.Backend
		if x.ntried == 0 {
			b = rt.Pool.Pick(x.hash)
		} else {
			b = rt.Pool.PickExcluding(x.hash, x.tried[:x.ntried])
		}
		if b == nil {
			x.drainOrClose()
			x.fail(errNoBackend, "")
			return
		}
		if err := b.TryAcquire(context.Background()); err != nil {
			x.drainOrClose()
			x.fail(errPoolFull, "")
			return
		}
		x.backend = b
		if x.ntried < maxTried {
			x.tried[x.ntried] = b
			x.ntried++
		}
		if x.span != nil {
			x.attempt = x.span.StartAttempt(b.URL, x.ntried-1, x.req.method)
		}
		perr, reason := x.tryBackend(b, rt)
		if x.attempt != nil {
			st := x.status
			if st == 0 && x.retryApproved {
				st = x.resp.status // answered, but dropped for a retry
			}
			x.attempt.End(st, reason)
			x.attempt = nil
		}
		b.Release()
		relayed := perr == nil
		if relayed && statusIn(&rt.retry.outlierStatus, x.status) {
			reason = statusReason(x.status)
		}
		if reason != "" {
			x.backendFailed(b, reason)
		} else if perr == nil {
			b.ReportSuccess()
		}
		if relayed {
			return
		}
		if reason != "" && (x.retryApproved || x.shouldRetry(rt, reason)) {
			x.retryApproved = false
			x.logRetry(b, reason)
			x.errMsg = ""
			continue
		}
		if reason != "" && x.totalSpent(time.Now()) {
			// A retry was left out for lack of time: the request as a
			// whole timed out.
			perr = errBackendTimeout
			x.errMsg = x.deadlineMsg()
		}
		x.drainOrClose()
		x.fail(perr, "")
		return
	}
}

// totalSpent reports whether timeouts.total has run out.
func (x *exchange) totalSpent(now time.Time) bool {
	return !x.deadline.IsZero() && !now.Before(x.deadline)
}

// headWait is how long an attempt waits for the response head:
// response_header, cut to what remains of timeouts.total.
func (x *exchange) headWait(rt *Route, now time.Time) time.Duration {
	wait := rt.responseHeader
	x.cutByTotal = false
	if !x.deadline.IsZero() {
		if left := x.deadline.Sub(now); left < wait {
			wait = max(left, time.Millisecond)
			x.cutByTotal = true
		}
	}
	return wait
}

// dialContext bounds a dial by what remains of timeouts.total.
func (x *exchange) dialContext() (context.Context, context.CancelFunc) {
	if x.deadline.IsZero() {
		return context.Background(), func() {}
	}
	return context.WithDeadline(context.Background(), x.deadline)
}

// dial opens a new connection to the backend of cp, off the event loop.
func (x *exchange) dial(cp *connPool) (*backendConn, error) {
	x.wt.detach()
	ctx, cancel := x.dialContext()
	defer cancel()
	return cp.dial(ctx)
}

// tryBackend runs one attempt on b, resending once on a fresh connection
// when a pooled one turns out closed.
func (x *exchange) tryBackend(b *upstream.Backend, rt *Route) (*proxyError, string) {
	cp := rt.conns[b]
	if cp.h2.use() {
		perr, reason := x.tryH2(cp, rt)
		if perr != errH2Fallback {
			return perr, reason
		}
	}
	if x.isGRPC() {
		x.errMsg = "gRPC needs HTTP/2, but backend " + b.URL + " chose HTTP/1.1 by ALPN"
		if cp.tls == nil {
			x.errMsg = "gRPC needs HTTP/2: protocol auto speaks HTTP/1.1 to " + b.URL + " (set protocol: h2c)"
		}
		return errGRPCOverH1, ""
	}
	x.attemptAt = time.Now()
	bc := cp.getIdle(x.wt.loop(), x.attemptAt)
	if bc == nil {
		var err error
		if bc, err = x.dial(cp); err != nil {
			return x.dialError(err)
		}
		x.attemptAt = time.Time{} // the dial took its time
	}
	x.useConn(bc)
	perr, stale, reason := x.roundTrip(bc, rt)
	if stale && x.replayable {
		// The pooled connection was dead. The backend may still have read
		// the request before closing, so only a request that may be
		// repeated (RFC 9110 9.2.2) is sent again.
		bc, err := x.dial(cp)
		if err != nil {
			return x.dialError(err)
		}
		perr, _, reason = x.roundTrip(bc, rt)
	}
	return perr, reason
}

// useConn puts a backend connection on the exchange's event loop, if it
// has one; a connection without a descriptor takes the exchange off the
// loop.
func (x *exchange) useConn(bc *backendConn) {
	if x.wt == nil || !x.wt.attached {
		return
	}
	if bc.fd < 0 {
		x.wt.detach()
		return
	}
	bc.wt = x.wt
}

func (x *exchange) dialError(err error) (*proxyError, string) {
	var te *tlsDialError
	if errors.As(err, &te) {
		return x.tlsDialFailed(te.err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		x.errMsg = "backend connect timeout"
		return errConnectTimeout, reasonConnect
	}
	x.errMsg = "backend unreachable"
	return errBackendDown, reasonConnect
}

func (x *exchange) backendFailed(b *upstream.Backend, reason string) {
	x.route.metrics.BackendFailure(b.URL, reason)
	if d := b.ReportFailure(reason, time.Now()); d > 0 {
		x.srv.slog.Warn("backend ejected", "route", x.route.Name, "backend", b.URL, "reason", reason, "for", d.String())
	}
}

// shouldRetry decides whether a failed attempt is sent again, and takes
// the retry from the route's budget when it is.
func (x *exchange) shouldRetry(rt *Route, reason string) bool {
	p := &rt.retry
	if x.ntried > p.attempts || x.ntried >= maxTried {
		return false
	}
	switch reason {
	case reasonConnect, reasonTLS:
		// The request never reached the backend: always safe to resend.
		if !p.onConnect {
			return false
		}
	case reasonTimeout:
		if !p.onTimeout || !x.replayable {
			return false
		}
	case reasonReset:
		if !p.onReset || !x.replayable {
			return false
		}
	default:
		if !x.replayable || !statusIn(&p.statuses, x.resp.status) {
			return false
		}
	}
	if !x.deadline.IsZero() && time.Now().After(x.deadline) {
		return false
	}
	return p.budget.TryRetry()
}

func (x *exchange) logRetry(b *upstream.Backend, reason string) {
	x.route.metrics.Retry(reason)
	x.srv.slog.Warn("retrying request",
		"request_id", string(x.reqID), "route", x.route.Name,
		"attempt", x.ntried+1, "failed_backend", b.URL, "reason", reason)
}

// prepareReplay reports whether the request can be sent more than once:
// its method is idempotent (or the route allows others) and its body is
// absent or held in memory, reading a small one in full first.
func (x *exchange) prepareReplay(rt *Route) bool {
	if !rt.retry.nonIdempotent && !idempotent(x.req.method) {
		return false
	}
	if !x.req.hasBody() || x.bodyBuffered != nil {
		return true
	}
	if rt.retry.attempts == 0 || x.req.chunked || x.req.contentLength > rt.retry.maxBody {
		return false
	}
	if x.req.expectCont {
		x.sink.informational(&continueResponse)
	}
	_, err := x.readWholeBody()
	return err == nil
}

func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// hashKey returns the consistent_hash key of the request; a missing
// header or cookie falls back to the client address.
func (x *exchange) hashKey(h hashSource) uint64 {
	switch h.kind {
	case 1:
		if v := x.Header(h.name); v != nil {
			return upstream.HashBytes(v)
		}
	case 2:
		for i := range x.req.fields {
			f := &x.req.fields[i]
			if len(f.name) == 6 && eqFold(f.name, "cookie") {
				if v, ok := cookieValue(f.value, h.name); ok {
					return upstream.HashBytes(v)
				}
			}
		}
	}
	return upstream.HashString(x.clientIP)
}

// cookieValue finds name=value in a Cookie header.
func cookieValue(header []byte, name string) ([]byte, bool) {
	for len(header) > 0 {
		var part []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, nil
		}
		part = trimOWS(part)
		if len(part) > len(name) && part[len(name)] == '=' && string(part[:len(name)]) == name {
			return part[len(name)+1:], true
		}
	}
	return nil, false
}
