package config

// middlewareDefaults fills the defaults of the global and per-route
// middleware entries.
func middlewareDefaults(c *Config, unset func(string) bool) {}

// validateMiddlewares checks the global and per-route middleware entries.
func validateMiddlewares(c *Config, st *vstate) {}
