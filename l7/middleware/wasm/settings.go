package wasm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/rustygate/rustygate/config"
)

// Order is the place of wasm in a route's chain: last, after the
// built-in policies.
const Order = 90

// Limits of the settings.
const (
	maxConcurrency = 1024
	maxQueue       = 1000000
)

// Settings are the keys of a `name: wasm` entry. Entries of this kind
// may repeat in a list, told apart by their path.
type Settings struct {
	// Path is the guest's .wasm file, relative to the working directory.
	Path string `yaml:"path"`
	// Config is handed to the guest as JSON.
	Config map[string]any `yaml:"config"`
	// FailOpen forwards the request when the guest fails.
	FailOpen bool `yaml:"fail_open"`
	// MaxConcurrency bounds the guest calls of the entry running at once
	// on the plugin host's workers (0: the number of CPUs the process may
	// use, at most 16).
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxQueue bounds the calls waiting for a free slot, each for at most
	// the call deadline (0: 1024); the others are refused at once.
	MaxQueue int `yaml:"max_queue"`
}

func defaults() any { return &Settings{} }

// identity tells apart the wasm entries of a list: by path.
func identity(s any) string { return s.(*Settings).Path }

// Validate implements config.SettingsValidator. The file of an enabled
// entry must be a regular file, and pass the plugin check of
// `rustygate validate` (see config.LoadChecked), which starts the guest
// with the entry's config as run does; it is checked once per path and
// config, at the first entry naming them.
func (s *Settings) Validate(c *config.SettingsCheck) {
	pathOK := false
	switch {
	case s.Path == "":
		c.Errorf("path", "is required")
	case strings.ContainsFunc(s.Path, config.IsControl):
		c.Errorf("path", "must not contain control characters")
	default:
		pathOK = true
	}
	if c.Written("max_concurrency") && (s.MaxConcurrency < 1 || s.MaxConcurrency > maxConcurrency) {
		c.Errorf("max_concurrency", "must be between 1 and %d (got %d)", maxConcurrency, s.MaxConcurrency)
	}
	if c.Written("max_queue") && (s.MaxQueue < 1 || s.MaxQueue > maxQueue) {
		c.Errorf("max_queue", "must be between 1 and %d (got %d)", maxQueue, s.MaxQueue)
	}
	if pathOK && c.Files() && c.Enabled() && c.FirstUse("wasm file "+s.Path+"\x00"+fmt.Sprint(s.Config)) {
		check := func(path string) error { return c.CheckPlugin(path, s.Config) }
		if msg := fileProblem(s.Path, check); msg != "" {
			c.Errorf("path", "%s", msg)
		}
	}
}

// fileProblem describes what is wrong with a plugin file, or "".
func fileProblem(path string, check func(string) error) string {
	fi, err := os.Stat(path)
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("%s: %v", path, pe.Err)
	case err != nil:
		return fmt.Sprintf("%s: %v", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s: not a regular file", path)
	}
	if err := check(path); err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	return ""
}
