package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// defaultYAML is the configuration used when none is given.
//
//go:embed default.yaml
var defaultYAML []byte

// Load reads, parses, defaults and validates the configuration file at
// path. On failure the error is a *Errors listing every problem found,
// except when the file cannot be read at all.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses, defaults and validates a configuration held in memory.
// name is the file name used in error messages and stored in
// Config.Source. The files it names (WASM plugins) must exist. On failure
// the error is a *Errors.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, os.LookupEnv, nil)
}

// LoadChecked is Load, with check run on each plugin file the
// middlewares use, with the guest configuration of its entry (see
// SettingsCheck.CheckPlugin): `rustygate validate` compiles and starts
// them there. A failure is reported like any other problem, at the key
// naming the file.
func LoadChecked(path string, check func(pluginPath string, guestConfig map[string]any) error) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, data, os.LookupEnv, check)
}

// Default returns the built-in default configuration (default.yaml in
// this package): the proxy on :8080, the admin listener on 127.0.0.1:8081 and one
// example route.
func Default() (*Config, error) {
	return Parse("default.yaml", defaultYAML)
}

// Validate checks a configuration whose defaults have been applied and
// returns a *Errors listing every problem, or nil. A configuration
// returned by Load or Parse always validates. A configuration built in
// code should go through ApplyDefaults first: Validate also checks that
// values are in the canonical form ApplyDefaults produces.
func (c *Config) Validate() error {
	return newErrors(validate(c, &vstate{file: c.Source}))
}

// ApplyDefaults fills every unset field of c with its default and puts
// values in canonical form (see the package documentation). It is
// idempotent. Load and Parse have already applied it.
func (c *Config) ApplyDefaults() {
	applyDefaults(c, nil)
}

func parse(name string, data []byte, lookup func(string) (string, bool), check func(string, map[string]any) error) (*Config, error) {
	doc, fe := parseYAML(name, data)
	if fe != nil {
		return nil, &Errors{List: []FieldError{*fe}}
	}
	c := &Config{Source: name}
	w := newWalker(name, len(data), lookup)
	if doc != nil {
		w.decodeRoot(doc, c)
	}
	if !w.aborted {
		mergeRouteEntries(c, w)
	}
	errs := w.errs
	if !w.aborted {
		st := &vstate{file: name, lines: w.lines, bad: w.bad, shapes: routeShapesOf(c), files: true, pluginCheck: check}
		st.defaultedNames = applyDefaults(c, w.set)
		readTokenFile(&c.Admin, st)
		errs = append(errs, validate(c, st)...)
	}
	dropSources(c)
	if err := newErrors(errs); err != nil {
		return nil, err
	}
	return c, nil
}

// parseYAML parses data into a node tree. It returns a nil node for an
// empty document.
func parseYAML(name string, data []byte) (doc *yaml.Node, fe *FieldError) {
	defer func() {
		// The YAML parser is not expected to panic; if it does, the input
		// is reported as invalid rather than taking the process down.
		if r := recover(); r != nil {
			doc, fe = nil, &FieldError{File: name, Msg: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &FieldError{File: name, Line: extra.Line, Msg: "multiple YAML documents are not supported"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(name, err)
	}
	return &n, nil
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// yamlError turns a YAML syntax error into a FieldError, moving the line
// number the parser puts in its message into Line.
func yamlError(name string, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return &FieldError{File: name, Line: line, Msg: "invalid YAML: " + msg}
}
