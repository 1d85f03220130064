package l7

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
)

// stampPolicy is a middleware of the response phase written in Go: it
// stamps the response status into a header, or fails closed when the
// request carries X-Fail.
type stampPolicy struct{}

func (stampPolicy) Handle(r middleware.Request) *middleware.Reply { return nil }

func (stampPolicy) ResponseNeeds(ex middleware.Exchange) middleware.ResponseNeeds {
	return middleware.NeedResponse
}

func (stampPolicy) OnResponse(ex middleware.Exchange) error {
	if ex.Header("x-fail") != nil {
		return errors.New("refused")
	}
	ex.SetResponseHeader("X-Stamp", strconv.Itoa(ex.ResponseStatus()))
	return nil
}

func (stampPolicy) ResponseFailure() *middleware.Reply {
	return &middleware.Reply{Status: 502, Headers: [][2]string{{"Content-Type", "application/json"}}, Body: []byte(`{"error":"stamp"}`)}
}

// TestResponsePhaseContract: any middleware that declares the response
// phase gets it, on both engines, and its failure reply replaces the
// response.
func TestResponsePhaseContract(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, "made")
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			in := middleware.Instance{Handler: stampPolicy{}, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest | middleware.PhaseResponse}}
			if err := checkInstance(in); err != nil {
				t.Fatal(err)
			}
			for _, rt := range gw.srv.Snapshot().Routes {
				rt.chain = []middleware.Instance{in}
			}
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 201 || !strings.Contains(out, "X-Stamp: 201\r\n") || !strings.HasSuffix(out, "made") {
				t.Fatalf("stamped response:\n%s", out)
			}
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nX-Fail: 1\r\nConnection: close\r\n\r\n")
			if statusOf(out) != 502 || strings.Contains(out, "made") || !strings.HasSuffix(out, `{"error":"stamp"}`) {
				t.Fatalf("failed response phase:\n%s", out)
			}
		})
	}
}

// TestCheckInstance: a chain whose instance declares what it cannot do
// fails to build instead of skipping it on the request path.
func TestCheckInstance(t *testing.T) {
	resp := middleware.Capabilities{Phases: middleware.PhaseRequest | middleware.PhaseResponse}
	if err := checkInstance(middleware.Instance{Handler: tagPolicy{}, Caps: resp}); err == nil || !strings.Contains(err.Error(), "response phase") {
		t.Fatalf("request-only handler declaring the response phase: %v", err)
	}
	if err := checkInstance(middleware.Instance{Caps: resp}); err == nil {
		t.Fatal("instance without a handler was accepted")
	}
	chain := []middleware.Instance{{Handler: tagPolicy{}}, {Handler: stampPolicy{}, Caps: resp}}
	if chainMayBlock(chain) {
		t.Fatal("a chain that declares nothing blocking is blocking")
	}
	chain = append(chain, middleware.Instance{Handler: tagPolicy{}, Caps: middleware.Capabilities{Phases: middleware.PhaseRequest, MayBlock: true}})
	if !chainMayBlock(chain) {
		t.Fatal("a chain with a declared blocking middleware runs on the event loop")
	}
}

// needsPolicy is a response handler that asks for fixed needs.
type needsPolicy struct{ needs middleware.ResponseNeeds }

func (p needsPolicy) ResponseNeeds(middleware.Exchange) middleware.ResponseNeeds { return p.needs }
func (needsPolicy) OnResponse(middleware.Exchange) error                         { return nil }
func (needsPolicy) ResponseFailure() *middleware.Reply                           { return nil }

// TestNoteResponsePhaseNeeds: NeedBody asks for the buffered body whether
// or not NeedResponse is set beside it; NeedNone leaves the handler out.
func TestNoteResponsePhaseNeeds(t *testing.T) {
	for _, tc := range []struct {
		needs            middleware.ResponseNeeds
		pending, bodyToo bool
	}{
		{middleware.NeedNone, false, false},
		{middleware.NeedResponse, true, false},
		{middleware.NeedBody, true, true},
		{middleware.NeedResponse | middleware.NeedBody, true, true},
	} {
		var x exchange
		x.noteResponsePhase(needsPolicy{tc.needs}, false)
		if got := len(x.phase.pending) == 1; got != tc.pending || x.phase.needBody != tc.bodyToo {
			t.Errorf("needs %d: pending %v, needBody %v; want %v, %v", tc.needs, got, x.phase.needBody, tc.pending, tc.bodyToo)
		}
	}
}
