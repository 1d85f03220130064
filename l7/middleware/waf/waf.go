package waf

import (
	"bytes"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/rustygate/rustygate/l7/middleware"
)

// policyName is the module's name, as metrics and offences see it.
const policyName = "waf"

// Reasons of the rejections the Reporter gets (bounded: metric labels).
const (
	reasonBlocked   = "blocked"
	reasonBodyLimit = "body_too_large"
	reasonBadBody   = "bad_body"
	reasonResponse  = "response_blocked"
)

// handler is one route's WAF.
type handler struct {
	route     string
	waf       *compiled // nil: regex rules only
	regex     []regexRule
	regexBody bool // a regex rule reads the body
	detect    bool
	maxBody   int
	rejectBig bool
	respBody  int  // response bytes inspected (0: the head only)
	response  bool // response.enabled: transactions stay open for the response
	log       *slog.Logger
	rep       middleware.Reporter
	metrics   *routeMetrics
}

// verdict is the outcome of one inspection.
type verdict struct {
	status    int // 0: let through
	action    string
	reason    string
	ruleIDs   []string // CRS and SecLang ids, "regex:NAME" for regex rules
	messages  []string
	matched   []string
	score     string
	truncated bool
	outbound  bool // a response's verdict
}

func (h *handler) Handle(r middleware.Request) *middleware.Reply {
	ex, ok := r.(middleware.Exchange)
	if !ok {
		// Every engine gives an Exchange; refuse rather than pass unseen.
		return &middleware.Reply{Status: 500, Error: "request cannot be inspected", LogReason: "waf: no exchange"}
	}
	start := time.Now()
	v, tx := h.inspect(ex)
	if tx != nil {
		if h.response && v.status == 0 {
			ex.SetValue(txKey, &respState{tx: tx})
		} else {
			tx.Close()
		}
	}
	h.metrics.done(&v, time.Since(start))
	if len(v.ruleIDs) > 0 {
		h.audit(ex, &v)
	}
	if v.status == 0 {
		return nil
	}
	h.rep.Rejected(policyName, h.route, v.reason, ex.PeerIP())
	return &middleware.Reply{Status: v.status, Error: errorText(v.status), LogReason: logReason(&v)}
}

// errorText is the client's error message for a refusal.
func errorText(status int) string {
	switch status {
	case 413:
		return "request body larger than the WAF inspects"
	case 400:
		return "request body could not be inspected"
	}
	return "request blocked by the WAF"
}

// logReason is the access line's error: "waf" and the rule ids (a few).
func logReason(v *verdict) string {
	b := []byte("waf")
	if v.reason != reasonBlocked {
		b = append(append(b, ' '), v.reason...)
	}
	for i, id := range v.ruleIDs {
		if i == 8 {
			b = append(b, ",..."...)
			break
		}
		sep := byte(',')
		if i == 0 {
			sep = ' '
		}
		b = append(append(b, sep), id...)
	}
	return string(b)
}

// inspect runs the body limit, the regex rules and the SecLang rules.
// It returns the Coraza transaction when one ran, still open.
func (h *handler) inspect(ex middleware.Exchange) (verdict, types.Transaction) {
	var v verdict
	if h.rejectBig {
		if n, err := strconv.ParseInt(string(ex.Header("content-length")), 10, 64); err == nil && n > int64(h.maxBody) {
			return verdict{status: 413, action: "body_too_large", reason: reasonBodyLimit}, nil
		}
	}
	var body []byte
	if h.waf != nil || h.regexBody {
		p, complete, err := ex.RequestBodyPrefix(h.maxBody + 1)
		if err != nil {
			return verdict{status: 400, action: "bad_body", reason: reasonBadBody}, nil
		}
		if !complete && len(p) > h.maxBody {
			if h.rejectBig {
				return verdict{status: 413, action: "body_too_large", reason: reasonBodyLimit}, nil
			}
			v.truncated = true
		}
		body = p[:min(len(p), h.maxBody+1)]
	}
	if len(h.regex) > 0 {
		h.regexVerdict(ex, body[:min(len(body), h.maxBody)], &v)
		if v.status != 0 {
			return v, nil
		}
	}
	var tx types.Transaction
	if h.waf != nil {
		tx = h.corazaVerdict(ex, body, &v)
	}
	if v.action == "" {
		v.action = "pass"
	}
	return v, tx
}

// regexVerdict applies the regex rules; "regex:NAME" is a rule's id.
func (h *handler) regexVerdict(ex middleware.Exchange, body []byte, v *verdict) {
	var buf [4]regexHit
	hits := matchRegex(h.regex, ex, body, buf[:0])
	if len(hits) == 0 {
		return
	}
	for _, hit := range hits {
		v.messages = append(v.messages, "regex rule "+hit.rule.name)
		v.matched = append(v.matched, truncate(hit.matched))
		v.ruleIDs = append(v.ruleIDs, "regex:"+hit.rule.name)
	}
	v.action = "log"
	if hits[0].rule.block {
		v.action, v.reason = "block", reasonBlocked
		if h.detect {
			v.action = "detect"
			return
		}
		v.status = 403
	}
}

// corazaVerdict runs a Coraza transaction on the request and returns it,
// open: the caller closes it, or keeps it for the response.
func (h *handler) corazaVerdict(ex middleware.Exchange, body []byte, v *verdict) types.Transaction {
	tx := h.waf.waf.NewTransactionWithID(string(ex.RequestID()))
	peer := ex.PeerAddr()
	tx.ProcessConnection(peer.Addr().String(), int(peer.Port()), "", 0)
	tx.ProcessURI(string(ex.URI()), string(ex.Method()), ex.Proto())
	host := ex.Host()
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	tx.SetServerName(string(host))
	addHeaders(tx, ex)
	it := tx.ProcessRequestHeaders()
	if it == nil && tx.IsRequestBodyAccessible() && len(body) > 0 {
		it, _, _ = tx.WriteRequestBody(body)
	}
	if it == nil {
		it, _ = tx.ProcessRequestBody()
	}
	h.collect(tx, v)
	if it == nil {
		return tx
	}
	v.action, v.reason = "block", reasonBlocked
	if it.Status == 400 {
		v.reason = reasonBadBody
	}
	if h.detect {
		v.action = "detect"
		return tx
	}
	v.status = interruptionStatus(it)
	return tx
}

// framingHeaders are headers the proxy hides from middlewares (it
// frames the forwarded body itself) that the CRS checks.
var framingHeaders = []string{"Content-Length", "Transfer-Encoding"}

// addHeaders gives the request's headers to the transaction, the
// framing headers as the client sent them.
func addHeaders(tx types.Transaction, ex middleware.Exchange) {
	var vals [][]byte
	names := ex.RequestHeaderNames(nil)
	for _, name := range names {
		vals = ex.RequestHeaderValues(name, vals[:0])
		for _, val := range vals {
			tx.AddRequestHeader(name, string(val))
		}
	}
	for _, name := range framingHeaders {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) }) {
			if v := ex.Header(name); v != nil {
				tx.AddRequestHeader(name, string(v))
			}
		}
	}
}

// interruptionStatus is the status of a refusal: the rule's, 403 when it
// names none (or a redirect, which a gateway does not follow here).
func interruptionStatus(it *types.Interruption) int {
	if it.Status >= 400 && it.Status < 600 {
		return it.Status
	}
	return 403
}

// collect notes the rules that matched and logged, and the anomaly score.
func (h *handler) collect(tx types.Transaction, v *verdict) {
	for _, m := range tx.MatchedRules() {
		if l, ok := m.(interface{ Log() bool }); m.Message() == "" || ok && !l.Log() {
			// nolog rules: the CRS's own bookkeeping.
			continue
		}
		if v.outbound && m.Rule().Phase() < types.PhaseResponseHeaders {
			// The request's matches, counted when it passed.
			continue
		}
		v.ruleIDs = append(v.ruleIDs, strconv.Itoa(m.Rule().ID()))
		v.messages = append(v.messages, m.Message())
		data := m.Data()
		if data == "" {
			if md := m.MatchedDatas(); len(md) > 0 {
				data = md[0].Variable().Name() + ":" + md[0].Key() + "=" + md[0].Value()
			}
		}
		v.matched = append(v.matched, truncate(data))
	}
	if st, ok := tx.(plugintypes.TransactionState); ok {
		score := "blocking_inbound_anomaly_score"
		if v.outbound {
			score = "blocking_outbound_anomaly_score"
		}
		if s := st.Variables().TX().Get(score); len(s) > 0 {
			v.score = s[0]
		}
	}
}

// maxMatched bounds the matched data an audit line repeats.
const maxMatched = 128

func truncate(s string) string {
	if len(s) <= maxMatched {
		return s
	}
	return strings.ToValidUTF8(s[:maxMatched], "") + "..."
}

// audit writes the audit line of a transaction where rules matched.
func (h *handler) audit(ex middleware.Exchange, v *verdict) {
	if v.action == "pass" || v.action == "response_pass" {
		// Rules below the anomaly threshold: counted, not audited.
		return
	}
	h.log.Warn("waf",
		"request_id", string(ex.RequestID()),
		"route", h.route,
		"client_ip", ex.PeerIP().String(),
		"method", string(ex.Method()),
		"uri", truncate(string(ex.URI())),
		"action", v.action,
		"status", v.status,
		"rule_ids", v.ruleIDs,
		"messages", v.messages,
		"matched_data", v.matched,
		"anomaly_score", v.score,
		"phase", phaseName(v),
		"body_truncated", v.truncated,
	)
}

// phaseName says what an audit line is about.
func phaseName(v *verdict) string {
	if v.outbound {
		return "response"
	}
	return "request"
}
