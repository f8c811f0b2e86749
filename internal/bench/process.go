package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// runW2: process N pre-enqueued no-op tasks, results stored, from worker
// start until every task is acknowledged (baton: recorded SUCCESS).
func runW2(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	b, a, err := runPair(ctx, env, o, "W2 process",
		func(ctx context.Context) (figures, error) { return batonProcess(ctx, env, o.N, o.Concurrency) },
		func(ctx context.Context) (figures, error) { return asynqProcess(ctx, env, o.N, o.Concurrency) })
	if err != nil {
		return nil, "", err
	}
	name := fmt.Sprintf("process, results stored, c=%d", o.Concurrency)
	return []Row{newRow("W2", name, "tasks/s", rates(b), "asynq", rates(a), &Target{MinRatio: 0.85})}, "", nil
}

func batonProcess(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	return batonProcessWith(ctx, env, n, conc, nil)
}

// batonProcessWith is batonProcess with the no-op task registered with
// opts (W9 gives it limits); it also counts the script calls per task.
func batonProcessWith(ctx context.Context, env *redisEnv, n, conc int, opts *baton.TaskOptions) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return figures{}, err
	}
	defer c.Close()
	ids := make([]string, n)
	if err := parallel(n, enqueueGoroutines, func(i int) error {
		h, err := c.EnqueueKind(ctx, "noop", nil, nil)
		if err == nil {
			ids[i] = h.ID
		}
		return err
	}); err != nil {
		return figures{}, fmt.Errorf("pre-enqueue: %w", err)
	}

	cnt := newCounter(n)
	noop := baton.NewTask("noop", func(context.Context, noopArgs) (noopResult, error) {
		cnt.inc()
		return noopResult{OK: true}, nil
	}, opts)
	wrdb := env.client()
	defer wrdb.Close()
	w, err := batonWorker(wrdb, conc, env.observers, noop)
	if err != nil {
		return figures{}, err
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return figures{}, err
	}
	start := time.Now()
	if err := w.Start(); err != nil {
		return figures{}, err
	}
	err = awaitDrained(ctx, rdb, cnt)
	elapsed := time.Since(start)
	w.Shutdown()
	if err != nil {
		return figures{}, err
	}
	cmds, err := scriptCalls(ctx, rdb)
	if err != nil {
		return figures{}, err
	}
	if err := verifySuccess(ctx, c, ids); err != nil {
		return figures{}, err
	}
	return figures{rate: float64(n) / elapsed.Seconds(), perTask: float64(cmds) / float64(n)}, nil
}

// verifySuccess checks, outside the clock, that every task is SUCCESS.
func verifySuccess(ctx context.Context, c *baton.Client, ids []string) error {
	for lo := 0; lo < len(ids); lo += 1000 {
		recs, err := c.Backend().GetMany(ctx, ids[lo:min(lo+1000, len(ids))])
		if err != nil {
			return err
		}
		for i, r := range recs {
			if r == nil || r.State != baton.Success {
				return fmt.Errorf("task %s is not SUCCESS after the run: %+v", ids[lo+i], r)
			}
		}
	}
	return nil
}

func asynqProcess(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	if err := parallel(n, enqueueGoroutines, func(int) error {
		_, err := c.EnqueueContext(ctx, asynq.NewTask("noop", baselinePayload("noop")), asynq.Retention(time.Hour))
		return err
	}); err != nil {
		return figures{}, fmt.Errorf("pre-enqueue: %w", err)
	}

	cnt := newCounter(n)
	handler := asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		var m baselineMsg
		if err := json.Unmarshal(t.Payload(), &m); err != nil {
			return err
		}
		if _, err := t.ResultWriter().Write(okJSON); err != nil {
			return err
		}
		cnt.inc()
		return nil
	})
	wrdb := env.client()
	defer wrdb.Close()
	srv := asynqServer(wrdb, conc, time.Second)
	start := time.Now()
	if err := srv.Start(handler); err != nil {
		return figures{}, err
	}
	err := awaitDrained(ctx, rdb, cnt)
	elapsed := time.Since(start)
	srv.Shutdown()
	if err != nil {
		return figures{}, err
	}
	if got := rdb.ZCard(ctx, "asynq:{default}:completed").Val(); got != int64(n) {
		return figures{}, fmt.Errorf("%d of %d results kept after the run", got, n)
	}
	return figures{rate: float64(n) / elapsed.Seconds()}, nil
}
