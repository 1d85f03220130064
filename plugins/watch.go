package plugins

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDir is the plugin directory the task list names.
const DefaultDir = "./plugins/"

const (
	// watchMaxDelay caps the debounce of a file from its first event, so
	// that a file written again and again is still reloaded: a change is
	// in effect within a second.
	watchMaxDelay = 500 * time.Millisecond
	// k8sDataLink is the symlink a Kubernetes ConfigMap volume swaps to
	// publish new versions of its files.
	k8sDataLink = "..data"
)

// dueAt is when a changed file is reloaded, and when its burst of events
// began.
type dueAt struct{ first, at time.Time }

// Watch watches dir (DefaultDir if empty) and its subdirectories for .wasm
// files that appear or change. Once a file has been quiet for
// Options.Debounce, or at the latest watchMaxDelay after its first event,
// it is recompiled (Reload): handlers using it switch to
// the new version; a new file is compiled ahead so that a snapshot using it
// builds quickly. A file that fails keeps the previous version and is
// logged. Events on other files do not delay it. A Kubernetes ConfigMap
// update (its ..data link swapped) reloads the loaded plugins of that
// directory. Removing a file changes nothing: handlers keep the code they run.
// Watch may be called for several directories; Close stops it.
func (m *Manager) Watch(dir string) error {
	if dir == "" {
		dir = DefaultDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil {
		return err
	} else if !fi.IsDir() {
		return errors.New(abs + ": not a directory")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errManagerClosed
	}
	if m.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		m.watcher = w
		m.wg.Add(1)
		go m.watchLoop(w)
	}
	return m.addTreeLocked(abs)
}

// addTreeLocked watches dir and its subdirectories, skipping hidden ones.
func (m *Manager) addTreeLocked(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // vanished meanwhile
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if m.watched[p] {
			return nil
		}
		if err := m.watcher.Add(p); err != nil {
			if p == dir {
				return err
			}
			m.log.Warn("wasm plugin: cannot watch directory", "dir", p, "error", err)
			return nil
		}
		m.watched[p] = true
		return nil
	})
}

// watchLoop debounces file events per path and reloads the paths that
// have been quiet long enough. It runs until Close.
func (m *Manager) watchLoop(w *fsnotify.Watcher) {
	defer m.wg.Done()
	due := map[string]dueAt{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	schedule := func() {
		if len(due) == 0 {
			return
		}
		var next time.Time
		for _, d := range due {
			if next.IsZero() || d.at.Before(next) {
				next = d.at
			}
		}
		timer.Reset(max(time.Until(next), time.Millisecond))
	}
	for {
		select {
		case <-m.stop:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			m.event(ev, due)
			schedule()
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			m.log.Warn("wasm plugin watcher", "error", err)
		case <-timer.C:
			now := time.Now()
			for p, d := range due {
				if now.Before(d.at) {
					continue
				}
				delete(due, p)
				select {
				case <-m.stop:
					return
				default:
				}
				// Reload logs its own failures.
				_ = m.Reload(p)
			}
			schedule()
		}
	}
}

func (m *Manager) event(ev fsnotify.Event, due map[string]dueAt) {
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
		return
	}
	now := time.Now()
	base := filepath.Base(ev.Name)
	switch {
	case base == k8sDataLink:
		for _, p := range m.loadedIn(filepath.Dir(ev.Name)) {
			m.schedule(due, p, now)
		}
	case strings.HasSuffix(base, ".wasm"):
		m.schedule(due, ev.Name, now)
	case ev.Has(fsnotify.Create) && !strings.HasPrefix(base, "."):
		// A new subdirectory (hidden ones, such as a ConfigMap's
		// versions, are reached through their links).
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			m.mu.Lock()
			if !m.closed {
				_ = m.addTreeLocked(ev.Name)
			}
			m.mu.Unlock()
		}
	}
}

// schedule (re)arms the reload of path: Options.Debounce after this
// event, but no later than watchMaxDelay after the first one.
func (m *Manager) schedule(due map[string]dueAt, path string, now time.Time) {
	d := due[path]
	if d.first.IsZero() {
		d.first = now
	}
	d.at = now.Add(m.opts.Debounce)
	if limit := d.first.Add(watchMaxDelay); d.at.After(limit) {
		d.at = limit
	}
	due[path] = d
}

// loadedIn lists the loaded plugins whose files are in dir.
func (m *Manager) loadedIn(dir string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p := range m.current {
		if filepath.Dir(p) == dir {
			out = append(out, p)
		}
	}
	return out
}
