package batontest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
)

// BenchmarkDrain is the cost of one drain of one task: starting the
// worker, running the task, seeing the queues idle, stopping the worker.
func BenchmarkDrain(b *testing.B) {
	for _, mode := range []struct{ name, url string }{{"Real", redisURL}, {"Embedded", ""}} {
		b.Run(mode.name, func(b *testing.B) {
			env := batontest.New(b, &batontest.Options{RedisURL: mode.url})
			env.Register(double)
			ctx := context.Background()
			for b.Loop() {
				if _, err := double.Enqueue(ctx, env.Client(), 1, nil); err != nil {
					b.Fatal(err)
				}
				if err := env.Drain(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDrainFastForwardedRetry is a task whose first attempt fails
// and whose retry is due in a minute, drained with Options.FastForward.
func BenchmarkDrainFastForwardedRetry(b *testing.B) {
	env := batontest.New(b, &batontest.Options{RedisURL: redisURL, FastForward: true})
	task := baton.NewTask("bt.retry-once", func(ctx context.Context, _ int) (int, error) {
		if info, _ := baton.InfoFrom(ctx); info.Retries == 0 {
			return 0, errors.New("first attempt fails")
		}
		return 1, nil
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(time.Minute)})
	env.Register(task)
	ctx := context.Background()
	for b.Loop() {
		h, err := task.Enqueue(ctx, env.Client(), 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := env.Drain(ctx); err != nil {
			b.Fatal(err)
		}
		if rec, err := h.Record(ctx); err != nil || rec.State != baton.Success {
			b.Fatalf("record %+v, %v", rec, err)
		}
	}
}
