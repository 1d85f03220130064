package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadyzStates: /readyz is 503 before the gateway serves and from the
// start of a drain, 200 only in between.
func TestReadyzStates(t *testing.T) {
	g := &gateway{}
	for _, tc := range []struct {
		state int32
		code  int
		body  string
	}{
		{stateStarting, http.StatusServiceUnavailable, "starting\n"},
		{stateReady, http.StatusOK, "ready\n"},
		{stateDraining, http.StatusServiceUnavailable, "draining\n"},
	} {
		g.ready.set(tc.state)
		rec := httptest.NewRecorder()
		g.handleReady(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Errorf("state %s: %d %q, want %d %q", stateNames[tc.state], rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}
