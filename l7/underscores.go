package l7

import (
	"bytes"
	"errors"

	"github.com/rustygate/rustygate/config"
)

// Actions for request headers whose name contains "_" (nginx's
// underscores_in_headers, Envoy's headers_with_underscores_action): CGI,
// WSGI and PHP backends read "X_User" and "X-User" both as HTTP_X_USER,
// so a client could otherwise pass a header that a middleware sets.
const (
	underscoresDrop = iota
	underscoresReject
	underscoresAllow
)

var errUnderscoreHeader = errors.New("header name with underscore")

// requestRules are the server settings applied to every request before
// it is routed.
type requestRules struct {
	path        pathOptions
	underscores int
}

func requestRulesOf(s *config.Server) requestRules {
	r := requestRules{path: pathOptionsOf(s)}
	switch s.HeadersWithUnderscores {
	case config.UnderscoreHeadersReject:
		r.underscores = underscoresReject
	case config.UnderscoreHeadersAllow:
		r.underscores = underscoresAllow
	}
	return r
}

// applyUnderscoreRule drops (removes from the request, so that neither
// middlewares nor the backend see them) or refuses header fields whose
// name contains "_".
func (r *request) applyUnderscoreRule(action int) error {
	if action == underscoresAllow || !anyUnderscoreName(r.fields) {
		return nil
	}
	kept := r.fields[:0]
	for _, f := range r.fields {
		if bytes.IndexByte(f.name, '_') < 0 {
			kept = append(kept, f)
			continue
		}
		if action == underscoresReject {
			return errUnderscoreHeader
		}
	}
	clear(r.fields[len(kept):])
	r.fields = kept
	return nil
}

func anyUnderscoreName(fields []hfield) bool {
	for i := range fields {
		if bytes.IndexByte(fields[i].name, '_') >= 0 {
			return true
		}
	}
	return false
}
