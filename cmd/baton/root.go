package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/tasks"
	"github.com/batonhq/baton/tracing"
)

// commands returns the subcommands of baton, in help order: adding one is
// one line here plus its file. No command registers itself.
func commands() []func(a *app) *cobra.Command {
	return []func(a *app) *cobra.Command{
		newWorkerCmd,
		newEnqueueCmd,
		newSubmitCmd,
		newResultCmd,
		newCancelCmd,
		newInspectCmd,
		newBenchCmd,
		newBeatCmd,
		newDashCmd,
		newResearchCmd,
		newDemoCmd,
	}
}

// definitions returns the tasks a baton process knows: the worker registers
// them and the client declares them, so their kinds are known to enqueue
// and submit. They are the built-in tasks (tasks.Builtins), the research
// pipeline's fetch and analyze configured from cfg, and extraDefinitions.
// It is called at most once per process, after Redis answered.
func definitions(cfg config.Config, rdb redis.UniversalClient) []baton.Definition {
	defs := append(tasks.Builtins(), researchDefinitions(cfg, rdb)...)
	if extraDefinitions != nil {
		defs = append(defs, extraDefinitions(cfg, rdb)...)
	}
	return defs
}

// extraDefinitions, when set (by a test), returns task definitions beyond
// those of definitions.
var extraDefinitions func(cfg config.Config, rdb redis.UniversalClient) []baton.Definition

// rootFlags are the config flags every command takes (persistent); the
// other config flags are worker settings, added by addWorkerFlags.
var rootFlags = map[string]bool{
	"redis-url": true, "redis-timeout": true, "result-ttl": true, "log-level": true, "log-format": true,
	"max-canvas-tasks": true, "max-canvas-bytes": true,
}

// app is what commands share: the configuration (environment, then flags)
// and the lazily created Redis client, baton client and logger. A command
// that brings its own Redis (an embedded one) sets cfg.RedisURL before the
// first call to Redis, Client or Definitions.
type app struct {
	cfg    config.Config
	envErr error // from config.FromEnv, reported when a command runs
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// workerFlags are the config flags of worker settings (concurrency,
	// queues, fetch and LLM settings ...), bound to cfg.
	workerFlags *pflag.FlagSet
	// started is set once cobra accepted the command line and a command
	// began to run; errors before that are usage errors.
	started bool

	mu   sync.Mutex
	rdb  redis.UniversalClient
	defs []baton.Definition
	cl   *baton.Client
	log  *slog.Logger

	// service names this process in traces: "baton-" and the command.
	service string
	// tracing is set up on first use (observers) when the environment
	// asks for it (OTEL_EXPORTER_OTLP_ENDPOINT); tp is flushed at Close.
	tracingDone bool
	tracer      *tracing.Observer
	tp          *sdktrace.TracerProvider
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	cfg, err := config.FromEnv()
	a := &app{cfg: cfg, envErr: err, stdin: stdin, stdout: stdout, stderr: stderr}
	a.workerFlags = pflag.NewFlagSet("worker settings", pflag.ContinueOnError)
	return a
}

// bindFlags binds every config flag to a.cfg: the root's persistent flags
// get the connection and logging ones, a.workerFlags the rest.
func (a *app) bindFlags(root *cobra.Command) {
	all := pflag.NewFlagSet("config", pflag.ContinueOnError)
	a.cfg.BindFlags(all)
	all.VisitAll(func(f *pflag.Flag) {
		if rootFlags[f.Name] {
			root.PersistentFlags().AddFlag(f)
		} else {
			a.workerFlags.AddFlag(f)
		}
	})
}

// addWorkerFlags gives cmd the worker settings flags (--concurrency,
// --queues, --fetch-timeout, --model, ...), for commands that run tasks.
func (a *app) addWorkerFlags(cmd *cobra.Command) {
	cmd.Flags().AddFlagSet(a.workerFlags)
}

// Logger is the process logger (config.Logger on stderr).
func (a *app) Logger() *slog.Logger {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logger()
}

// logger is Logger with a.mu held.
func (a *app) logger() *slog.Logger {
	if a.log == nil {
		a.log = a.cfg.Logger(a.stderr)
	}
	return a.log
}

// Redis returns the Redis client, creating it on first use and checking with
// a PING (bounded by BATON_REDIS_TIMEOUT) that Redis answers; if it does not,
// the error is a one-line *redisError (exit 3).
func (a *app) Redis(ctx context.Context) (redis.UniversalClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rdb != nil {
		return a.rdb, nil
	}
	rdb, err := config.NewRedisClient(a.cfg.RedisURL, a.cfg.RedisDialTimeout)
	if err != nil {
		return nil, usageErrorf("REDIS_URL=%s: %w", config.RedactRedisURL(a.cfg.RedisURL), err)
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisDialTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, a.unreachable(err)
	}
	a.rdb = rdb
	return rdb, nil
}

func (a *app) unreachable(err error) error {
	addr := config.RedactRedisURL(a.cfg.RedisURL)
	if o, perr := config.ParseRedisURL(a.cfg.RedisURL, 0); perr == nil {
		addr = strings.Join(o.Addrs, ",")
	}
	hint := "set REDIS_URL or --redis-url"
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer within %v (BATON_REDIS_TIMEOUT)", a.cfg.RedisDialTimeout)
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"):
		hint = "check the user name and password in REDIS_URL"
	}
	return &redisError{addr: addr, err: err, hint: hint}
}

// Definitions returns the tasks this process knows (definitions). It needs
// Redis (the analyze task keeps its response cache there).
func (a *app) Definitions(ctx context.Context) ([]baton.Definition, error) {
	rdb, err := a.Redis(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.defs == nil {
		a.defs = definitions(a.cfg, rdb)
	}
	return a.defs, nil
}

// Client returns the baton client, with every known task declared so that
// enqueue and submit route kinds to their queues and reject unknown ones.
func (a *app) Client(ctx context.Context) (*baton.Client, error) {
	defs, err := a.Definitions(ctx)
	if err != nil {
		return nil, err
	}
	obs, err := a.observers(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cl == nil {
		cl, err := baton.NewClient(a.rdb, &baton.ClientOptions{ResultTTL: a.cfg.ResultTTL,
			MaxCanvasTasks: a.cfg.MaxCanvasTasks, MaxCanvasBytes: int(a.cfg.MaxCanvasBytes), Observers: obs})
		if err != nil {
			return nil, err
		}
		cl.Declare(defs...)
		a.cl = cl
	}
	return a.cl, nil
}

// observers returns the observers of this process's clients and workers:
// the tracing observer when the environment turns tracing on
// (tracing.Enabled), else none. A bad OTEL_* setting is a usage error.
func (a *app) observers(ctx context.Context) ([]baton.Observer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.tracingDone {
		service := a.service
		if service == "" {
			service = "baton"
		}
		obs, tp, err := tracing.FromEnv(ctx, service)
		if err != nil {
			return nil, &usageError{err}
		}
		a.tracingDone, a.tracer, a.tp = true, obs, tp
		if tp != nil {
			a.logger().Info("tracing on: spans go to the OTLP/HTTP endpoint of OTEL_EXPORTER_OTLP_ENDPOINT", "service", service)
		}
	}
	if a.tracer == nil {
		return nil, nil
	}
	return []baton.Observer{a.tracer}, nil
}

// knownKind reports whether kind is one of Definitions.
func (a *app) knownKind(ctx context.Context, kind string) (bool, []string, error) {
	defs, err := a.Definitions(ctx)
	if err != nil {
		return false, nil, err
	}
	kinds := make([]string, len(defs))
	found := false
	for i, d := range defs {
		kinds[i] = d.Kind()
		found = found || d.Kind() == kind
	}
	return found, kinds, nil
}

// Close releases the client and the Redis connection.
func (a *app) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	if a.cl != nil {
		errs = append(errs, a.cl.Close())
	}
	if a.tp != nil {
		// Flush the spans still buffered; a collector that is down costs
		// at most this long.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.tp.Shutdown(ctx); err != nil {
			a.logger().Warn("tracing: could not flush spans at exit", "err", err)
		}
		cancel()
	}
	if a.rdb != nil {
		errs = append(errs, a.rdb.Close())
	}
	return errors.Join(errs...)
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "baton",
		Short: "A Celery-style distributed task queue on Redis",
		Long: `baton runs tasks on workers that share a Redis: enqueue tasks and
canvases (chains, groups, chords), wait for their results, inspect queues.

Settings come from the environment (REDIS_URL, BATON_*), overridden by flags.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.started = true
			a.service = "baton-" + cmd.Name()
			if a.envErr != nil {
				return &usageError{fmt.Errorf("environment: %w", a.envErr)}
			}
			if err := a.cfg.Validate(); err != nil {
				return &usageError{err}
			}
			// go-redis's own lines (a pub/sub connection lost, ...) go
			// through the same logger as everything else.
			config.RouteRedisLogs(a.Logger())
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	a.bindFlags(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	for _, newCmd := range commands() {
		root.AddCommand(newCmd(a))
	}
	return root
}

// run runs baton with args (without the program name) and returns the exit
// code; main is a thin wrapper around it and tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWithInput(ctx, args, os.Stdin, stdout, stderr)
}

func runWithInput(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	defer a.Close()
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	var ee *exitError
	if err != nil && ctx.Err() != nil && !errors.As(err, &ee) {
		err = &interruptedError{err} // exit 130, one line
	}
	if err != nil && !a.started {
		// cobra rejected the command line before a command ran: unknown
		// command, bad flag or wrong number of arguments.
		var ue *usageError
		if !errors.As(err, &ue) {
			err = &usageError{err}
		}
	}
	path := ""
	if cmd != nil {
		path = cmd.CommandPath()
	}
	return report(stderr, err, path)
}

// noArgs rejects positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// oneArg requires exactly one positional argument, described by what.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usageErrorf("%s needs %s", cmd.CommandPath(), what)
		case len(args) > 1:
			return usageErrorf("%s takes one argument (%s), got %d: %q", cmd.CommandPath(), what, len(args), args)
		}
		return nil
	}
}
