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

// Watch watches dir (DefaultDir if empty) and its subdirectories for .wasm
// files that appear or change. Once a file has been quiet for
// Options.Debounce it is recompiled (Reload): handlers using it switch to
// the new version; a new file is compiled ahead so that a snapshot using it
// builds quickly. A file that fails keeps the previous version and is
// logged. Removing a file changes nothing: handlers keep the code they run.
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
	due := map[string]time.Time{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	schedule := func() {
		if len(due) == 0 {
			return
		}
		var next time.Time
		for _, t := range due {
			if next.IsZero() || t.Before(next) {
				next = t
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
			for p, t := range due {
				if now.Before(t) {
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

func (m *Manager) event(ev fsnotify.Event, due map[string]time.Time) {
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
			m.mu.Lock()
			if !m.closed {
				_ = m.addTreeLocked(ev.Name)
			}
			m.mu.Unlock()
			return
		}
	}
	if !strings.HasSuffix(ev.Name, ".wasm") {
		return
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) {
		due[ev.Name] = time.Now().Add(m.opts.Debounce)
	}
}
