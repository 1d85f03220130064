package config

// upstreamDefaults fills the defaults of a route's pool settings:
// strategy options, health checks, outlier detection and retries.
func upstreamDefaults(r *Route, path string, unset func(string) bool) {}

// validateUpstream checks a route's pool settings.
func validateUpstream(r *Route, path string, st *vstate) {}
