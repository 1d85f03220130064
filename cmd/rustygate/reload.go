package main

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l4"
	"github.com/rustygate/rustygate/l7"
	"github.com/rustygate/rustygate/loader"
)

// A reload commits all or nothing. First every part prepares its new
// state beside the running one, which it leaves alone: the routes with
// their pools and middlewares (WASM plugins included), the plain and
// HTTPS listeners with the certificates, the l4 listeners (new ports are
// bound here, so a port in use fails the reload now) and the datapath
// settings (checked, not written). A failure while preparing releases
// what was prepared, and the running configuration is exactly as it was.
// Then the parts are put in force, the datapath first: it is the one
// commit the kernel may still refuse, and it writes the previous settings
// back when it does. The other commits fail only when the gateway is
// shutting down; the datapath is then reverted as well.

// reloadResult summarises a reload for logs and the admin endpoint.
type reloadResult struct {
	Status  string   `json:"status"`
	Routes  int      `json:"routes"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"`
	Errors  []string `json:"errors,omitempty"`
	// Restart lists settings that changed but take effect only after a
	// restart.
	Restart []string `json:"restart_required,omitempty"`
}

// reload builds a snapshot from the file and publishes it; a bad file
// keeps the running configuration. With onlyIfChanged, a file whose
// content is what is running is left alone.
func (g *gateway) reload(source string, onlyIfChanged bool) (reloadResult, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	fail := func(err error) (reloadResult, error) {
		g.metrics.ConfigReload(false, time.Now())
		g.log.Error("config reload failed; keeping the running configuration", "source", source, "file", g.path, "error", err.Error())
		return reloadResult{Status: "invalid", Errors: errorLines(err)}, err
	}
	raw, err := os.ReadFile(g.path)
	if err != nil {
		return fail(fmt.Errorf("config: %w", err))
	}
	if onlyIfChanged && string(raw) == string(g.lastLoaded) {
		g.lastFailed = nil // a revert: the next bad save is news again
		return reloadResult{Status: "unchanged"}, nil
	}
	if onlyIfChanged && string(raw) == string(g.lastFailed) {
		return reloadResult{Status: "unchanged"}, nil
	}
	g.lastFailed = raw // until it succeeds
	cfg, err := config.Parse(g.path, raw)
	if err != nil {
		return fail(err)
	}
	if cfg, err = g.withProviders(cfg); err != nil {
		return fail(err)
	}
	p, err := g.prepareReload(cfg)
	if err != nil {
		return fail(err)
	}
	if err := g.commitReload(p); err != nil {
		return fail(err)
	}
	if err := g.lg.SetLevel(cfg.Log.Level); err != nil {
		g.log.Warn("log level unchanged", "error", err.Error())
	}
	g.lastLoaded, g.lastFailed = raw, nil
	if g.k8s != nil {
		g.k8s.Published()
	}
	g.metrics.ConfigReload(true, time.Now())
	res := diffConfigs(p.old.Config, cfg)
	res.Status = "reloaded"
	g.log.Info("Config reloaded", "source", source, "file", g.path, "routes", res.Routes,
		"added", res.Added, "removed", res.Removed, "changed", res.Changed)
	if len(res.Restart) > 0 {
		g.log.Warn("some changed settings take effect only after a restart", "settings", res.Restart)
	}
	return res, nil
}

// reloadPlan is what a reload prepared, none of it in force yet.
type reloadPlan struct {
	cfg  *config.Config
	old  *l7.Snapshot
	snap *l7.Snapshot
	// ln is the new plain listener when server.listen changed.
	ln  net.Listener
	tls *tlsChange
	l4  *l4.Plan
	dp  *loader.Change
}

// prepareReload prepares every part of a reload to cfg, changing nothing
// that runs. On error what was prepared is released.
func (g *gateway) prepareReload(cfg *config.Config) (*reloadPlan, error) {
	p := &reloadPlan{cfg: cfg, old: g.srv.Snapshot()}
	err := g.prepareParts(p)
	if err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

func (g *gateway) prepareParts(p *reloadPlan) error {
	cfg := p.cfg
	var err error
	if p.snap, err = l7.NewSnapshot(cfg, g.tr, g.metrics, p.old); err != nil {
		return err
	}
	if cfg.Server.Listen != g.listenAddr {
		ln, err := listen(cfg.Server.Listen)
		if err != nil {
			return fmt.Errorf("server.listen: %w", err)
		}
		p.ln = g.dp.WrapListener(ln)
	}
	if p.tls, err = g.prepareTLS(cfg); err != nil {
		return err
	}
	if p.l4, err = g.l4.Prepare(cfg.L4); err != nil {
		return err
	}
	ports := boundPorts(cfg, cmp.Or(p.ln, g.ln), p.tls.listener(g.tlsLn), p.l4.Ports())
	if p.dp, err = g.dp.Prepare(cfg.Datapath, ports); err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	return nil
}

// release gives back what a plan prepared and did not commit.
func (p *reloadPlan) release() {
	if p.snap != nil {
		p.snap.Close()
	}
	if p.ln != nil {
		p.ln.Close()
	}
	if p.tls != nil {
		p.tls.abort()
	}
	if p.l4 != nil {
		p.l4.Abort()
	}
}

// commitReload puts a prepared reload in force. The datapath goes first:
// when the kernel refuses its settings, nothing else has changed.
func (g *gateway) commitReload(p *reloadPlan) error {
	if err := p.dp.Commit(); err != nil {
		p.release()
		return fmt.Errorf("datapath: %w", err)
	}
	if err := p.l4.Commit(); err != nil {
		g.revertDatapath(p)
		p.release()
		return err
	}
	if err := g.commit(p.tls); err != nil {
		g.revertDatapath(p)
		p.snap.Close()
		if p.ln != nil {
			p.ln.Close()
		}
		p.tls.abort()
		return err
	}
	g.banner.setConfig(p.cfg.Datapath.Bans)
	g.srv.SetSnapshot(p.snap)
	g.tr.Activate(p.snap)
	p.old.Retire(p.old.Config.Server.ShutdownTimeout.D())
	if p.ln != nil {
		go g.serve(p.ln)
		g.srv.StopListener(g.ln)
		g.ln, g.listenAddr = p.ln, p.cfg.Server.Listen
	}
	return nil
}

// revertDatapath puts the datapath settings of before the reload back.
func (g *gateway) revertDatapath(p *reloadPlan) {
	if err := p.dp.Revert(); err != nil {
		g.log.Error("datapath: restoring the running settings after a failed reload", "error", err.Error())
	}
}
