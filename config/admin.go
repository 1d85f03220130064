package config

import (
	"os"
	"strings"
)

// readTokenFile replaces an empty admin.token by the content of
// admin.token_file, trailing newlines trimmed. It runs at every load, so
// a reload picks up a rotated token. Problems are reported at
// admin.token_file.
func readTokenFile(a *Admin, st *vstate) {
	if a.TokenFile == "" {
		return
	}
	if a.Token != "" {
		st.add("admin.token_file", "set either admin.token or admin.token_file, not both")
		return
	}
	data, err := os.ReadFile(a.TokenFile)
	if err != nil {
		st.add("admin.token_file", "cannot read the admin token: %v", err)
		return
	}
	tok := strings.TrimRight(string(data), "\r\n")
	switch {
	case tok == "":
		st.add("admin.token_file", "%s is empty", a.TokenFile)
	case strings.ContainsFunc(tok, isSpaceOrControl):
		st.add("admin.token_file", "the token in %s must not contain spaces or control characters", a.TokenFile)
	default:
		a.Token = tok
	}
}

// validateAdmin checks the token and the endpoints that need it.
func validateAdmin(a *Admin, st *vstate) {
	if strings.ContainsFunc(a.Token, isSpaceOrControl) {
		st.add("admin.token", "must not contain spaces or control characters")
	}
	if a.Token != "" || st.reported("admin.token_file") {
		return
	}
	if a.PProf {
		st.add("admin.pprof", "needs admin.token or admin.token_file: the profiler is served only behind the token")
	}
	if a.MetricsAuth {
		st.add("admin.metrics_auth", "needs admin.token or admin.token_file")
	}
}
