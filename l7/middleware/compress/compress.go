package compress

import (
	"sync"

	"github.com/rustygate/rustygate/l7/middleware"
)

// handler is one route's compressor, shared by its requests.
type handler struct {
	prefs     []*algorithm
	levels    [numAlgorithms]int
	minLength int
	types     []pattern
	// filters holds idle filters (with their buffers) of this route.
	filters sync.Pool
}

var (
	_ middleware.ResponseHandler    = (*handler)(nil)
	_ middleware.ResponseBodyFilter = (*handler)(nil)
)

func newHandler(s *Settings) (*handler, error) {
	h := &handler{minLength: s.MinLength}
	for _, e := range s.Encodings {
		a, ok := algorithmNamed(e)
		if !ok {
			return nil, errUnknownEncoding(e)
		}
		h.prefs = append(h.prefs, a)
	}
	for _, a := range algorithms {
		h.levels[a.id] = s.level(a)
	}
	for _, t := range s.ContentTypes {
		p, err := parsePattern(t)
		if err != nil {
			return nil, err
		}
		h.types = append(h.types, p)
	}
	h.filters.New = func() any { return &filter{h: h} }
	return h, nil
}

type errUnknownEncoding string

func (e errUnknownEncoding) Error() string { return "unknown encoding " + string(e) }

// Handle lets every request through: compress acts on responses only.
func (h *handler) Handle(r middleware.Request) *middleware.Reply { return nil }

// ResponseNeeds asks for the response unless the request rules
// compression out whatever the answer: a HEAD (no body; its head is left
// as it is, as nginx does) or a Range request (a byte range of an
// encoded body is not the range asked for).
func (h *handler) ResponseNeeds(ex middleware.Exchange) middleware.ResponseNeeds {
	if string(ex.Method()) == "HEAD" || ex.Header("range") != nil {
		return middleware.NeedNone
	}
	return middleware.NeedResponse
}

// OnResponse does nothing: the decision is taken with the body, in
// FilterResponseBody.
func (h *handler) OnResponse(ex middleware.Exchange) error { return nil }

// ResponseFailure is never used: OnResponse does not fail.
func (h *handler) ResponseFailure() *middleware.Reply { return nil }

// FilterResponseBody decides whether the response is compressed, marks
// it Vary: Accept-Encoding when it could be, and returns the filter that
// compresses it (nil: sent as it is).
func (h *handler) FilterResponseBody(ex middleware.Exchange, dst middleware.BodyWriter) middleware.BodyFilter {
	f := h.filters.Get().(*filter)
	length, ok := h.eligible(ex, f)
	if ok && length >= 0 && (length == 0 || length < int64(h.minLength)) {
		ok = false // too short to be worth it (or empty), whoever asks
	}
	if ok {
		addVary(ex, f)
	}
	var alg *algorithm
	if ok {
		alg, ok = negotiate(ex.RequestHeaderValues("accept-encoding", f.scratch[:0]), h.prefs)
	}
	if !ok {
		clear(f.scratch[:])
		h.filters.Put(f)
		return nil
	}
	f.begin(ex, dst, alg)
	if length >= 0 || h.minLength == 0 {
		// A body of known length (or any body, without a minimum) is
		// compressed from its first byte; its flushes are not a stream's.
		f.start()
		f.streamed = length < 0
	}
	return f
}

// eligible reports whether the response may be compressed at all (its
// status, type and headers allow it), and its length (-1: unknown).
func (h *handler) eligible(ex middleware.Exchange, f *filter) (length int64, ok bool) {
	if st := ex.ResponseStatus(); st < 200 || st == 204 || st == 206 || st == 304 {
		return 0, false
	}
	if len(ex.ResponseHeaderValues("content-encoding", f.scratch[:0])) > 0 {
		return 0, false // already encoded, even as "identity"
	}
	for _, v := range ex.ResponseHeaderValues("cache-control", f.scratch[:0]) {
		if hasToken(v, "no-transform") {
			return 0, false
		}
	}
	cts := ex.ResponseHeaderValues("content-type", f.scratch[:0])
	if len(cts) == 0 || !h.compressible(cts[0]) {
		return 0, false
	}
	length = -1
	if cl := ex.ResponseHeaderValues("content-length", f.scratch[:0]); len(cl) > 0 {
		length = parseLength(cl[0])
	}
	return length, true
}

// compressible reports whether a Content-Type is in content_types.
func (h *handler) compressible(ct []byte) bool {
	typ, sub, ok := splitMediaType(ct)
	if !ok {
		return false
	}
	for i := range h.types {
		if h.types[i].matches(typ, sub) {
			return true
		}
	}
	return false
}

// addVary adds Accept-Encoding to the response's Vary, unless it is
// there already (or Vary is "*"); empty Vary lines are dropped.
func addVary(ex middleware.Exchange, f *filter) {
	vs := ex.ResponseHeaderValues("vary", f.scratch[:0])
	n := 0
	for _, v := range vs {
		if hasToken(v, "accept-encoding") || hasToken(v, "*") {
			return
		}
		if len(trimOWS(v)) > 0 {
			n++
		}
	}
	switch {
	case len(vs) == 0:
		ex.AddResponseHeader("Vary", "Accept-Encoding")
		return
	case n == 0:
		ex.SetResponseHeader("Vary", "Accept-Encoding")
		return
	}
	merged := make([]byte, 0, 64)
	for _, v := range vs {
		if v = trimOWS(v); len(v) > 0 {
			merged = append(append(merged, v...), ", "...)
		}
	}
	ex.SetResponseHeader("Vary", string(merged)+"Accept-Encoding")
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive; parameters of a list element are ignored).
func hasToken(v []byte, tok string) bool {
	found := false
	forEachCoding(v, func(t []byte, _ int) {
		if equalFold(t, tok) {
			found = true
		}
	})
	return found
}

// parseLength reads a Content-Length value; -1 when it is not a number.
func parseLength(b []byte) int64 {
	b = trimOWS(b)
	if len(b) == 0 || len(b) > 18 {
		return -1
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
