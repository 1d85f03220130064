package limits

import "github.com/rustygate/rustygate/l7/middleware"

// Handler is a built limits middleware.
type Handler struct {
	route     string
	rep       middleware.Reporter
	maxBody   int64
	delServer bool
	server    string // the Server value to send, "" for none
	via       string // the Via value to add, "" for none
}

var _ middleware.Handler = (*Handler)(nil)

// New builds the middleware from validated settings. rep may be nil.
func New(s *Settings, route string, rep middleware.Reporter) *Handler {
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	h := &Handler{route: route, rep: rep, maxBody: int64(s.MaxRequestBody)}
	switch s.ServerHeader {
	case "keep", "":
	case "remove":
		h.delServer = true
	default:
		h.delServer, h.server = true, s.ServerHeader
	}
	if s.Via {
		// The received protocol is that of the backend's response, which
		// the gateway always reads as HTTP/1.1.
		h.via = "1.1 " + s.ViaPseudonym
	}
	return h
}

var tooLarge = &middleware.Reply{
	Status:  413,
	Headers: [][2]string{{"Content-Type", "application/json"}},
	Body:    []byte(`{"error":"request body too large","status":413}` + "\n"),
}

// Handle implements middleware.Handler.
func (h *Handler) Handle(r middleware.Request) *middleware.Reply {
	if h.maxBody > 0 && !r.LimitRequestBody(h.maxBody) {
		h.rep.Rejected("limits", h.route, "body_too_large", r.PeerIP())
		return tooLarge
	}
	if h.delServer {
		r.DelResponseHeader("Server")
	}
	if h.server != "" {
		r.AddResponseHeader("Server", h.server)
	}
	if h.via != "" {
		r.AddResponseHeader("Via", h.via)
	}
	return nil
}
