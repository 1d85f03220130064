package waf

import (
	"time"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/rustygate/rustygate/l7/middleware"
)

// Response inspection (response.enabled): the Coraza transaction of a
// request that passed stays open for its response. Its head goes through
// the CRS's phase 3 rules when it is known; the first response.max_body_bytes
// bytes of a body whose type is in response.mime_types are held (nothing is
// sent yet) and go through phase 4, the data-leakage rules, before the
// head and those bytes are sent. A refused response is replaced by a 403
// the client gets instead, as long as nothing of it was sent.

// txKey is the per-request value under which the open transaction waits
// for the response.
const txKey = "waf.response"

// respState is a request's transaction waiting for its response.
type respState struct {
	tx       types.Transaction
	wantBody bool
}

func (st *respState) close() {
	if st.tx != nil {
		st.tx.Close()
		st.tx = nil
	}
}

// errResponseBlocked is OnResponse's refusal (the reply is ResponseFailure).
var errResponseBlocked = &middleware.ReplyError{Reply: responseReply("waf response")}

func responseReply(reason string) *middleware.Reply {
	return &middleware.Reply{Status: 403, Error: "response blocked by the WAF", LogReason: reason}
}

func state(ex middleware.Exchange) *respState {
	st, _ := ex.Value(txKey).(*respState)
	if st == nil || st.tx == nil {
		return nil
	}
	return st
}

// ResponseNeeds implements middleware.ResponseHandler.
func (h *handler) ResponseNeeds(ex middleware.Exchange) middleware.ResponseNeeds {
	if state(ex) == nil {
		return middleware.NeedNone
	}
	return middleware.NeedResponse
}

// OnResponse runs the response head through the rules and decides
// whether its body is inspected too.
func (h *handler) OnResponse(ex middleware.Exchange) error {
	st := state(ex)
	if st == nil {
		return nil
	}
	if ex.ResponseIsError() {
		// The proxy's own error response: nothing of the backend's leaks.
		st.close()
		return nil
	}
	start := time.Now()
	var vals [][]byte
	for _, name := range ex.ResponseHeaderNames(nil) {
		vals = ex.ResponseHeaderValues(name, vals[:0])
		for _, v := range vals {
			st.tx.AddResponseHeader(name, string(v))
		}
	}
	status := ex.ResponseStatus()
	if it := st.tx.ProcessResponseHeaders(status, ex.Proto()); it != nil {
		return h.responseVerdict(ex, st, it, start)
	}
	if h.respBody > 0 && hasBody(ex, status) && st.tx.IsResponseBodyAccessible() && st.tx.IsResponseBodyProcessable() {
		st.wantBody = true
		return nil
	}
	// The head alone: phase 4's rules still run (on no body).
	it, _ := st.tx.ProcessResponseBody()
	return h.responseVerdict(ex, st, it, start)
}

// hasBody reports whether a response may have a body the proxy relays.
func hasBody(ex middleware.Exchange, status int) bool {
	if string(ex.Method()) == "HEAD" || status == 204 || status == 304 || status < 200 {
		return false
	}
	cl := ex.ResponseHeaderValues("content-length", nil)
	return len(cl) == 0 || string(cl[0]) != "0"
}

// responseVerdict closes the transaction after its last phase ran,
// counting and auditing what matched; it returns errResponseBlocked when
// the response must not reach the client.
func (h *handler) responseVerdict(ex middleware.Exchange, st *respState, it *types.Interruption, start time.Time) error {
	v := verdict{outbound: true}
	h.collect(st.tx, &v)
	st.close()
	if it != nil {
		v.action, v.reason = "block", reasonResponse
		if h.detect {
			v.action = "detect"
		} else {
			v.status = 403
		}
	}
	if v.action == "" {
		v.action = "pass"
	}
	// Counted apart from the requests' verdicts.
	v.action = "response_" + v.action
	h.metrics.done(&v, time.Since(start))
	if len(v.ruleIDs) > 0 {
		h.audit(ex, &v)
	}
	if v.status == 0 {
		return nil
	}
	h.rep.Rejected(policyName, h.route, reasonResponse, ex.PeerIP())
	return errResponseBlocked
}

// ResponseFailure implements middleware.ResponseHandler.
func (h *handler) ResponseFailure() *middleware.Reply { return errResponseBlocked.Reply }

// FilterResponseBody implements middleware.ResponseBodyFilter: a body to
// inspect is held until max_body_bytes of it (or all of it) arrived.
func (h *handler) FilterResponseBody(ex middleware.Exchange, dst middleware.BodyWriter) middleware.BodyFilter {
	st := state(ex)
	if st == nil || !st.wantBody {
		return nil
	}
	return &bodyInspector{h: h, st: st, ex: ex, dst: dst}
}

// bodyInspector holds the first bytes of a response body until the rules
// decided on them, then streams the rest.
type bodyInspector struct {
	h       *handler
	st      *respState
	ex      middleware.Exchange
	dst     middleware.BodyWriter
	held    []byte
	decided bool
}

func (b *bodyInspector) Write(p []byte) (int, error) {
	if b.decided {
		return b.dst.Write(p)
	}
	n := len(p)
	room := b.h.respBody - len(b.held)
	if len(p) < room {
		b.held = append(b.held, p...)
		return n, nil
	}
	b.held = append(b.held, p[:room]...)
	if err := b.decide(); err != nil {
		return 0, err
	}
	if _, err := b.dst.Write(p[room:]); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush passes flushes on once the body was inspected; before, the held
// bytes wait for the verdict.
func (b *bodyInspector) Flush() error {
	if !b.decided {
		return nil
	}
	return b.dst.Flush()
}

func (b *bodyInspector) Close(complete bool) error {
	if b.decided || !complete {
		b.st.close()
		return nil
	}
	return b.decide()
}

// decide runs phase 4 on the held bytes, then sends them or refuses the
// response (nothing of it was sent yet).
func (b *bodyInspector) decide() error {
	b.decided = true
	start := time.Now()
	it, _, err := b.st.tx.WriteResponseBody(b.held)
	if it == nil && err == nil {
		it, err = b.st.tx.ProcessResponseBody()
	}
	if err != nil {
		b.st.close()
		return err
	}
	if err := b.h.responseVerdict(b.ex, b.st, it, start); err != nil {
		return err
	}
	held := b.held
	b.held = nil
	_, err = b.dst.Write(held)
	return err
}
