package batontest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
)

type addArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

var add = baton.NewTask("bt.add", func(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil }, nil)

// flaky fails its first two attempts, then succeeds; its retries wait a
// minute each.
func flaky(calls *atomic.Int32) *baton.Task[string, string] {
	return baton.NewTask("bt.flaky", func(_ context.Context, s string) (string, error) {
		if calls.Add(1) <= 2 {
			return "", errors.New("upstream unavailable")
		}
		return "ok " + s, nil
	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.FixedDelay(time.Minute)})
}

func TestDrain(t *testing.T) {
	t.Parallel()

	t.Run("RunsTasksAndTheTasksTheyEnqueue", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		var child string
		parent := baton.NewTask("bt.parent", func(ctx context.Context, n int) (string, error) {
			h, err := add.Enqueue(ctx, env.Client(), addArgs{A: n, B: 1}, nil)
			if err != nil {
				return "", err
			}
			child = h.ID
			return h.ID, nil
		}, nil)
		env.Register(parent, add)
		h, err := parent.Enqueue(ctx, env.Client(), 41, nil)
		require.NoError(t, err)

		env.DrainUntilIdle(t)
		batontest.RequireRecord(t, env, h.ID, baton.Success)
		rec := batontest.RequireRecord(t, env, child, baton.Success)
		require.JSONEq(t, "42", string(rec.Result))
		queued, err := env.Queued(ctx)
		require.NoError(t, err)
		require.Empty(t, queued, "succeeded tasks leave the queues")
	})

	t.Run("WaitsOutNothingWithoutFastForward", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		var calls atomic.Int32
		task := flaky(&calls)
		env.Register(task)
		h, err := task.Enqueue(ctx, env.Client(), "x", nil)
		require.NoError(t, err)

		// The first attempt fails; its retry is a minute away, not due.
		env.DrainUntilIdle(t)
		rec := batontest.RequireRecord(t, env, h.ID, baton.Retry)
		require.Equal(t, "upstream unavailable", rec.Error)
		left := batontest.RequireEnqueued(t, env, "bt.flaky", "x", nil)
		require.Equal(t, "retry", left[0].State)
		require.Equal(t, int32(1), calls.Load())

		// Fast-forward on demand: both retries run in the next drains.
		for range 2 {
			n, err := env.FastForward(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.NoError(t, env.Drain(ctx))
		}
		rec = batontest.RequireRecord(t, env, h.ID, baton.Success)
		require.JSONEq(t, `"ok x"`, string(rec.Result))
		require.Equal(t, 2, rec.Retries)
	})

	t.Run("FastForwardRunsRetriesAndCountdownsAtOnce", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, &batontest.Options{FastForward: true})
		ctx := ctxTimeout(t, 20*time.Second)
		var calls atomic.Int32
		task := flaky(&calls)
		env.Register(task, add)
		h, err := task.Enqueue(ctx, env.Client(), "y", nil)
		require.NoError(t, err)
		later, err := add.Enqueue(ctx, env.Client(), addArgs{A: 1, B: 1}, &baton.EnqueueOpts{Countdown: time.Hour})
		require.NoError(t, err)

		env.DrainUntilIdle(t)
		rec := batontest.RequireRecord(t, env, h.ID, baton.Success)
		require.Equal(t, 2, rec.Retries)
		require.Equal(t, int32(3), calls.Load())
		batontest.RequireRecord(t, env, later.ID, baton.Success)
	})

	t.Run("LeavesScheduledTasksForLater", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		env.Register(add)
		h, err := add.Enqueue(ctx, env.Client(), addArgs{A: 1, B: 2}, &baton.EnqueueOpts{Countdown: time.Hour})
		require.NoError(t, err)
		env.DrainUntilIdle(t)
		batontest.RequireRecord(t, env, h.ID, baton.Pending)
		got := batontest.RequireEnqueued(t, env, "bt.add", addArgs{A: 1, B: 2}, nil)
		require.Equal(t, "scheduled", got[0].State)
		require.WithinDuration(t, time.Now().Add(time.Hour), got[0].NextRunAt, time.Minute)
	})

	t.Run("ConsumesEveryQueueTasksLandOn", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		relay := baton.NewTask("bt.relay", func(ctx context.Context, n int) (int, error) {
			_, err := add.Enqueue(ctx, env.Client(), addArgs{A: n, B: n}, &baton.EnqueueOpts{Queue: "second", ID: "relayed"})
			return n, err
		}, &baton.TaskOptions{Queue: "first"})
		env.Register(relay, add)
		h, err := relay.Enqueue(ctx, env.Client(), 4, nil)
		require.NoError(t, err)
		env.DrainUntilIdle(t)
		batontest.RequireRecord(t, env, h.ID, baton.Success)
		rec := batontest.RequireRecord(t, env, "relayed", baton.Success)
		require.Equal(t, "second", rec.Queue)
	})

	t.Run("FixedQueuesLeaveOthersAlone", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, &batontest.Options{Worker: &baton.WorkerOptions{Queues: map[string]int{"mine": 1}}})
		ctx := ctxTimeout(t, 20*time.Second)
		env.Register(add)
		mine, err := add.Enqueue(ctx, env.Client(), addArgs{A: 1}, &baton.EnqueueOpts{Queue: "mine"})
		require.NoError(t, err)
		theirs, err := add.Enqueue(ctx, env.Client(), addArgs{A: 2}, &baton.EnqueueOpts{Queue: "theirs"})
		require.NoError(t, err)
		env.DrainUntilIdle(t)
		batontest.RequireRecord(t, env, mine.ID, baton.Success)
		batontest.RequireRecord(t, env, theirs.ID, baton.Pending)
		batontest.RequireEnqueued(t, env, "bt.add", addArgs{A: 2}, &batontest.RequireOpts{Queue: "theirs", Count: 1})
	})

	t.Run("FailsAKindWithoutHandler", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		env.Register(add)
		h, err := env.Client().EnqueueKind(ctx, "bt.unregistered", map[string]string{"to": "ada"}, nil)
		require.NoError(t, err)
		env.DrainUntilIdle(t)
		rec := batontest.RequireRecord(t, env, h.ID, baton.Failure)
		require.Contains(t, rec.Error, `unknown task kind "bt.unregistered"`)
		got := batontest.RequireEnqueued(t, env, "bt.unregistered", map[string]string{"to": "ada"}, nil)
		require.Equal(t, "archived", got[0].State, "asynq keeps a task that failed for good")
	})

	t.Run("RegisterAfterADrain", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		env.Register(add)
		env.DrainUntilIdle(t) // nothing to do: no worker starts
		double := baton.NewTask("bt.double", func(_ context.Context, n int) (int, error) { return 2 * n, nil }, nil)
		env.Register(double)
		h, err := double.Enqueue(ctx, env.Client(), 21, nil)
		require.NoError(t, err)
		env.DrainUntilIdle(t)
		require.JSONEq(t, "42", string(batontest.RequireRecord(t, env, h.ID, baton.Success).Result))
	})
}

// blocking is a task whose handler blocks until its context ends (the
// drain's worker stopping); started receives once per attempt.
func blocking(kind string) (*baton.Task[int, int], chan struct{}) {
	started := make(chan struct{}, 1)
	return baton.NewTask(kind, func(ctx context.Context, _ int) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil), started
}

// drainUntilStarted drains env and cancels the drain once a blocking task
// has started, returning the drain's error.
func drainUntilStarted(ctx context.Context, env *batontest.Env, started <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-started:
			cancel()
		case <-ctx.Done():
		}
	}()
	return env.Drain(ctx)
}

// A drain that runs out of time says which tasks are left, in what state.
func TestDrainTimeoutListsWhatIsLeft(t *testing.T) {
	t.Parallel()
	env := newEnv(t, &batontest.Options{Worker: &baton.WorkerOptions{Concurrency: 1, ShutdownTimeout: 100 * time.Millisecond}})
	ctx := ctxTimeout(t, 20*time.Second)
	stuck, started := blocking("bt.stuck")
	env.Register(stuck)
	first, err := stuck.Enqueue(ctx, env.Client(), 1, nil)
	require.NoError(t, err)
	second, err := stuck.Enqueue(ctx, env.Client(), 2, nil)
	require.NoError(t, err)

	err = drainUntilStarted(ctx, env, started)
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "context canceled with 2 task(s) left on the queues the worker consumes (default)")
	require.Regexp(t, `default\s+active\s+kind=bt.stuck id=`+first.ID+` args=1`, msg)
	require.Regexp(t, `default\s+pending\s+kind=bt.stuck id=`+second.ID+` args=2`, msg)
}

// The drain's listing of a retry names its due time, its error and the
// option that would run it.
func TestDrainTimeoutNamesFastForward(t *testing.T) {
	t.Parallel()
	env := newEnv(t, &batontest.Options{Worker: &baton.WorkerOptions{ShutdownTimeout: 100 * time.Millisecond}})
	ctx := ctxTimeout(t, 20*time.Second)
	var calls atomic.Int32
	task := flaky(&calls)
	block, started := blocking("bt.block")
	env.Register(task, block)
	_, err := task.Enqueue(ctx, env.Client(), "z", nil)
	require.NoError(t, err)
	env.DrainUntilIdle(t)
	// A stuck task keeps the next drain busy until its context ends.
	_, err = block.Enqueue(ctx, env.Client(), 0, nil)
	require.NoError(t, err)
	err = drainUntilStarted(ctx, env, started)
	require.Error(t, err)
	require.Regexp(t, `default\s+retry\s+kind=bt.flaky id=\S+ args="z" due=in (59s|1m0s) retried=1 last_error="upstream unavailable"`, err.Error())
	require.Contains(t, err.Error(), "Options.FastForward runs them at once")
}
