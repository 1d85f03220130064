package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rustygate/rustygate/certs"
	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l4"
	"github.com/rustygate/rustygate/l7"
	_ "github.com/rustygate/rustygate/l7/middleware/standard"
	"github.com/rustygate/rustygate/l7/middleware/wasm"
	"github.com/rustygate/rustygate/loader"
	"github.com/rustygate/rustygate/observe"
	"github.com/rustygate/rustygate/plugins"
	"github.com/rustygate/rustygate/providers/kubernetes"
)

func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("RUSTYGATE_CONFIG"); env != "" {
		return env
	}
	return "config/default.yaml"
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := configPath(fs.Arg(0))
	cfg, err := config.LoadChecked(path, plugins.Check)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes)\n", path, len(cfg.Routes))
	return 0
}

// gateway is one running RustyGate process: its listeners, its current
// configuration and the ways to replace it.
type gateway struct {
	path    string
	lg      *observe.Logger
	log     *slog.Logger
	metrics *observe.Metrics
	tr      *l7.Transport
	srv     *l7.Server
	l4      *l4.Manager
	dp      *loader.Datapath
	banner  *banner
	// cluster is the connection to the cluster's Redis (nil: cluster off).
	cluster *cluster.Client
	inherit *inherited

	// reloadMu serialises reloads (file watcher, SIGHUP, admin).
	reloadMu   sync.Mutex
	ln         net.Listener
	listenAddr string
	adminLn    net.Listener
	admin      *http.Server
	// tlsLn is the HTTPS listener (server.tls.listen, nil without TLS),
	// tlsMgr the certificates it serves.
	tlsLn   net.Listener
	tlsAddr string
	tlsMgr  atomic.Pointer[certs.Manager]
	// h3pc is the HTTP/3 socket (server.tls.http3, nil when off), bound
	// to h3Addr.
	h3pc   net.PacketConn
	h3Addr string
	// lastLoaded is the content of the file the running config came from,
	// so watcher events that change nothing do not reload.
	lastLoaded []byte
	// lastFailed is the content of the last file that did not load, so a
	// burst of events for one bad save logs one error.
	lastFailed []byte

	// k8s is the Kubernetes provider (nil when off); k8sDir holds the
	// certificates of its Secrets.
	k8s    *kubernetes.Provider
	k8sDir string
	// k8sErrs are the objects the last translation left out, logged
	// when they change.
	k8sErrs string

	serveErr chan error
	// ready is what /readyz reports.
	ready readiness
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFlag := fs.String("c", "", "configuration file (default $RUSTYGATE_CONFIG or config/default.yaml)")
	fs.StringVar(cfgFlag, "config", "", "same as -c")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := configPath(*cfgFlag)
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return 1
	}
	cfg, err := config.Parse(path, raw)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	lg, err := observe.NewLogger(stderr, observe.LogOptions{Format: cfg.Log.Format, Level: cfg.Log.Level, Access: cfg.AccessLog()})
	if err != nil {
		fmt.Fprintf(stderr, "%s: log: %v\n", path, err)
		return 1
	}
	defer lg.Close()
	g := &gateway{path: path, lg: lg, log: lg.Slog(), metrics: observe.NewMetrics(), lastLoaded: raw, serveErr: make(chan error, 4)}
	g.inherit = inheritedListeners()
	return g.run(cfg)
}

func (g *gateway) run(cfg *config.Config) int {
	log := g.log
	dpCfg := cfg.Datapath
	dpCfg.Upgrade = g.inherit.upgrading()
	dp, err := loader.New(dpCfg, listenPorts(cfg), log)
	if err != nil {
		log.Error("datapath", "error", err.Error())
		return 1
	}
	defer dp.Close()
	g.dp = dp
	if cfg.Cluster.Enabled() {
		cl, err := g.joinCluster(cfg, dp)
		if err != nil {
			log.Error("cluster", "error", err.Error())
			return 1
		}
		defer cl.Close()
	}
	g.banner = newBanner(dp, g.banTarget(), cfg.Datapath.Bans, log)
	g.metrics.Info(version, cfg.Server.Engine, dp.Mode(), dp.Reason())
	g.metrics.RegisterDatapath(dp.Mode(), func() (observe.DatapathCounters, error) {
		n, err := dp.Counters()
		return observe.DatapathCounters{Passed: n.Passed, Limited: n.Limited, Denied: n.Denied, Banned: n.Banned}, err
	})
	pm, err := plugins.NewManager(plugins.Options{Logger: log})
	if err != nil {
		log.Error("WASM plugin host", "error", err.Error())
		return 1
	}
	defer pm.Close()
	for _, dir := range pluginDirs(cfg) {
		if err := pm.Watch(dir); err != nil {
			log.Warn("plugin directory not watched; changed plugins load on the next reload", "dir", dir, "error", err.Error())
		}
	}
	g.tr = l7.NewTransport(log, g.metrics)
	g.tr.SetOffences(g.banner)
	g.tr.SetResource(wasm.ManagerResource, pm)
	if g.cluster != nil {
		g.tr.SetResource(cluster.Resource, g.cluster)
	}
	defer g.tr.Close()
	stopK8s, err := g.startKubernetes(cfg)
	if err != nil {
		log.Error("cannot start the Kubernetes provider", "error", err.Error())
		return 1
	}
	defer stopK8s()
	if cfg, err = g.withProviders(cfg); err != nil {
		log.Error("invalid configuration with the providers' routes", "file", g.path, "error", err.Error())
		return 1
	}
	snap, err := l7.NewSnapshot(cfg, g.tr, g.metrics, nil)
	if err != nil {
		log.Error("invalid configuration", "file", g.path, "error", err.Error())
		return 1
	}
	g.srv = l7.NewServer(snap, g.tr, g.lg, g.metrics)
	observe.LogTracingErrors(log)
	tracer, err := observe.NewTracer(context.Background(), cfg.Tracing, version)
	if err != nil {
		log.Error("cannot set up tracing", "error", err.Error())
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(ctx); err != nil {
			log.Warn("tracing flush", "error", err.Error())
		}
	}()
	g.srv.SetTracer(tracer)
	if tracer != nil {
		g.metrics.RegisterTracing(tracer.SpanCounters)
	}
	g.tr.Activate(snap)

	ln, err := g.inherit.listen("server", cfg.Server.Listen)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.Server.Listen, "error", err.Error())
		return 1
	}
	ln = dp.WrapListener(ln)
	g.ln, g.listenAddr = ln, cfg.Server.Listen
	g.metrics.RegisterCertificates(g.certExpiry)
	if err := g.startTLS(cfg); err != nil {
		ln.Close()
		log.Error("cannot start the HTTPS listener", "error", err.Error())
		return 1
	}
	defer g.closeTLS()
	adminAddr := "off"
	if cfg.Admin.Enabled() {
		aln, err := g.inherit.listen("admin", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			log.Error("cannot listen", "addr", cfg.Admin.Listen, "error", err.Error())
			return 1
		}
		g.adminLn = aln
		adminAddr = aln.Addr().String()
		g.admin = &http.Server{Handler: g.adminMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := g.admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "error", err.Error())
			}
		}()
	}
	g.l4 = l4.NewManager(log, g.metrics, func(addr string) (net.Listener, error) {
		ln, err := g.inherit.listen("l4:"+addr, addr)
		if err != nil {
			return nil, err
		}
		return dp.WrapListener(ln), nil
	})
	// Port range listeners follow datapath.mode; like the mode itself, a
	// change applies at the next start.
	g.l4.SetSteering(cfg.Datapath.Mode, cfg.Datapath.BPFFS)
	if wantsKernelSplice(cfg) {
		sp, err := loader.NewSplicer(log)
		if err != nil {
			log.Warn("l4: kernel splicing unavailable; datapath kernel listeners use splice(2)", "error", err.Error())
		} else {
			g.l4.SetSplicer(sp)
			defer sp.Close()
		}
	}
	g.metrics.RegisterL4Splice(func() observe.SpliceCounters {
		st := g.l4.SpliceStats()
		return observe.SpliceCounters{Connections: st.Connections, Fallbacks: st.Fallbacks, RedirectedBytes: st.RedirectedBytes,
			DuplicateBytes: st.DuplicateBytes, Overlaps: st.Overlaps, IntegrityFailures: st.IntegrityFailures}
	})
	if err := g.l4.Apply(cfg.L4); err != nil {
		log.Error("cannot start the l4 listeners", "error", err.Error())
		ln.Close()
		g.l4.Shutdown(context.Background())
		return 1
	}
	g.inherit.closeUnused()
	// Guard the ports actually bound (a configured port 0 is known only now).
	if err := dp.Update(cfg.Datapath, boundPorts(cfg, g.ln, g.tlsLn, g.l4Ports(cfg))); err != nil {
		log.Error("datapath", "error", err.Error())
		ln.Close()
		g.l4.Shutdown(context.Background())
		return 1
	}
	if g.k8s != nil {
		// The Gateway listeners' status counts the ports bound now.
		m := maps.Clone(g.k8s.Reserved())
		if m == nil {
			m = map[int32]string{}
		}
		g.addBoundPorts(m, cfg)
		g.k8s.SetReserved(m)
	}
	g.metrics.ConfigReload(true, time.Now())
	go g.serve(ln)
	g.ready.set(stateReady)
	log.Info("RustyGate started",
		"version", version, "config", g.path, "pid", os.Getpid(),
		"listen", ln.Addr().String(), "tls_listen", g.tlsAddrString(), "admin", adminAddr,
		"engine", cfg.Server.Engine, "event_loops", eventLoops(cfg), "routes", len(cfg.Routes), "l4", len(cfg.L4),
		"datapath", dp.Mode(), "datapath_reason", dp.Reason())
	g.inherit.ready()

	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := g.watch(stopWatch); err != nil {
			log.Warn("config file watch unavailable; reload with SIGHUP or POST /admin/reload", "error", err.Error())
		}
	}()
	defer func() { close(stopWatch); <-watchDone }()
	if g.k8s != nil {
		g.k8s.Published()
		k8sCtx, k8sCancel := context.WithCancel(context.Background())
		k8sDone := make(chan struct{})
		go func() { defer close(k8sDone); g.runKubernetes(k8sCtx) }()
		defer func() { k8sCancel(); <-k8sDone }()
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}, upgradeSignals...)...)
	defer signal.Stop(sigs)
	code, upgraded := g.awaitStop(sigs)
	g.shutdown(sigs, upgraded)
	return code
}

// awaitStop serves signals until one stops the process: SIGINT or
// SIGTERM, a binary upgrade that succeeded (upgraded), or a listener
// failure (code 1).
func (g *gateway) awaitStop(sigs <-chan os.Signal) (code int, upgraded bool) {
	timeout := func() string { return g.srv.Snapshot().Config.Server.ShutdownTimeout.D().String() }
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				g.reload("SIGHUP", false)
				continue
			case isUpgradeSignal(sig):
				if err := g.upgrade(); err != nil {
					g.log.Error("binary upgrade failed; this process keeps serving", "error", err.Error())
					continue
				}
				g.log.Info("shutting down gracefully", "reason", "upgraded", "timeout", timeout())
				return 0, true
			}
			g.log.Info("shutting down gracefully", "signal", sig.String(), "timeout", timeout(),
				"drain_delay", g.srv.Snapshot().Config.Server.DrainDelay.D().String())
			return 0, false
		case err := <-g.serveErr:
			if err != nil {
				g.log.Error("listener failed", "error", err.Error())
				return 1, false
			}
			return 0, false
		}
	}
}

// shutdown drains the process. /readyz turns 503 at once. On a stop, the
// listeners keep accepting for server.drain_delay, so that load balancers
// see the 503 and stop sending new connections before the ports close;
// after an upgrade the new process already accepts on the same sockets,
// so there is no delay, and the admin listener stops accepting at once so
// that probes reach the new process. Then the listeners close and the
// work in flight gets server.shutdown_timeout.
func (g *gateway) shutdown(sigs <-chan os.Signal, upgraded bool) {
	g.ready.set(stateDraining)
	done := make(chan struct{})
	defer close(done)
	go g.forceExitOnSignal(sigs, done)
	cfg := g.srv.Snapshot().Config
	if upgraded && g.admin != nil {
		go g.admin.Shutdown(context.Background())
	}
	if d := cfg.Server.DrainDelay.D(); d > 0 && !upgraded {
		g.log.Info("draining: /readyz answers 503; listeners close after drain_delay", "drain_delay", d.String())
		time.Sleep(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	l4Done := make(chan error, 1)
	go func() { l4Done <- g.l4.Shutdown(ctx) }()
	if err := g.srv.Shutdown(ctx); err != nil {
		g.log.Warn("shutdown timed out; remaining connections closed", "error", err.Error())
	}
	g.closeHTTP3()
	if err := <-l4Done; err != nil {
		g.log.Warn("shutdown timed out; remaining l4 connections closed", "error", err.Error())
	}
	if g.admin != nil {
		g.admin.Shutdown(ctx)
	}
	g.srv.Snapshot().Close()
	g.log.Info("shutdown complete")
}

// forceExitOnSignal exits at once on a second SIGINT or SIGTERM; a late
// SIGHUP or a repeated upgrade request is ignored while draining.
func (g *gateway) forceExitOnSignal(sigs <-chan os.Signal, done <-chan struct{}) {
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGINT && sig != syscall.SIGTERM {
				g.log.Info("signal ignored while shutting down", "signal", sig.String())
				continue
			}
			g.log.Warn("forced exit", "signal", sig.String())
			g.lg.Close()
			os.Exit(1)
		case <-done:
			return
		}
	}
}

func (g *gateway) serve(ln net.Listener) {
	if err := g.srv.Serve(ln); err != nil {
		g.serveErr <- err
	}
}

func errorLines(err error) []string {
	var ce *config.Errors
	if errors.As(err, &ce) {
		out := make([]string, 0, len(ce.List))
		for _, fe := range ce.List {
			out = append(out, fe.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// boundPorts are the ports of the listeners as bound: the proxy's (plain
// and HTTPS, nil for none), the l4 listeners' (l4Ports) and the
// configured ones (a range, a port not bound yet).
func boundPorts(cfg *config.Config, plain, https net.Listener, l4Ports []int) []int {
	ports := append(listenPorts(cfg), l4Ports...)
	for _, ln := range []net.Listener{plain, https} {
		if ln != nil {
			if p := portOf(ln.Addr().String()); p > 0 {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

// l4Ports are the ports of the running l4 listeners of cfg.
func (g *gateway) l4Ports(cfg *config.Config) []int {
	var ports []int
	for _, l := range cfg.L4 {
		if a := g.l4.Addr(l.Name); a != nil {
			if p := portOf(a.String()); p > 0 {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// tlsAddrString is the HTTPS listener's address for the start line.
func (g *gateway) tlsAddrString() string {
	if g.tlsLn == nil {
		return "off"
	}
	return g.tlsLn.Addr().String()
}

// listenPorts are the ports the kernel limiter guards when
// kernel_rate_limit.ports is auto: the proxy's and the l4 listeners',
// every port of a range included.
func listenPorts(cfg *config.Config) []int {
	return cfg.ListenPorts()
}

// pluginDirs are the directories of the configured WASM plugins, watched
// so a new or changed .wasm file is loaded without a reload.
func pluginDirs(cfg *config.Config) []string {
	seen := map[string]bool{}
	var dirs []string
	add := func(ms []config.Middleware) {
		for _, m := range ms {
			if s, ok := m.Settings.(*wasm.Settings); ok && s.Path != "" {
				if d := filepath.Dir(s.Path); !seen[d] {
					seen[d] = true
					dirs = append(dirs, d)
				}
			}
		}
	}
	add(cfg.Middlewares)
	for _, r := range cfg.Routes {
		add(r.Middlewares)
	}
	return dirs
}

// wantsKernelSplice reports whether an l4 listener asks for kernel
// splicing (datapath: kernel); only then is the splicer loaded.
func wantsKernelSplice(cfg *config.Config) bool {
	for _, l := range cfg.L4 {
		if l.Datapath == "kernel" {
			return true
		}
	}
	return false
}

// eventLoops describes the fast engine's event loops for the start line.
func eventLoops(cfg *config.Config) string {
	if cfg.Server.Engine != config.EngineFast || !l7.EventLoopsSupported {
		return "off"
	}
	if n := cfg.Server.EventLoopCount(); n > 0 {
		return strconv.Itoa(n)
	}
	return "off"
}
