// Command testworker is a baton worker process for tests that need to kill a
// real process (SIGKILL) mid-task. It runs the task kind "block", whose
// handler records its start and then blocks until it is cancelled, and with
// -durable the durable-run and heartbeat tasks of durable.go.
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
)

// Block is the task: it RPUSHes "started <id>" to the list testworker:log
// and waits for its context.
func Block(rdb redis.UniversalClient) *baton.Task[int, int] {
	return baton.NewTask("block", func(ctx context.Context, n int) (int, error) {
		ti, _ := baton.InfoFrom(ctx)
		rdb.RPush(ctx, "testworker:log", fmt.Sprintf("started %s pid %d", ti.ID, os.Getpid()))
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
}

func main() {
	addr := flag.String("redis", "", "Redis address host:port")
	durable := flag.Bool("durable", false, "also run the durable-run and heartbeat test tasks")
	recoverEvery := flag.Duration("recover-interval", 0, "WorkerOptions.RecoverInterval (0: the default)")
	flag.Parse()
	rdb := redis.NewClient(&redis.Options{Addr: *addr})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ShutdownTimeout: time.Second, RecoverInterval: *recoverEvery, PollInterval: 20 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defs := []baton.Definition{Block(rdb)}
	if *durable {
		defs = append(defs, durableTasks(rdb)...)
	}
	if err := w.Register(defs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
