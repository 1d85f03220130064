package certs

import (
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch timing: a save is a burst of events (an editor writes a
// temporary file and renames it; Kubernetes swaps a ..data symlink;
// certbot re-points a symlink). The reload waits for a quiet debounce
// interval, but never more than watchMaxDelay after the first event, so
// a renewed pair serves new handshakes well within two seconds.
const (
	watchDebounce = 200 * time.Millisecond
	watchMaxDelay = time.Second
	// kubeDataLink is the symlink a Kubernetes Secret or ConfigMap volume
	// swaps atomically to publish new contents.
	kubeDataLink = "..data"
)

// fileWatch is what the watcher looks at: the directories of the
// configured files and of their symlink targets, and which events there
// count.
type fileWatch struct {
	w *fsnotify.Watcher
	// files are the configured files and their resolved symlink targets
	// (absolute, clean).
	files map[string]bool
	// linkDirs are the directories of configured files, where a ..data
	// swap counts.
	linkDirs map[string]bool
	// dirs are the directories being watched.
	dirs map[string]bool
}

func (m *Manager) newWatcher() (*fileWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fileWatch{w: w, dirs: make(map[string]bool)}
	fw.refresh(m.watchedFiles(), m)
	return fw, nil
}

// refresh recomputes the watched files (symlink targets change when a
// link is re-pointed) and the watched directories: new ones are added,
// and those no longer needed (a Kubernetes volume's previous timestamped
// directory) dropped.
func (fw *fileWatch) refresh(pairs []PairFiles, m *Manager) {
	fw.files = make(map[string]bool)
	fw.linkDirs = make(map[string]bool)
	want := make(map[string]bool)
	for _, p := range pairs {
		for _, f := range []string{p.CertFile, p.KeyFile} {
			abs, err := filepath.Abs(f)
			if err != nil {
				continue
			}
			fw.files[abs] = true
			fw.linkDirs[filepath.Dir(abs)] = true
			want[filepath.Dir(abs)] = true
			if target, err := filepath.EvalSymlinks(abs); err == nil && target != abs {
				fw.files[target] = true
				want[filepath.Dir(target)] = true
			}
		}
	}
	for dir := range fw.dirs {
		if !want[dir] {
			fw.w.Remove(dir) // fails harmlessly for a removed directory
			delete(fw.dirs, dir)
		}
	}
	for dir := range want {
		if fw.dirs[dir] {
			continue
		}
		if err := fw.w.Add(dir); err != nil {
			m.log.Warn("certificate watch: cannot watch directory", "dir", dir, "error", err.Error())
			continue
		}
		fw.dirs[dir] = true
	}
}

// relevant reports whether an event concerns a watched file.
func (fw *fileWatch) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if fw.files[name] {
		return true
	}
	return filepath.Base(name) == kubeDataLink && fw.linkDirs[filepath.Dir(name)]
}

// watch reloads the pairs when their files change, until Close.
func (m *Manager) watch(fw *fileWatch) {
	defer m.wg.Done()
	defer fw.w.Close()
	var quiet, deadline *time.Timer
	var fire <-chan time.Time
	var hard <-chan time.Time
	stopTimers := func() {
		for _, t := range []*time.Timer{quiet, deadline} {
			if t != nil {
				t.Stop()
			}
		}
		fire, hard = nil, nil
	}
	defer stopTimers()
	for {
		select {
		case <-m.stop:
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if fw.relevant(ev) {
				quiet = resetTimer(quiet, watchDebounce)
				fire = quiet.C
				if hard == nil {
					deadline = resetTimer(deadline, watchMaxDelay)
					hard = deadline.C
				}
			}
			continue
		case <-m.watchWake:
			// Update changed the files: watch the new ones.
			fw.refresh(m.watchedFiles(), m)
			continue
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			m.log.Warn("certificate watch error", "error", err.Error())
			continue
		case <-fire:
		case <-hard:
		}
		stopTimers()
		m.Reload() // it logs the refusals
		fw.refresh(m.watchedFiles(), m)
	}
}

// watchedFiles returns the configured pairs.
func (m *Manager) watchedFiles() []PairFiles {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]PairFiles(nil), m.opts.Certificates...)
}

func resetTimer(t *time.Timer, d time.Duration) *time.Timer {
	if t == nil {
		return time.NewTimer(d)
	}
	t.Reset(d)
	return t
}
