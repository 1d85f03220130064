package plugins

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// noisyDir writes another file in dir every 50 ms until cleanup.
func noisyDir(t *testing.T, dir string) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(fmt.Sprint(i)), 0o644)
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// waitV2 waits up to 1 s from since for the handler to run the v2 guest.
func waitV2(t *testing.T, h *Handler, since time.Time, logs *syncBuffer) {
	t.Helper()
	for time.Since(since) < 3*time.Second {
		if roundTrip(h, newEx("GET", "/")).header("X-RustyGate-Plugin") == "executed-v2" {
			if d := time.Since(since); d > time.Second {
				t.Errorf("v2 in effect %v after the change; want within 1s", d)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("v2 not in effect 3s after the change; logs:\n%s", logs)
}

// precompile loads v2 once so that the reload under test is quick even
// under the race detector (the compilation cache is by content).
func precompile(t *testing.T, m *Manager) []byte {
	t.Helper()
	if err := m.Load(copyExample(t, "add_header_v2", t.TempDir(), "v2.wasm")); err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile(example(t, "add_header_v2"))
	if err != nil {
		t.Fatal(err)
	}
	return v2
}

// TestWatchRewrittenFile: a plugin file replaced every 50 ms (a sync tool
// that keeps saving it) is reloaded within 1 s of the first write, even with a
// debounce longer than the interval between writes.
func TestWatchRewrittenFile(t *testing.T) {
	dir := t.TempDir()
	path := copyExample(t, "add_header", dir, "plugin.wasm")
	m, logs := newManager(t, Options{Debounce: 200 * time.Millisecond})
	h := newHandler(t, m, path, false, nil)
	v2 := precompile(t, m)
	if err := m.Watch(dir); err != nil {
		t.Fatal(err)
	}
	noisyDir(t, dir)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		tmp := filepath.Join(dir, ".plugin.wasm.tmp")
		for {
			os.WriteFile(tmp, v2, 0o644)
			os.Rename(tmp, path)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
	waitV2(t, h, time.Now(), logs)
}

// TestWatchConfigMapSwap: a plugin mounted from a ConfigMap (plugin.wasm
// -> ..data/plugin.wasm, ..data swapped to a new version's directory) is
// reloaded within 1 s of the swap while another file of the directory is
// written every 50 ms.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	publish := func(version, example string) {
		ts := filepath.Join(dir, "..2026_01_01_"+version)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		copyExample(t, example, ts, "plugin.wasm")
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k8sDataLink)); err != nil {
			t.Fatal(err)
		}
	}
	publish("1", "add_header")
	path := filepath.Join(dir, "plugin.wasm")
	if err := os.Symlink(filepath.Join(k8sDataLink, "plugin.wasm"), path); err != nil {
		t.Fatal(err)
	}
	m, logs := newManager(t, Options{})
	h := newHandler(t, m, path, false, nil)
	precompile(t, m)
	if err := m.Watch(dir); err != nil {
		t.Fatal(err)
	}
	noisyDir(t, dir)
	if got := roundTrip(h, newEx("GET", "/")).header("X-RustyGate-Plugin"); got != "executed" {
		t.Fatalf("before the swap: %q", got)
	}
	swapped := time.Now()
	publish("2", "add_header_v2")
	waitV2(t, h, swapped, logs)
}
