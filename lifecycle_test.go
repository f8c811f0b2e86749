package baton_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

// TestStateTransitions checks that every state a task passes through is
// recorded, with its timestamps.
func TestStateTransitions(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)

	entered := make(chan string, 1)
	release := make(chan struct{})
	ran := newRunLog()
	task := baton.NewTask("states", func(ctx context.Context, mode string) (string, error) {
		id, _ := ran.begin(ctx)
		switch mode {
		case "block":
			entered <- id
			<-release
			return "done", nil
		case "flaky":
			return "", errors.New("flaky: try again")
		case "bad":
			return "", baton.Permanent(errors.New("bad input"))
		}
		return "ok", nil
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(time.Hour)})
	b.startWorker(t, nil, task)

	t.Run("PENDING", func(t *testing.T) {
		before := msTrunc(time.Now())
		h, err := task.Enqueue(ctx, b.client, "ok", &baton.EnqueueOpts{Countdown: time.Hour})
		require.NoError(t, err)
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, baton.Pending, rec.State)
		require.Equal(t, "states", rec.Kind)
		require.Equal(t, baton.QueueDefault, rec.Queue)
		require.False(t, rec.EnqueuedAt.Before(before), "enqueued %v before %v", rec.EnqueuedAt, before)
		require.False(t, rec.EnqueuedAt.After(time.Now()))
		require.True(t, rec.StartedAt.IsZero())
		require.True(t, rec.FinishedAt.IsZero())
		require.Zero(t, rec.Executions)
		require.Zero(t, ran.count(h.ID))
	})

	t.Run("STARTED then SUCCESS", func(t *testing.T) {
		h, err := task.Enqueue(ctx, b.client, "block", nil)
		require.NoError(t, err)
		require.Equal(t, h.ID, <-entered)
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, baton.Started, rec.State)
		require.False(t, rec.StartedAt.IsZero())
		require.False(t, rec.StartedAt.Before(rec.EnqueuedAt))
		require.True(t, rec.FinishedAt.IsZero())
		require.Equal(t, 1, rec.Executions)

		close(release)
		rec, err = h.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, `"done"`, string(rec.Result))
		require.Empty(t, rec.Error)
		require.False(t, rec.FinishedAt.Before(rec.StartedAt))
		require.Equal(t, rec.FinishedAt.Sub(rec.StartedAt), rec.Duration())
	})

	t.Run("RETRY", func(t *testing.T) {
		h, err := task.Enqueue(ctx, b.client, "flaky", nil)
		require.NoError(t, err)
		rec := waitState(t, b, h.ID, baton.Retry)
		require.Contains(t, rec.Error, "flaky: try again")
		require.Equal(t, 1, rec.Retries)
		require.Equal(t, 1, rec.Executions)
		require.False(t, rec.StartedAt.IsZero())
		require.True(t, rec.FinishedAt.IsZero(), "a RETRY is not finished")
		requireWithin(t, time.Until(rec.NextTryAt), 50*time.Minute, time.Hour, "NextTryAt - now")
	})

	t.Run("FAILURE", func(t *testing.T) {
		h, err := task.Enqueue(ctx, b.client, "bad", nil)
		require.NoError(t, err)
		rec, err := h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "bad input")
		require.Equal(t, baton.Failure, rec.State)
		require.Equal(t, "bad input", rec.Error)
		require.False(t, rec.StartedAt.IsZero())
		require.False(t, rec.FinishedAt.Before(rec.StartedAt))
	})

	t.Run("REVOKED", func(t *testing.T) {
		// asynq schedules to the whole second, so a countdown can end up to
		// 1s early: 1.2s keeps the delivery well after the expiry.
		h, err := task.Enqueue(ctx, b.client, "ok", &baton.EnqueueOpts{ExpiresIn: time.Millisecond, Countdown: 1200 * time.Millisecond})
		require.NoError(t, err)
		rec, err := h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Revoked, "expired")
		require.ErrorIs(t, err, baton.ErrRevoked)
		require.Equal(t, baton.Revoked, rec.State)
		require.False(t, rec.FinishedAt.IsZero())
		require.Zero(t, ran.count(h.ID))
	})
}

// TestWorkerDefaultQueues: a worker given no queues serves default, llm
// and low, the queues of `baton worker`, so a library user's worker runs
// the analyze task (queue llm) as well as the fetch task (queue default).
func TestWorkerDefaultQueues(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	double := func(q string) *baton.Task[int, int] {
		return baton.NewTask("double-"+q, func(_ context.Context, n int) (int, error) { return 2 * n, nil }, &baton.TaskOptions{Queue: q})
	}
	onDefault, onLLM, onLow := double(baton.QueueDefault), double(tasks.AnalyzeQueue), double("low")
	b.startWorker(t, nil, onDefault, onLLM, onLow)
	for _, task := range []*baton.Task[int, int]{onDefault, onLLM, onLow} {
		h, err := task.Enqueue(ctx, b.client, 21, nil)
		require.NoError(t, err)
		got, err := h.Get(ctx)
		require.NoError(t, err, task.Kind())
		require.Equal(t, 42, got, task.Kind())
	}
}

// TestDefaultsAndOverrides checks that per-call options override a task's
// registered defaults, and that the defaults hold otherwise.
func TestDefaultsAndOverrides(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ran := newRunLog()
	type probeArgs struct{ Block bool }
	probe := baton.NewTask("probe", func(ctx context.Context, a probeArgs) (int, error) {
		ran.begin(ctx)
		if a.Block {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 0, errors.New("always fails")
	}, &baton.TaskOptions{Queue: "critical", MaxRetries: 1, RetryDelay: baton.FixedDelay(time.Millisecond), Timeout: time.Second})
	b.startWorker(t, &baton.WorkerOptions{Queues: map[string]int{"critical": 1, "low": 1}}, probe)

	intp := func(n int) *int { return &n }
	cases := []struct {
		name      string
		args      probeArgs
		opts      *baton.EnqueueOpts
		wantQueue string
		attempts  int
		wantErr   string
	}{
		{"defaults", probeArgs{}, nil, "critical", 2, "always fails (gave up after 2 attempts)"},
		{"queue override", probeArgs{}, &baton.EnqueueOpts{Queue: "low"}, "low", 2, "always fails"},
		{"more retries", probeArgs{}, &baton.EnqueueOpts{MaxRetries: intp(3)}, "critical", 4, "gave up after 4 attempts"},
		{"no retries", probeArgs{}, &baton.EnqueueOpts{MaxRetries: intp(0)}, "critical", 1, "always fails"},
		{"default timeout", probeArgs{Block: true}, &baton.EnqueueOpts{MaxRetries: intp(0)}, "critical", 1, "timed out after 1s"},
		{"timeout override", probeArgs{Block: true}, &baton.EnqueueOpts{MaxRetries: intp(0), Timeout: 100 * time.Millisecond}, "critical", 1, "timed out after 100ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := probe.Enqueue(ctx, b.client, tc.args, tc.opts)
			require.NoError(t, err)
			require.Equal(t, tc.wantQueue, h.Queue)
			rec, err := h.Wait(ctx)
			_ = requireTaskError(t, err, baton.Failure, tc.wantErr)
			runs := ran.get(h.ID)
			require.Len(t, runs, tc.attempts)
			for _, r := range runs {
				require.Equal(t, tc.wantQueue, r.queue, "InfoFrom(ctx).Queue")
			}
			require.Equal(t, tc.wantQueue, rec.Queue)
			require.Equal(t, tc.attempts, rec.Executions)
			require.Equal(t, tc.attempts-1, rec.Retries)
		})
	}
	t.Run("retry delay override", func(t *testing.T) {
		t.Parallel()
		h, err := probe.Enqueue(ctx, b.client, probeArgs{}, &baton.EnqueueOpts{RetryDelay: baton.FixedDelay(time.Hour)})
		require.NoError(t, err)
		rec := waitState(t, b, h.ID, baton.Retry)
		requireWithin(t, time.Until(rec.NextTryAt), 50*time.Minute, time.Hour, "NextTryAt - now")
	})
}

// TestRetryDelays checks the recorded NextTryAt of each retry against the
// policy: next try - the moment the attempt failed ≈ the policy's delay.
func TestRetryDelays(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ran := newRunLog()
	flaky := baton.NewTask("flaky", func(ctx context.Context, _ struct{}) (int, error) {
		id, i := ran.begin(ctx)
		defer ran.end(id, i)
		return 0, fmt.Errorf("attempt %d failed", i+1)
	}, nil)
	b.startWorker(t, nil, flaky)

	// slack covers the time between the handler returning and the worker
	// computing the next try (a loaded -race run); -1ms is the timestamps'
	// millisecond truncation.
	const slack = 250 * time.Millisecond
	intp := func(n int) *int { return &n }

	// observe waits for retry k (1-based) to be recorded and returns its
	// delay measured from the failure of attempt k.
	observe := func(t *testing.T, id string, k int) time.Duration {
		rec := waitRecord(t, b, id, fmt.Sprintf("retry %d recorded", k), func(r *baton.Record) bool {
			return r.State == baton.Retry && r.Retries == k
		})
		require.Contains(t, rec.Error, fmt.Sprintf("attempt %d failed", k))
		runs := ran.get(id)
		require.GreaterOrEqual(t, len(runs), k)
		return rec.NextTryAt.Sub(runs[k-1].end)
	}

	t.Run("fixed", func(t *testing.T) {
		t.Parallel()
		h, err := flaky.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: intp(1), RetryDelay: baton.FixedDelay(10 * time.Minute)})
		require.NoError(t, err)
		requireWithin(t, observe(t, h.ID, 1), 10*time.Minute-time.Millisecond, 10*time.Minute+slack, "fixed delay")
	})

	t.Run("backoff doubles and caps", func(t *testing.T) {
		t.Parallel()
		p := baton.Backoff(200*time.Millisecond, 500*time.Millisecond)
		p.NoJitter = true
		h, err := flaky.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: intp(3), RetryDelay: p})
		require.NoError(t, err)
		for k, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond} {
			requireWithin(t, observe(t, h.ID, k+1), want-time.Millisecond, want+slack, fmt.Sprintf("retry %d", k+1))
		}
		_, err = h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "attempt 4 failed", "gave up after 4 attempts")
		require.Len(t, ran.get(h.ID), 4)
	})

	t.Run("backoff with jitter", func(t *testing.T) {
		t.Parallel()
		h, err := flaky.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: intp(1), RetryDelay: baton.Backoff(10*time.Second, time.Minute)})
		require.NoError(t, err)
		requireWithin(t, observe(t, h.ID, 1), 8*time.Second-time.Millisecond, 12*time.Second+slack, "jittered first retry")
	})

	t.Run("default policy", func(t *testing.T) {
		t.Parallel()
		// Backoff from 1s with ±20% jitter.
		h, err := flaky.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: intp(1)})
		require.NoError(t, err)
		requireWithin(t, observe(t, h.ID, 1), 800*time.Millisecond-time.Millisecond, 1200*time.Millisecond+slack, "default first retry")
	})
}

// TestRetryAfter checks that a handler's RetryAfter wins over the policy,
// is recorded, is honoured by the queue, and still counts against MaxRetries.
func TestRetryAfter(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ran := newRunLog()
	limited := baton.NewTask("limited", func(ctx context.Context, _ struct{}) (string, error) {
		id, i := ran.begin(ctx)
		defer ran.end(id, i)
		if i == 0 {
			return "", baton.RetryAfter(3*time.Second, errors.New("rate limited"))
		}
		return "through", nil
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(time.Hour)})
	b.startWorker(t, nil, limited)

	t.Run("recorded and honoured", func(t *testing.T) {
		t.Parallel()
		h, err := limited.Enqueue(ctx, b.client, struct{}{}, nil)
		require.NoError(t, err)
		rec := waitState(t, b, h.ID, baton.Retry)
		require.Equal(t, "rate limited", rec.Error)
		runs := ran.get(h.ID)
		require.Len(t, runs, 1)
		requireWithin(t, rec.NextTryAt.Sub(runs[0].end), 3*time.Second-time.Millisecond, 3*time.Second+250*time.Millisecond, "RetryAfter delay")

		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "through", got)
		require.Len(t, ran.get(h.ID), 2)
		// That the second attempt did not start early: TestNeverEarly.
	})

	t.Run("counts against MaxRetries", func(t *testing.T) {
		t.Parallel()
		zero := 0
		h, err := limited.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: &zero})
		require.NoError(t, err)
		_, err = h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "rate limited")
		require.Equal(t, 1, ran.count(h.ID))
	})
}

// TestPermanentFailure: one attempt, FAILURE, the payload kept.
func TestPermanentFailure(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 15*time.Second)
	ran := newRunLog()
	reject := baton.NewTask("reject", func(ctx context.Context, a addArgs) (int, error) {
		ran.begin(ctx)
		return 0, baton.Permanent(fmt.Errorf("refusing %d+%d", a.A, a.B))
	}, &baton.TaskOptions{MaxRetries: 5, RetryDelay: baton.FixedDelay(time.Millisecond)})
	b.startWorker(t, nil, reject)

	h, err := reject.Enqueue(ctx, b.client, addArgs{A: 1, B: 2}, nil)
	require.NoError(t, err)
	rec, err := h.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, "refusing 1+2")
	require.NotContains(t, rec.Error, "gave up", "a permanent error is not a retry exhaustion")
	require.Equal(t, 1, ran.count(h.ID))
	require.Equal(t, 1, rec.Executions)
	require.Zero(t, rec.Retries)
	require.JSONEq(t, `{"A":1,"B":2}`, string(rec.Payload))
}

// TestPanicIsFailure: a panicking handler fails its task and the worker
// goes on with the next one.
func TestPanicIsFailure(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 15*time.Second)
	maybePanic := baton.NewTask("maybe_panic", func(ctx context.Context, n int) (int, error) {
		if n < 0 {
			panic(fmt.Sprintf("negative input %d", n))
		}
		return n * 2, nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 1}, maybePanic)

	h, err := maybePanic.Enqueue(ctx, b.client, -7, nil)
	require.NoError(t, err)
	rec, err := h.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, "panic: negative input -7")
	require.Equal(t, 1, rec.Executions)
	require.JSONEq(t, `-7`, string(rec.Payload))

	h2, err := maybePanic.Enqueue(ctx, b.client, 21, nil)
	require.NoError(t, err)
	got, err := h2.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 42, got)
}

// TestExpiry: a task not started by its expiry is REVOKED without running.
func TestExpiry(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 15*time.Second)
	ran := newRunLog()
	task := baton.NewTask("perishable", func(ctx context.Context, _ struct{}) (string, error) {
		ran.begin(ctx)
		return "fresh", nil
	}, nil)
	b.startWorker(t, nil, task)

	cases := []struct {
		name string
		opts *baton.EnqueueOpts
	}{
		// asynq schedules to the whole second, so a countdown can end up to
		// 1s early: 1.2s keeps every delivery well after the expiry.
		{"ExpiresIn", &baton.EnqueueOpts{ExpiresIn: time.Millisecond, Countdown: 1200 * time.Millisecond}},
		{"Expires", &baton.EnqueueOpts{Expires: time.Now().Add(time.Millisecond), Countdown: 1200 * time.Millisecond}},
		{"ETA after Expires", &baton.EnqueueOpts{Expires: time.Now().Add(time.Millisecond), ETA: time.Now().Add(1200 * time.Millisecond)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := task.Enqueue(ctx, b.client, struct{}{}, tc.opts)
			require.NoError(t, err)
			rec, err := h.Wait(ctx)
			_ = requireTaskError(t, err, baton.Revoked, "expired")
			require.ErrorIs(t, err, baton.ErrRevoked)
			require.NotErrorIs(t, err, baton.ErrCancelled)
			require.Equal(t, baton.Revoked, rec.State)
			require.Zero(t, ran.count(h.ID), "an expired task's handler never runs")
		})
	}
	t.Run("started before expiry runs", func(t *testing.T) {
		t.Parallel()
		h, err := task.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{ExpiresIn: time.Hour})
		require.NoError(t, err)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "fresh", got)
	})
}

// TestTimeout: an attempt is bounded by its Timeout, whether the handler
// honours its context or not.
func TestTimeout(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	release := make(chan struct{})
	stubbornEntered := make(chan struct{}, 1)
	stubbornReturned := make(chan struct{})
	t.Cleanup(func() { // do not leak the abandoned handler if the test fails early
		select {
		case <-release:
		default:
			close(release)
		}
	})
	polite := baton.NewTask("polite", func(ctx context.Context, _ struct{}) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, &baton.TaskOptions{Timeout: 100 * time.Millisecond})
	stubborn := baton.NewTask("stubborn", func(ctx context.Context, _ struct{}) (int, error) {
		defer close(stubbornReturned)
		stubbornEntered <- struct{}{}
		<-release // ignores ctx
		return 1, nil
	}, &baton.TaskOptions{Timeout: 100 * time.Millisecond})
	quick := baton.NewTask("quick", func(ctx context.Context, n int) (int, error) { return n, nil }, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 2}, polite, stubborn, quick)

	t.Run("handler honours ctx: FAILURE", func(t *testing.T) {
		h, err := polite.Enqueue(ctx, b.client, struct{}{}, nil)
		require.NoError(t, err)
		_, err = h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "timed out after 100ms")
	})

	t.Run("handler honours ctx: RETRY", func(t *testing.T) {
		one := 1
		h, err := polite.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{MaxRetries: &one, RetryDelay: baton.FixedDelay(time.Hour)})
		require.NoError(t, err)
		rec := waitState(t, b, h.ID, baton.Retry)
		require.Contains(t, rec.Error, "timed out after 100ms")
	})

	t.Run("handler ignores ctx: abandoned", func(t *testing.T) {
		h, err := stubborn.Enqueue(ctx, b.client, struct{}{}, nil)
		require.NoError(t, err)
		<-stubbornEntered
		rec, err := h.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "timed out after 100ms", "abandoned")
		require.Equal(t, baton.Failure, rec.State)

		// The worker goes on while the abandoned handler still blocks.
		select {
		case <-stubbornReturned:
			t.Fatal("the stubborn handler returned before it was released")
		default:
		}
		h2, err := quick.Enqueue(ctx, b.client, 5, nil)
		require.NoError(t, err)
		got, err := h2.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 5, got)

		// Its late return changes nothing.
		close(release)
		<-stubbornReturned
		rec, err = b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, baton.Failure, rec.State)
		require.Empty(t, rec.Result)
	})
}

// TestMaxRetriesExhausted: MaxRetries 2 means exactly 3 attempts.
func TestMaxRetriesExhausted(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 15*time.Second)
	ran := newRunLog()
	always := baton.NewTask("always_fails", func(ctx context.Context, _ struct{}) (int, error) {
		_, i := ran.begin(ctx)
		return 0, fmt.Errorf("attempt %d failed", i+1)
	}, &baton.TaskOptions{MaxRetries: 2, RetryDelay: baton.FixedDelay(time.Millisecond)})
	b.startWorker(t, nil, always)

	h, err := always.Enqueue(ctx, b.client, struct{}{}, nil)
	require.NoError(t, err)
	rec, err := h.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, "attempt 3 failed", "gave up after 3 attempts")
	require.Equal(t, 3, ran.count(h.ID))
	require.Equal(t, 3, rec.Executions)
	require.Equal(t, 2, rec.Retries)
	require.Equal(t, "attempt 3 failed (gave up after 3 attempts)", rec.Error)
	require.JSONEq(t, `{}`, string(rec.Payload))
}

// TestNeverEarly: no attempt starts before the time the caller asked for
// (Countdown) or the backend recorded (NextTryAt of a RETRY, here from a
// handler honouring an upstream Retry-After). Several tasks, so that a
// delivery rounded to the whole second cannot pass by luck.
func TestNeverEarly(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ran := newRunLog()
	task := baton.NewTask("punctual", func(ctx context.Context, retry bool) (int, error) {
		id, i := ran.begin(ctx)
		defer ran.end(id, i)
		if retry && i == 0 {
			return 0, baton.RetryAfter(1500*time.Millisecond, errors.New("429 Too Many Requests"))
		}
		return i, nil
	}, &baton.TaskOptions{MaxRetries: 1})
	b.startWorker(t, nil, task)

	const n = 5
	t.Run("Countdown", func(t *testing.T) {
		t.Parallel()
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				h, err := task.Enqueue(ctx, b.client, false, &baton.EnqueueOpts{Countdown: 1500 * time.Millisecond})
				require.NoError(t, err)
				rec, err := h.Wait(ctx)
				require.NoError(t, err)
				runs := ran.get(h.ID)
				require.Len(t, runs, 1)
				due := rec.EnqueuedAt.Add(1500 * time.Millisecond)
				require.False(t, runs[0].start.Before(due), "started %v early", due.Sub(runs[0].start))
			})
		}
	})
	t.Run("RetryAfter", func(t *testing.T) {
		t.Parallel()
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				h, err := task.Enqueue(ctx, b.client, true, nil)
				require.NoError(t, err)
				rec := waitState(t, b, h.ID, baton.Retry)
				_, err = h.Wait(ctx)
				require.NoError(t, err)
				runs := ran.get(h.ID)
				require.Len(t, runs, 2)
				require.False(t, runs[1].start.Before(rec.NextTryAt), "retry started %v before its recorded NextTryAt", rec.NextTryAt.Sub(runs[1].start))
			})
		}
	})
}
