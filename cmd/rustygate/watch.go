package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// watchDebounce groups the burst of events one save makes (editors
	// write a temporary file and rename it; Kubernetes swaps a ..data
	// symlink): the reload waits until the config file is quiet that long.
	watchDebounce = 200 * time.Millisecond
	// watchMaxDelay caps that wait from the first event of a burst, so a
	// file written again and again still reloads: with the reload itself,
	// a save is in effect within a second.
	watchMaxDelay = 500 * time.Millisecond
	// k8sDataLink is the symlink a Kubernetes ConfigMap or Secret volume
	// swaps to publish a new version of all its files at once.
	k8sDataLink = "..data"
)

// configWatch knows which directory entries concern the config file: its
// own name, the ..data link of a ConfigMap volume, the first element of
// its symlink's target, and the file the symlink resolves to, in that
// file's directory. Other files in those directories (logs, editors' swap
// files, certificates) are none of its business.
type configWatch struct {
	w    *fsnotify.Watcher
	path string
	// names are the entries that matter, by watched directory.
	names map[string]map[string]bool
}

// refresh recomputes the entries that matter (a swap may have changed
// where the symlink leads) and watches their directories.
func (cw *configWatch) refresh() error {
	names := map[string]map[string]bool{}
	add := func(dir, name string) {
		if names[dir] == nil {
			names[dir] = map[string]bool{}
		}
		names[dir][name] = true
	}
	dir := filepath.Dir(cw.path)
	add(dir, filepath.Base(cw.path))
	add(dir, k8sDataLink)
	if target, err := os.Readlink(cw.path); err == nil && !filepath.IsAbs(target) {
		first, _, _ := strings.Cut(filepath.ToSlash(filepath.Clean(target)), "/")
		if first != ".." && first != "." {
			add(dir, first)
		}
	}
	if real, err := filepath.EvalSymlinks(cw.path); err == nil && filepath.Dir(real) != dir {
		add(filepath.Dir(real), filepath.Base(real))
	}
	for d := range cw.names {
		if names[d] == nil {
			cw.w.Remove(d) // gone with an old ConfigMap version, or unused
		}
	}
	var firstErr error
	for d := range names {
		if cw.names[d] == nil {
			if err := cw.w.Add(d); err != nil && d == dir && firstErr == nil {
				firstErr = err
			}
		}
	}
	cw.names = names
	return firstErr
}

// concerns reports whether ev is about the config file.
func (cw *configWatch) concerns(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	return cw.names[filepath.Dir(ev.Name)][filepath.Base(ev.Name)]
}

// watch reloads the configuration when its file changes. It watches the
// directory, not the file, so replaced files and swapped symlinks are
// seen; only events on the file (and the links that lead to it) count,
// and a change that leaves the content as it is does not reload.
func (g *gateway) watch(stop <-chan struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	abs, err := filepath.Abs(g.path)
	if err != nil {
		return err
	}
	cw := &configWatch{w: w, path: abs}
	if err := cw.refresh(); err != nil {
		return err
	}
	var d debouncer
	defer d.stop()
	for {
		select {
		case <-stop:
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if cw.concerns(ev) {
				d.event(time.Now())
				cw.refresh()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			g.log.Warn("config file watch error", "error", err.Error())
		case <-d.fire:
			d.fired()
			g.reload("file", true)
			cw.refresh()
		}
	}
}

// debouncer fires watchDebounce after the last event, and at the latest
// watchMaxDelay after the first event of a burst.
type debouncer struct {
	timer *time.Timer
	fire  <-chan time.Time
	first time.Time // zero when no burst is pending
}

func (d *debouncer) event(now time.Time) {
	if d.first.IsZero() {
		d.first = now
	}
	wait := min(watchDebounce, d.first.Add(watchMaxDelay).Sub(now))
	if d.timer == nil {
		d.timer = time.NewTimer(wait)
	} else {
		d.timer.Reset(wait)
	}
	d.fire = d.timer.C
}

func (d *debouncer) fired() { d.fire, d.first = nil, time.Time{} }

func (d *debouncer) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}
