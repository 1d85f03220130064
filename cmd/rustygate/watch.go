package main

import (
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce groups the burst of events one save makes (editors write
// a temporary file and rename it; Kubernetes swaps a ..data symlink).
const watchDebounce = 200 * time.Millisecond

// watch reloads the configuration when its file changes. It watches the
// directory, not the file, so replaced files and swapped symlinks are
// seen; a change that leaves the content as it is does not reload.
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
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return err
	}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-stop:
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(watchDebounce)
			} else {
				timer.Reset(watchDebounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			g.log.Warn("config file watch error", "error", err.Error())
		case <-fire:
			fire = nil
			g.reload("file", true)
		}
	}
}
