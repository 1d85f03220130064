package config

// datapathDefaults fills the datapath section's defaults.
func datapathDefaults(c *Config, unset func(string) bool) {}

// validateDatapath checks the datapath section.
func validateDatapath(c *Config, st *vstate) {}
