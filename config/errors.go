package config

import (
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem found in a configuration file.
type FieldError struct {
	// File is the configuration file name ("" for unnamed input).
	File string
	// Line is the 1-based line of the offending key or value, 0 if unknown.
	Line int
	// Path is the key path of the offending field, e.g. "server.listen" or
	// "routes[2].backends[0].url". It is empty for problems that are not
	// tied to a single field: YAML syntax errors, and unknown keys, whose
	// message names the enclosing path itself.
	Path string
	// Msg describes the problem.
	Msg string
}

// Error formats the problem as "FILE:LINE: PATH: MSG". The LINE and PATH
// parts are left out when they are unknown or empty.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.File == "" {
		b.WriteString("<config>")
	} else {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file. Load, Parse
// and Validate return it (as a non-nil *Errors) whenever they fail.
type Errors struct {
	List []FieldError
}

// Error prints one problem per line, in file order.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, fe := range e.List {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so errors.As can reach a
// FieldError.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, fe := range e.List {
		errs[i] = fe
	}
	return errs
}

// newErrors sorts the problems by line (problems without a line last,
// otherwise keeping the order they were found in) and wraps them, or
// returns nil when there are none.
func newErrors(list []FieldError) error {
	if len(list) == 0 {
		return nil
	}
	sort.SliceStable(list, func(i, j int) bool {
		li, lj := list[i].Line, list[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return &Errors{List: list}
}
