package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/metrics"
)

func newWorkerCmd(a *app) *cobra.Command {
	var pollInterval time.Duration
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run tasks from the queues until SIGINT or SIGTERM",
		Long: `Run a worker: execute the built-in tasks (echo, sleep, fail, flaky) and the
pipeline's tasks from the queues, until SIGINT or SIGTERM. On a signal the
worker stops taking tasks and gives running ones --shutdown-timeout to
finish; the rest go back to their queue. A second signal exits at once.

Queues default to default=6,llm=3,low=1 (weights; the pipeline's LLM calls
run on llm). To scale, start more workers on any machine that reaches the
same Redis.`,
		Example: `  baton worker
  baton worker --concurrency 20 --queues default=6,llm=3,low=1
  baton worker --queues llm --strict-priority`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd.Context(), a, pollInterval)
		},
	}
	a.addWorkerFlags(cmd)
	cmd.Flags().DurationVar(&pollInterval, "poll-interval", 0, "How often an idle worker looks for new tasks (default 1s)")
	return cmd
}

func runWorker(ctx context.Context, a *app, pollInterval time.Duration) error {
	// Task metrics are kept only when served: without --metrics-addr the
	// worker has no metrics observer, which costs nothing.
	reg := metrics.NewRegistry()
	var extra []baton.Observer
	if a.cfg.MetricsAddr != "" {
		obs, err := metrics.NewObserver(reg)
		if err != nil {
			return err
		}
		extra = append(extra, obs)
	}
	w, err := a.newWorker(ctx, pollInterval, extra...)
	if err != nil {
		return err
	}
	log := a.Logger()
	log.Info("connecting worker", "redis", config.RedactRedisURL(a.cfg.RedisURL))
	stop := context.AfterFunc(ctx, func() {
		log.Info("shutting down: running tasks get the shutdown timeout to finish; signal again to exit now",
			"shutdown_timeout", a.cfg.ShutdownTimeout)
	})
	defer stop()
	if addr := a.cfg.MetricsAddr; addr != "" {
		srv, err := serveMetrics(addr, metrics.Handler(reg))
		if err != nil {
			return err
		}
		defer srv.Close()
		if rdb, err := a.Redis(ctx); err == nil {
			defer metrics.WatchLimits(reg, rdb)() // limit usage beside the worker's counters
		}
		log.Info("serving metrics", "addr", srv.Addr, "path", "/metrics")
	}
	return w.Run(ctx)
}

// serveMetrics serves the Prometheus endpoint h for `--metrics-addr`.
func serveMetrics(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageErrorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// newWorker builds a worker from the configuration (concurrency, queues,
// shutdown timeout, ...) with every known task registered (Definitions),
// observed by the process's observers (tracing, when on) and extra. It is
// not started. pollInterval 0 keeps baton's default.
func (a *app) newWorker(ctx context.Context, pollInterval time.Duration, extra ...baton.Observer) (*baton.Worker, error) {
	if pollInterval < 0 {
		return nil, usageErrorf("--poll-interval %v is negative", pollInterval)
	}
	rdb, err := a.Redis(ctx)
	if err != nil {
		return nil, err
	}
	defs, err := a.Definitions(ctx)
	if err != nil {
		return nil, err
	}
	obs, err := a.observers(ctx)
	if err != nil {
		return nil, err
	}
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{
		Observers:       append(obs, extra...),
		Concurrency:     a.cfg.Concurrency,
		Queues:          a.cfg.Queues,
		StrictPriority:  a.cfg.StrictPriority,
		ShutdownTimeout: a.cfg.ShutdownTimeout,
		ResultTTL:       a.cfg.ResultTTL,
		Logger:          a.Logger(),
		PollInterval:    pollInterval,
	})
	if err != nil {
		return nil, &usageError{err}
	}
	if defs, err = configLimits(a.cfg, defs); err != nil {
		return nil, err
	}
	if err := w.Register(defs...); err != nil {
		return nil, err
	}
	return w, nil
}
