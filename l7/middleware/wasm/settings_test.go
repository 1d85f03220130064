package wasm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rustygate/rustygate/config"
)

func TestSettingsValidateFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "p.wasm")
	if err := os.WriteFile(good, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(s *Settings, enabled, files bool) []string {
		var got []string
		written := func(f string) bool { return f == "max_concurrency" && s.MaxConcurrency != 0 }
		s.Validate(config.NewSettingsCheck(enabled, files, written, func(field, msg string) { got = append(got, field+": "+msg) }))
		return got
	}
	missing := filepath.Join(dir, "missing.wasm")
	tests := []struct {
		s       *Settings
		enabled bool
		files   bool
		want    []string
	}{
		{&Settings{}, true, true, []string{"path: is required"}},
		{&Settings{Path: "a\x01.wasm"}, true, true, []string{"path: must not contain control characters"}},
		{&Settings{Path: missing}, true, true, []string{"path: " + missing + ": no such file or directory"}},
		{&Settings{Path: missing}, false, true, nil},
		{&Settings{Path: missing}, true, false, nil},
		{&Settings{Path: dir}, true, true, []string{"path: " + dir + ": not a regular file"}},
		{&Settings{Path: good, MaxConcurrency: 2000}, true, true, []string{"max_concurrency: must be between 1 and 1024 (got 2000)"}},
		{&Settings{Path: good}, true, true, nil},
	}
	for i, tt := range tests {
		if got := run(tt.s, tt.enabled, tt.files); !slices.Equal(got, tt.want) {
			t.Errorf("%d: got %q, want %q", i, got, tt.want)
		}
	}
	if identity(&Settings{Path: "x.wasm"}) != "x.wasm" {
		t.Error("identity is not the path")
	}
	if msg := fileProblem(good, func(string) error { return errors.New("corrupt") }); msg != good+": corrupt" {
		t.Errorf("plugin check: %q", msg)
	}
}
