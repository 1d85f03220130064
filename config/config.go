package config

// AccessLog reports whether the per-request access log is on (log.access,
// default true).
func (c *Config) AccessLog() bool {
	if c == nil || c.Log.Access == nil {
		return true
	}
	return *c.Log.Access
}

// H2CEnabled reports whether HTTP/2 cleartext with prior knowledge is
// accepted on the proxy port (server.h2c, default true).
func (s *Server) H2CEnabled() bool {
	if s == nil || s.H2C == nil {
		return true
	}
	return *s.H2C
}

// Enabled reports whether the admin listener is on (admin.listen is
// not "off").
func (a *Admin) Enabled() bool {
	return a != nil && a.Listen != AdminOff
}

// MergeSlashesEnabled reports whether repeated slashes are merged
// (default true).
func (p *PathNormalization) MergeSlashesEnabled() bool {
	return p == nil || p.MergeSlashes == nil || *p.MergeSlashes
}
