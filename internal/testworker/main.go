// Command testworker is a baton worker process for tests that need real
// processes: to kill one (SIGKILL) mid-task, or to run several that share
// fleet-wide limits. It runs the task kind "block", whose handler records
// its start and then blocks until it is cancelled, the research "fetch"
// task, whose User-Agent is "testworker/<pid>" so a test server can tell
// the processes apart, and with -durable the durable-run and heartbeat tasks
// of durable.go. Flags set the limits, as BATON_RATE_LIMITS and friends do
// for `baton worker`.
//
//	testworker -redis host:port                 a single Redis
//	testworker -url REDIS_URL [-queue q] [-log key]
//	                                            any Redis baton's config parses
//	                                            (redis-cluster://..., redis-sentinel://...)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/tasks"
)

// LogKeyDefault is the list the block task reports its starts to.
const LogKeyDefault = "testworker:log"

// Block is the task: it RPUSHes "started <id>" to the list logKey and waits
// for its context.
func Block(rdb redis.UniversalClient, logKey string) *baton.Task[int, int] {
	return baton.NewTask("block", func(ctx context.Context, n int) (int, error) {
		ti, _ := baton.InfoFrom(ctx)
		rdb.RPush(ctx, logKey, fmt.Sprintf("started %s pid %d", ti.ID, os.Getpid()))
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
}

func main() {
	addr := flag.String("redis", "", "Redis address host:port")
	rawURL := flag.String("url", "", "Redis URL, any form baton's REDIS_URL takes (overrides -redis)")
	queue := flag.String("queue", baton.QueueDefault, "queue to consume")
	logKey := flag.String("log", LogKeyDefault, "list the block task reports its starts to")
	concurrency := flag.Int("concurrency", 10, "tasks run at once")
	var rates config.RateLimits
	var concs config.ConcurrencyLimits
	var perHost config.Rate
	flag.Var(&rates, "rate-limits", "fleet-wide rate limits per kind, e.g. fetch=10/s")
	flag.Var(&concs, "concurrency-limits", "fleet-wide concurrency limits per kind, e.g. fetch=2")
	flag.Var(&perHost, "fetch-per-host", "per-host rate limit of fetch, e.g. 2/s")
	lease := flag.Duration("lease", 0, "concurrency slot lease (WorkerOptions.LimitLease)")
	durable := flag.Bool("durable", false, "also run the durable-run and heartbeat test tasks")
	recoverEvery := flag.Duration("recover-interval", 0, "WorkerOptions.RecoverInterval (0: the default)")
	flag.Parse()
	var rdb redis.UniversalClient = redis.NewClient(&redis.Options{Addr: *addr})
	if *rawURL != "" {
		var err error
		if rdb, err = config.NewRedisClient(*rawURL, 5*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if err := run(rdb, *queue, *logKey, *concurrency, rates, concs, perHost, *lease, *durable, *recoverEvery); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(rdb redis.UniversalClient, queue, logKey string, concurrency int, rates config.RateLimits, concs config.ConcurrencyLimits, perHost config.Rate, lease time.Duration,
	durable bool, recoverEvery time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		ShutdownTimeout: time.Second, Concurrency: concurrency, LimitLease: lease, Queues: map[string]int{queue: 1},
		RecoverInterval: recoverEvery}
	if durable {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		opts.PollInterval = 20 * time.Millisecond
	}
	w, err := baton.NewWorker(rdb, opts)
	if err != nil {
		return err
	}
	f := tasks.NewFetcher(tasks.FetchConfig{Timeout: 10 * time.Second, AllowPrivate: true, UserAgent: fmt.Sprintf("testworker/%d", os.Getpid()),
		PerHost: baton.RateLimit{Rate: perHost.N, Per: perHost.Per, Burst: perHost.Burst}})
	defs := []baton.Definition{Block(rdb, logKey), tasks.FetchTask(f, 100*time.Millisecond)}
	if durable {
		defs = append(defs, durableTasks(rdb)...)
	}
	for i, d := range defs {
		var rl []baton.RateLimit
		var cl []baton.ConcurrencyLimit
		if r, ok := rates[d.Kind()]; ok {
			rl = append(rl, baton.RateLimit{Rate: r.N, Per: r.Per, Burst: r.Burst})
		}
		if n, ok := concs[d.Kind()]; ok {
			cl = append(cl, baton.ConcurrencyLimit{Max: n})
		}
		if defs[i], err = baton.WithLimits(d, rl, cl); err != nil {
			return err
		}
	}
	if err := w.Register(defs...); err != nil {
		return err
	}
	return w.Run(ctx)
}
