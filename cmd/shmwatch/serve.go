package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/shmwatch/shmwatch/agent"
)

// defaultListen is shmwatch's port, in the exporters' 9xxx range. The
// Prometheus default port allocations page could not be consulted when it was
// chosen (no network); it is a flag, and the manifests name it once.
const defaultListen = ":9850"

type serveCmd struct {
	cmd           *kingpin.CmdClause
	flags         *nodeFlags
	web           *web.FlagConfig
	telemetryPath string
	scrapeTimeout time.Duration
	sandbox       bool
	auth          *metricsAuth
	oomWatch      string
	events        eventFlags
}

func newServeCmd(app *kingpin.Application, f *nodeFlags) *serveCmd {
	s := &serveCmd{flags: f}
	s.cmd = app.Command("serve", "Serve Prometheus metrics (the DaemonSet agent).").Default()
	s.web = kingpinflag.AddFlags(s.cmd, defaultListen)
	s.cmd.Flag("web.telemetry-path", "Path of the metrics.").Default("/metrics").StringVar(&s.telemetryPath)
	s.cmd.Flag("scrape-timeout", "Longest a scrape waits for a collection.").Default("10s").DurationVar(&s.scrapeTimeout)
	s.cmd.Flag("collector.sandbox", "Also export the sandbox (pause) container cgroups.").BoolVar(&s.sandbox)
	s.auth = addAuthFlags(s.cmd)
	s.cmd.Flag("oom-watch", "Watch the kernel for OOM kills per pod (docs/oom.md): auto (on with cgroup v2), on (v1: needs root and a writable cgroup mount), off.").Default("auto").EnumVar(&s.oomWatch, "auto", "on", "off")
	s.events.register(s.cmd)
	return s
}

func (s *serveCmd) run(log *zap.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	base := prometheus.NewRegistry()
	sender := s.events.sender(ctx, s.flags, base, log)
	// Metrics export neither peak memory nor, by default, sandbox cgroups:
	// the agent does not read them (scan and audit do).
	col, _, err := s.flags.openNode(ctx, log, agent.Config{SkipPeak: true, SkipSandboxMemory: !s.sandbox, SkipSlabinfo: true,
		OnOOMKill: onOOMKill(sender)})
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if err := s.auth.setup(s.flags, s.telemetryPath, log); err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	startOOMWatch(ctx, col, s.oomWatch, log)
	var ready atomic.Bool
	go func() { // the first collection warms the mount cache before /readyz says yes
		if _, err := col.Collect(ctx); err == nil {
			ready.Store(true)
		}
	}()
	s.events.startChecker(ctx, col, sender)
	server := &http.Server{Handler: s.mux(col, base, &ready, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- s.auth.listenAndServe(server, s.web, slog.New(zapslog.NewHandler(log.Core()))) }()
	log.Info("serving", zap.Strings("listen", *s.web.WebListenAddresses), zap.String("version", agent.Version))
	select {
	case err := <-errc:
		log.Error("server stopped", zap.Error(err))
		return 1
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("shutdown", zap.Error(err))
	}
	log.Info("stopped")
	return 0
}

func (s *serveCmd) mux(col *agent.Collector, base *prometheus.Registry, ready *atomic.Bool, log *zap.Logger) *http.ServeMux {
	base.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter := agent.NewExporter(col, s.scrapeTimeout, s.sandbox)
	mux := http.NewServeMux()
	metrics := exporter.Handler(base, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      zap.NewStdLog(log),
	})
	mux.Handle(s.telemetryPath, s.auth.guard(metrics, base))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "first collection not done\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
