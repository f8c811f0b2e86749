package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/batonhq/baton"
)

// The tasks every workload runs, on both sides: handlers that do nothing
// but pass their data on, so the figures are the queue's own cost.

type noopArgs struct{}

type noopResult struct {
	OK bool `json:"ok"`
}

// okJSON is noopResult{OK: true} as baton's typed task encodes it.
var okJSON = []byte(`{"ok":true}`)

// doc is the ~1 KB payload W3's steps hand on.
type doc struct {
	Data string `json:"data"`
}

// kb is ~1 KB of text.
var kb = strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing ", 20)[:1000]

type part struct {
	I int `json:"i"`
}

type summary struct {
	N int `json:"n"`
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// asynqLogger discards asynq's own logs, as baton's worker does with a
// discarding slog logger.
type asynqLogger struct{}

func (asynqLogger) Debug(...any) {}
func (asynqLogger) Info(...any)  {}
func (asynqLogger) Warn(...any)  {}
func (asynqLogger) Error(...any) {}
func (asynqLogger) Fatal(...any) {}

// asynqServer is the baseline's worker: the same concurrency, queue and
// poll interval as baton's.
func asynqServer(rdb redis.UniversalClient, concurrency int, poll time.Duration) *asynq.Server {
	return asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:       concurrency,
		Queues:            baselineQueues(),
		TaskCheckInterval: poll,
		ShutdownTimeout:   5 * time.Second,
		Logger:            asynqLogger{},
		LogLevel:          asynq.ErrorLevel,
	})
}

// baselineQueues are the queues every bench worker serves, baton's and
// asynq's alike: baton's default (default=6,llm=3,low=1) would poll two
// queues the baseline does not.
func baselineQueues() map[string]int { return map[string]int{baton.QueueDefault: 1} }

// batonWorker starts a baton worker with defs, observed by obs; the caller
// shuts it down.
func batonWorker(rdb redis.UniversalClient, concurrency int, obs []baton.Observer, defs ...baton.Definition) (*baton.Worker, error) {
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Concurrency: concurrency, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second,
		Queues: baselineQueues(), Observers: obs})
	if err != nil {
		return nil, err
	}
	if err := w.Register(defs...); err != nil {
		return nil, err
	}
	return w, nil
}

// baselineMsg is the raw asynq payload: the same fields baton's envelope
// carries for a no-op task (an id, the kind, the enqueue time).
type baselineMsg struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Enq  int64  `json:"enq"`
}

func baselinePayload(kind string) []byte {
	b, _ := json.Marshal(baselineMsg{ID: uuid.NewString(), Kind: kind, Enq: time.Now().UnixMilli()})
	return b
}

// counter counts handler runs and closes done at n.
type counter struct {
	n    int64
	c    atomic.Int64
	done chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), done: make(chan struct{})} }

func (c *counter) inc() {
	if c.c.Add(1) == c.n {
		close(c.done)
	}
}

// awaitDrained waits until the counter reached its count and asynq's
// pending and active lists of the default queue are empty: every task was
// acknowledged, so (for baton) its SUCCESS was recorded before.
func awaitDrained(ctx context.Context, rdb redis.UniversalClient, c *counter) error {
	select {
	case <-c.done:
	case <-ctx.Done():
		return fmt.Errorf("%d of %d tasks ran before the deadline: %w", c.c.Load(), c.n, ctx.Err())
	}
	for {
		pipe := rdb.Pipeline()
		p := pipe.LLen(ctx, "asynq:{default}:pending")
		a := pipe.LLen(ctx, "asynq:{default}:active")
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		if p.Val() == 0 && a.Val() == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

// parallel runs fn(i) for i in [0, n) from g goroutines and returns the
// first error; no call starts after it. Each goroutine takes every g-th i,
// so the load is g callers looping, as a client application's would be
// (not a goroutine started per call).
func parallel(n, g int, fn func(i int) error) error {
	eg, ctx := errgroup.WithContext(context.Background())
	for p := range g {
		eg.Go(func() error {
			for i := p; i < n && ctx.Err() == nil; i += g {
				if err := fn(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}
