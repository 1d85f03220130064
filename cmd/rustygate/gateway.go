package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7"
	"github.com/rustygate/rustygate/observe"
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
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes)\n", path, len(cfg.Routes))
	return 0
}

// listen opens a TCP listener. Multipath TCP stays off: it buys nothing
// on the proxy's sockets and costs throughput.
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
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
	cfg, err := config.Load(path)
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
	log := lg.Slog()

	metrics := observe.NewMetrics()
	metrics.Info(version, cfg.Server.Engine, "userspace", "kernel datapath not built")
	tr := l7.NewTransport(log, metrics)
	defer tr.Close()
	snap, err := l7.NewSnapshot(cfg, tr, metrics, nil)
	if err != nil {
		log.Error("invalid configuration", "file", path, "error", err.Error())
		return 1
	}
	srv := l7.NewServer(snap, tr, lg, metrics)
	tr.Activate(snap)

	ln, err := listen(cfg.Server.Listen)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.Server.Listen, "error", err.Error())
		return 1
	}
	var admin *http.Server
	adminAddr := "off"
	if cfg.Admin.Enabled() {
		aln, err := listen(cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			log.Error("cannot listen", "addr", cfg.Admin.Listen, "error", err.Error())
			return 1
		}
		adminAddr = aln.Addr().String()
		admin = &http.Server{Handler: adminMux(metrics.Handler()), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "error", err.Error())
			}
		}()
	}
	metrics.ConfigReload(true, time.Now())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("RustyGate started",
		"version", version, "config", path,
		"listen", ln.Addr().String(), "admin", adminAddr,
		"engine", cfg.Server.Engine, "routes", len(cfg.Routes), "datapath", "userspace")

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	code := 0
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(path, srv, tr, metrics, log)
				continue
			}
			log.Info("shutting down gracefully", "signal", sig.String(), "timeout", cfg.Server.ShutdownTimeout.D().String())
			break wait
		case err := <-serveErr:
			if err != nil {
				log.Error("listener failed", "error", err.Error())
				code = 1
			}
			break wait
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	go func() {
		// A second signal forces the exit.
		select {
		case sig := <-sigs:
			log.Warn("forced exit", "signal", sig.String())
			lg.Close()
			os.Exit(1)
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown timed out; remaining connections closed", "error", err.Error())
	}
	if admin != nil {
		admin.Shutdown(ctx)
	}
	srv.Snapshot().Close()
	log.Info("shutdown complete")
	return code
}

// reload builds a snapshot from the file and publishes it; a bad file
// keeps the running configuration.
func reload(path string, srv *l7.Server, tr *l7.Transport, metrics *observe.Metrics, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		metrics.ConfigReload(false, time.Now())
		log.Error("config reload failed; keeping the running configuration", "file", path, "error", err.Error())
		return
	}
	old := srv.Snapshot()
	snap, err := l7.NewSnapshot(cfg, tr, metrics, old)
	if err != nil {
		metrics.ConfigReload(false, time.Now())
		log.Error("config reload failed; keeping the running configuration", "file", path, "error", err.Error())
		return
	}
	srv.SetSnapshot(snap)
	tr.Activate(snap)
	old.Retire(old.Config.Server.ShutdownTimeout.D())
	metrics.ConfigReload(true, time.Now())
	log.Info("Config reloaded", "file", path, "routes", len(cfg.Routes))
}

// adminMux routes the operator endpoints; metrics serves GET /metrics.
func adminMux(metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
