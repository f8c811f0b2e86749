package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// enqueueGoroutines is W1's parallel producer count.
const enqueueGoroutines = 8

// runDeadline bounds one measured run, so a stuck run fails instead of
// hanging the bench.
const runDeadline = 3 * time.Minute

// runW1: enqueue N no-op tasks sequentially and from 8 goroutines.
func runW1(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	t := &Target{MinRatio: 0.85}
	var rows []Row
	for _, mode := range []struct {
		name string
		g    int
	}{{"enqueue, sequential", 1}, {fmt.Sprintf("enqueue, %d goroutines", enqueueGoroutines), enqueueGoroutines}} {
		b, a, err := runPair(ctx, env, o, "W1 "+mode.name,
			func(ctx context.Context) (figures, error) { return batonEnqueue(ctx, env, o.N, mode.g) },
			func(ctx context.Context) (figures, error) { return asynqEnqueue(ctx, env, o.N, mode.g) })
		if err != nil {
			return rows, "", err
		}
		rows = append(rows, newRow("W1", mode.name, "tasks/s", rates(b), "asynq", rates(a), t))
	}
	return rows, "", nil
}

// warmup enqueues a few tasks before the clock starts, so both sides have
// their connections dialled and their scripts loaded.
const warmup = 50

func batonEnqueue(ctx context.Context, env *redisEnv, n, g int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return figures{}, err
	}
	defer c.Close()
	enq := func(int) error {
		_, err := c.EnqueueKind(ctx, "noop", nil, nil)
		return err
	}
	if err := parallel(warmup, g, enq); err != nil {
		return figures{}, err
	}
	start := time.Now()
	if err := parallel(n, g, enq); err != nil {
		return figures{}, err
	}
	return figures{rate: float64(n) / time.Since(start).Seconds()}, nil
}

func asynqEnqueue(ctx context.Context, env *redisEnv, n, g int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	enq := func(int) error {
		_, err := c.EnqueueContext(ctx, asynq.NewTask("noop", baselinePayload("noop")))
		return err
	}
	if err := parallel(warmup, g, enq); err != nil {
		return figures{}, err
	}
	start := time.Now()
	if err := parallel(n, g, enq); err != nil {
		return figures{}, err
	}
	return figures{rate: float64(n) / time.Since(start).Seconds()}, nil
}
