package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestDebouncerCapsTheWait: events on the file every 50 ms (a file
// rewritten again and again) still fire within watchMaxDelay of the first.
func TestDebouncerCapsTheWait(t *testing.T) {
	var d debouncer
	defer d.stop()
	start := time.Now()
	d.event(start)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.fire:
			if took := time.Since(start); took > watchMaxDelay+150*time.Millisecond {
				t.Fatalf("fired %v after the first event; want within %v", took, watchMaxDelay)
			}
			return
		case now := <-tick.C:
			if now.Sub(start) > 3*time.Second {
				t.Fatal("never fired while events kept coming")
			}
			d.event(now)
		}
	}
}

// TestConfigWatchConcerns: only the config file, the ..data link and the
// first element of the file's symlink count.
func TestConfigWatchConcerns(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "v1", "config.yaml"), nil, 0o644)
	if err := os.Symlink("current/config.yaml", filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("v1", filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cw := &configWatch{w: w, path: filepath.Join(dir, "config.yaml")}
	if err := cw.refresh(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"config.yaml": true, "..data": true, "current": true, "v1/config.yaml": true,
		"gateway.log": false, ".config.yaml.swp": false, "v1/other.yaml": false, "config.yaml.bak": false,
	} {
		ev := fsnotify.Event{Name: filepath.Join(dir, name), Op: fsnotify.Write}
		if got := cw.concerns(ev); got != want {
			t.Errorf("%s: concerns = %v, want %v", name, got, want)
		}
	}
	if cw.concerns(fsnotify.Event{Name: filepath.Join(dir, "config.yaml"), Op: fsnotify.Chmod}) {
		t.Error("a chmod counts")
	}
}
