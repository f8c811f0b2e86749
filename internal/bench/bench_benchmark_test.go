package bench

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
)

// Go benchmarks of the hot paths, for `go test -bench . -cpuprofile` on
// one side at a time:
//
//	go test -run '^$' -bench 'Enqueue/baton' -cpuprofile cpu.out ./internal/bench
//	go tool pprof -top cpu.out

func benchRedis(b *testing.B) (*redisEnv, *redis.Client) {
	b.Helper()
	env, err := startRedis(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(env.stop)
	rdb := env.client()
	b.Cleanup(func() { _ = rdb.Close() })
	return env, rdb
}

func batonClient(b *testing.B, rdb redis.UniversalClient) *baton.Client {
	b.Helper()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

func reportRate(b *testing.B, what string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), what+"/s")
}

// BenchmarkEnqueue is W1: one no-op task per op, sequentially and from
// parallel goroutines (-cpu sets GOMAXPROCS; RunParallel uses 8 per proc
// with SetParallelism).
func BenchmarkEnqueue(b *testing.B) {
	ctx := context.Background()
	b.Run("baton", func(b *testing.B) {
		_, rdb := benchRedis(b)
		c := batonClient(b, rdb)
		for b.Loop() {
			if _, err := c.EnqueueKind(ctx, "noop", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "tasks")
	})
	b.Run("asynq", func(b *testing.B) {
		_, rdb := benchRedis(b)
		c := asynq.NewClientFromRedisClient(rdb)
		for b.Loop() {
			if _, err := c.EnqueueContext(ctx, asynq.NewTask("noop", baselinePayload("noop"))); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "tasks")
	})
	b.Run("baton-parallel", func(b *testing.B) {
		_, rdb := benchRedis(b)
		c := batonClient(b, rdb)
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.EnqueueKind(ctx, "noop", nil, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, "tasks")
	})
	b.Run("asynq-parallel", func(b *testing.B) {
		_, rdb := benchRedis(b)
		c := asynq.NewClientFromRedisClient(rdb)
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.EnqueueContext(ctx, asynq.NewTask("noop", baselinePayload("noop"))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, "tasks")
	})
}

// BenchmarkProcess is W2: b.N (at least 100) pre-enqueued no-op tasks
// processed with results stored, concurrency 20; ns/op and tasks/s count
// the processing only. Use a fixed count: -benchtime 20000x.
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	b.Run("baton", func(b *testing.B) {
		env, _ := benchRedis(b)
		n := max(b.N, 100)
		f, err := batonProcess(ctx, env, n, ConcurrencyDefault)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(f.rate, "tasks/s")
		b.ReportMetric(1e9/f.rate, "ns/op") // processing only, not the pre-enqueue
	})
	b.Run("asynq", func(b *testing.B) {
		env, _ := benchRedis(b)
		n := max(b.N, 100)
		f, err := asynqProcess(ctx, env, n, ConcurrencyDefault)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(f.rate, "tasks/s")
		b.ReportMetric(1e9/f.rate, "ns/op") // processing only, not the pre-enqueue
	})
}

// BenchmarkRoundTrip is W5's round trip: enqueue one task and wait for its
// result, one at a time, through a worker with default settings (but the
// baseline's queue).
func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	_, rdb := benchRedis(b)
	noop := baton.NewTask("noop", func(context.Context, noopArgs) (noopResult, error) { return noopResult{OK: true}, nil }, nil)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: discardLogger(), ShutdownTimeout: 5 * time.Second, Queues: baselineQueues()})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Register(noop); err != nil {
		b.Fatal(err)
	}
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Shutdown)
	c := batonClient(b, rdb)
	for b.Loop() {
		h, err := noop.Enqueue(ctx, c, noopArgs{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
