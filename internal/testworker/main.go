// Command testworker is a baton worker process for tests that need to kill a
// real process (SIGKILL) mid-task. It runs one task kind, "block", whose
// handler records its start and then blocks until it is cancelled.
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
	flag.Parse()
	var rdb redis.UniversalClient = redis.NewClient(&redis.Options{Addr: *addr})
	if *rawURL != "" {
		var err error
		if rdb, err = config.NewRedisClient(*rawURL, 5*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), ShutdownTimeout: time.Second,
		Queues: map[string]int{*queue: 1}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := w.Register(Block(rdb, *logKey)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
