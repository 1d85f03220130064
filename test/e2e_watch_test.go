package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// busyWriter writes to files of dir every 50 ms until cleanup, the way a
// log beside the config, an editor's swap file or a renewed certificate
// would: appends to one file and rename-in saves of another.
func busyWriter(t *testing.T, dir string) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		logf, err := os.OpenFile(filepath.Join(dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer logf.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			fmt.Fprintf(logf, "line %d\n", i)
			tmp := filepath.Join(dir, ".cert.pem.tmp")
			os.WriteFile(tmp, []byte(fmt.Sprint(i)), 0o644)
			os.Rename(tmp, filepath.Join(dir, "cert.pem"))
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// TestReloadBusyDirectory: other files written in the config's directory
// every 50 ms do not hold a reload back: a rename-in save and a ConfigMap
// ..data swap are each in effect within 1 s.
func TestReloadBusyDirectory(t *testing.T) {
	be := hrPathBackend(t, "be")
	base := hrRoute("old", "/old", be)
	withNew := base + hrRoute("new", "/new", be)

	t.Run("rename", func(t *testing.T) {
		cfg := hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: base})
		busyWriter(t, filepath.Dir(cfg))
		p := hrStart(t, cfg)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/new/x", 404, "")
		for i, routes := range []string{withNew, base, withNew} {
			want := []int{200, 404, 200}[i]
			hrWrite(t, cfg, hrCfg{engine: hrEngine, version: fmt.Sprint(i + 2), routes: routes}.yaml())
			if d := hrPoll(t, c, p.url()+"/new/x", want, 3*time.Second); d > time.Second {
				t.Errorf("save %d was in effect %v after the rename; want within 1s", i+1, d)
			}
		}
	})

	t.Run("configmap symlink swap", func(t *testing.T) {
		dir := t.TempDir()
		publish := func(stamp, content string) {
			ts := filepath.Join(dir, "..2026_01_01_00_00_0"+stamp+".000000001")
			if err := os.Mkdir(ts, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ts, "config.yaml"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		publish("1", hrCfg{engine: hrEngine, version: "1", routes: base}.yaml())
		cfg := filepath.Join(dir, "config.yaml")
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), cfg); err != nil {
			t.Fatal(err)
		}
		busyWriter(t, dir)
		p := hrStart(t, cfg)
		c := newClient(t)
		hrExpect(t, c, p.url()+"/new/x", 404, "")
		publish("2", hrCfg{engine: hrEngine, version: "2", routes: withNew}.yaml())
		if d := hrPoll(t, c, p.url()+"/new/x", 200, 3*time.Second); d > time.Second {
			t.Errorf("the ..data swap was in effect %v after it; want within 1s", d)
		}
		publish("3", hrCfg{engine: hrEngine, version: "3", routes: base}.yaml())
		if d := hrPoll(t, c, p.url()+"/new/x", 404, 3*time.Second); d > time.Second {
			t.Errorf("the second ..data swap was in effect %v after it; want within 1s", d)
		}
	})

	t.Run("symlink to another directory", func(t *testing.T) {
		// /etc-style link to a file kept elsewhere, edited in place there.
		real := hrConfigFile(t, hrCfg{engine: hrEngine, version: "1", routes: base})
		link := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		busyWriter(t, filepath.Dir(real))
		p := hrStart(t, link)
		c := newClient(t)
		if err := os.WriteFile(real, []byte(hrCfg{engine: hrEngine, version: "2", routes: withNew}.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		if d := hrPoll(t, c, p.url()+"/new/x", 200, 3*time.Second); d > time.Second {
			t.Errorf("an edit of the link's target was in effect %v after it; want within 1s", d)
		}
	})
}
