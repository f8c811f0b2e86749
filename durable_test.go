package baton_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// Durable tasks in one process: events, timeouts, signals, determinism,
// limits, cancel, Map, RunStep retries, composition with canvases and other
// durable tasks. Process kills are in durable_process_test.go.

// counter counts calls per key.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[key]++
	return c.n[key]
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// waitWaiting waits until run id is WAITING with a "waiting" text starting
// with what.
func waitWaiting(t *testing.T, b *bundle, id, what string) *baton.Record {
	t.Helper()
	return waitRecord(t, b, id, "run "+id+" waits for "+what, func(r *baton.Record) bool {
		return r.State == baton.Waiting && strings.HasPrefix(r.Waiting, what)
	})
}

var dDouble = baton.NewTask("d.dDouble", func(ctx context.Context, n int) (int, error) { return 2 * n, nil }, nil)

func TestDurableEventBeforeWait(t *testing.T) {
	t.Run("before the run starts", func(t *testing.T) {
		b := setup(t)
		run := baton.NewDurable("ev.early", func(dc *baton.Durable, _ int) (string, error) {
			return baton.WaitEvent[string](dc, "go", time.Minute)
		}, &baton.TaskOptions{Events: []string{"go"}})
		ctx := ctxTimeout(t, 20*time.Second)
		b.client.Declare(run) // the producer knows the task's events
		h, err := run.Enqueue(ctx, b.client, 0, nil)
		require.NoError(t, err)
		require.NoError(t, b.client.Signal(ctx, h.ID, "go", "early"))
		require.ErrorIs(t, b.client.Signal(ctx, h.ID, "go", "again"), baton.ErrEventPending)
		require.ErrorIs(t, b.client.Signal(ctx, h.ID, "nope", 1), baton.ErrUnknownEvent)

		b.startWorker(t, nil, run)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "early", got)
		rec := durRecord(t, ctx, b.client, h.ID)
		require.Equal(t, 1, rec.Executions, "the wait found its event: the run never parked")
	})
	t.Run("while the run works before its wait", func(t *testing.T) {
		b := setup(t)
		gate := make(chan struct{})
		run := baton.NewDurable("ev.mid", func(dc *baton.Durable, _ int) (string, error) {
			if _, err := baton.RunStep(dc, "work", func(ctx context.Context) (int, error) {
				select {
				case <-gate:
					return 1, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}, nil); err != nil {
				return "", err
			}
			return baton.WaitEvent[string](dc, "go", time.Minute)
		}, &baton.TaskOptions{Events: []string{"go"}})
		b.startWorker(t, nil, run)
		ctx := ctxTimeout(t, 20*time.Second)
		h, err := run.Enqueue(ctx, b.client, 0, nil)
		require.NoError(t, err)
		waitState(t, b, h.ID, baton.Started)
		require.NoError(t, b.client.Signal(ctx, h.ID, "go", "kept"))
		close(gate)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "kept", got)
		require.Equal(t, 1, durRecord(t, ctx, b.client, h.ID).Executions)
	})
}

func TestDurableEventTimeout(t *testing.T) {
	b := setup(t)
	run := baton.NewDurable("ev.timeout", func(dc *baton.Durable, _ int) (string, error) {
		v, err := baton.WaitEvent[string](dc, "approve", 300*time.Millisecond)
		if errors.Is(err, baton.ErrEventTimeout) {
			return "no answer: " + err.Error(), nil
		}
		return v, err
	}, nil)
	b.startWorker(t, nil, run)
	ctx := ctxTimeout(t, 20*time.Second)
	began := time.Now()
	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Contains(t, got, `no answer: baton: no event "approve" before`)
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)

	ops, err := b.client.Operations(ctx, h.ID)
	require.NoError(t, err)
	require.Len(t, ops, 1)
	require.Equal(t, "event", ops[0].Type)
	require.Equal(t, "approve", ops[0].Name)
	require.Equal(t, "failed", ops[0].State)
	require.Contains(t, ops[0].Error, `no event "approve"`)
	require.ErrorIs(t, b.client.Signal(ctx, h.ID, "approve", true), baton.ErrRunFinished)
}

func TestDurableSignalErrors(t *testing.T) {
	b := setup(t)
	release := make(chan struct{})
	plain := baton.NewTask("sig.plain", func(ctx context.Context, _ int) (int, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 1, nil
	}, nil)
	run := baton.NewDurable("sig.run", func(dc *baton.Durable, _ int) (int, error) {
		return baton.WaitEvent[int](dc, "approve", time.Minute)
	}, &baton.TaskOptions{Events: []string{"approve", "note"}})
	b.startWorker(t, nil, plain, run)
	ctx := ctxTimeout(t, 20*time.Second)

	err := b.client.Signal(ctx, "no-such-run", "approve", 1)
	require.ErrorIs(t, err, baton.ErrNotFound)
	require.Contains(t, err.Error(), "no-such-run")
	require.Error(t, b.client.Signal(ctx, "x", "", 1), "an empty name")

	p, err := plain.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	waitState(t, b, p.ID, baton.Started)
	err = b.client.Signal(ctx, p.ID, "approve", 1)
	require.ErrorIs(t, err, baton.ErrNotFound)
	require.Contains(t, err.Error(), "not a durable run")
	close(release)

	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	waitWaiting(t, b, h.ID, "event approve")
	err = b.client.Signal(ctx, h.ID, "aprove", 1)
	require.ErrorIs(t, err, baton.ErrUnknownEvent)
	require.Contains(t, err.Error(), `"aprove"`)
	require.NoError(t, b.client.Signal(ctx, h.ID, "note", 1), "a declared event is kept for later")
	require.ErrorIs(t, b.client.Signal(ctx, h.ID, "note", 2), baton.ErrEventPending)
	require.NoError(t, b.client.Signal(ctx, h.ID, "approve", 7))
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 7, got)
	require.ErrorIs(t, b.client.Signal(ctx, h.ID, "approve", 8), baton.ErrRunFinished)
}

func TestDurableDeterminismViolation(t *testing.T) {
	b := setup(t)
	var renamed atomic.Bool
	run := baton.NewDurable("det.run", func(dc *baton.Durable, _ int) (int, error) {
		name := "fetch a"
		if renamed.Load() { // the code changed while the run was parked
			name = "fetch b"
		}
		v, err := baton.RunStep(dc, name, func(ctx context.Context) (int, error) { return 1, nil }, nil)
		if err != nil {
			return 0, err
		}
		if _, err := baton.WaitEvent[int](dc, "go", time.Minute); err != nil {
			return 0, err
		}
		return v, nil
	}, &baton.TaskOptions{MaxRetries: 3})
	b.startWorker(t, nil, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	waitWaiting(t, b, h.ID, "event go")
	renamed.Store(true)
	require.NoError(t, b.client.Signal(ctx, h.ID, "go", 1))
	_, err = h.Get(ctx)
	te := requireTaskError(t, err, baton.Failure, "non-determinism at operation 0", `recorded step "fetch a", now step "fetch b"`)
	rec := durRecord(t, ctx, b.client, te.ID)
	require.Equal(t, 0, rec.Retries, "a determinism violation is final")
}

func TestDurableLimits(t *testing.T) {
	b := setup(t)
	steps := baton.NewDurable("lim.ops", func(dc *baton.Durable, n int) (int, error) {
		for i := range n {
			if _, err := baton.RunStep(dc, fmt.Sprint("s", i), func(ctx context.Context) (int, error) { return i, nil }, nil); err != nil {
				return 0, err
			}
		}
		return n, nil
	}, &baton.TaskOptions{MaxOperations: 3, MaxRetries: 2})
	big := baton.NewDurable("lim.bytes", func(dc *baton.Durable, n int) (string, error) {
		return baton.RunStep(dc, "big", func(ctx context.Context) (string, error) { return strings.Repeat("x", n), nil }, nil)
	}, &baton.TaskOptions{MaxRecordedBytes: 100, MaxRetries: 2})
	b.startWorker(t, nil, steps, big)
	ctx := ctxTimeout(t, 20*time.Second)

	ok, err := steps.Enqueue(ctx, b.client, 3, nil)
	require.NoError(t, err)
	v, err := ok.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, v)
	over, err := steps.Enqueue(ctx, b.client, 5, nil)
	require.NoError(t, err)
	_, err = over.Get(ctx)
	_ = requireTaskError(t, err, baton.Failure, "operation 3", "over the limit of 3 operations per run (TaskOptions.MaxOperations)")
	require.Equal(t, 0, durRecord(t, ctx, b.client, over.ID).Retries)
	ops, err := b.client.Operations(ctx, over.ID)
	require.NoError(t, err)
	require.Len(t, ops, 3, "nothing is recorded past the limit")

	fits, err := big.Enqueue(ctx, b.client, 50, nil)
	require.NoError(t, err)
	_, err = fits.Get(ctx)
	require.NoError(t, err)
	tooBig, err := big.Enqueue(ctx, b.client, 200, nil)
	require.NoError(t, err)
	_, err = tooBig.Get(ctx)
	_ = requireTaskError(t, err, baton.Failure, "over the limit of 100 (TaskOptions.MaxRecordedBytes)")
}

func TestDurableCancelParked(t *testing.T) {
	t.Run("waiting for children", func(t *testing.T) {
		b := setup(t)
		stopped := make(chan string, 4)
		block := baton.NewTask("cx.block", func(ctx context.Context, _ int) (int, error) {
			<-ctx.Done()
			ti, _ := baton.InfoFrom(ctx)
			stopped <- ti.ID
			return 0, ctx.Err()
		}, nil)
		run := baton.NewDurable("cx.map", func(dc *baton.Durable, _ int) (int, error) {
			_, err := baton.Map(dc, block, []int{1, 2}, nil)
			return 0, err
		}, nil)
		b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, block, run)
		ctx := ctxTimeout(t, 20*time.Second)
		h, err := run.Enqueue(ctx, b.client, 0, nil)
		require.NoError(t, err)
		waitWaiting(t, b, h.ID, "2 children")
		kids := []string{h.ID + ".c0.0", h.ID + ".c0.1"}
		for _, k := range kids {
			waitState(t, b, k, baton.Started)
		}
		require.NoError(t, b.client.Cancel(ctx, h.ID))
		_, err = h.Get(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		got := map[string]bool{<-stopped: true, <-stopped: true}
		require.Equal(t, map[string]bool{kids[0]: true, kids[1]: true}, got, "both running children had their context cancelled")
		for _, k := range kids {
			r := durRecord(t, ctx, b.client, k)
			require.Equal(t, baton.Revoked, r.State)
			require.Contains(t, r.Error, "cancelled")
		}
		require.ErrorIs(t, b.client.Signal(ctx, h.ID, "x", 1), baton.ErrRunFinished)
	})
	t.Run("a parked durable step of a cancelled workflow", func(t *testing.T) {
		b := setup(t)
		run := baton.NewDurable("cx.step", func(dc *baton.Durable, n int) (int, error) {
			return baton.WaitEvent[int](dc, "go", time.Hour)
		}, nil)
		b.startWorker(t, nil, run, dDouble)
		ctx := ctxTimeout(t, 20*time.Second)
		wf, err := b.client.Submit(ctx, baton.Chain(run.S(1, nil), dDouble.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		waitWaiting(t, b, ids[0], "event go")
		require.NoError(t, b.client.Cancel(ctx, wf.ID))
		_, err = wf.Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		for _, id := range ids {
			require.Equal(t, baton.Revoked, durRecord(t, ctx, b.client, id).State)
		}
		_, err = asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo(baton.QueueDefault, ids[0]+"~1t")
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the step's timer is cancelled")
		require.ErrorIs(t, b.client.Signal(ctx, ids[0], "go", 1), baton.ErrRunFinished)
	})
	t.Run("not started yet", func(t *testing.T) {
		b := setup(t)
		var ran atomic.Bool
		run := baton.NewDurable("cx.queued", func(dc *baton.Durable, _ int) (int, error) {
			ran.Store(true)
			return 1, nil
		}, nil)
		b.client.Declare(run)
		ctx := ctxTimeout(t, 20*time.Second)
		h, err := run.Enqueue(ctx, b.client, 0, nil)
		require.NoError(t, err)
		require.NoError(t, b.client.Cancel(ctx, h.ID))
		b.startWorker(t, nil, run)
		_, err = h.Get(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		waitAsynqGone(t, b, baton.QueueDefault, h.ID)
		require.False(t, ran.Load(), "a run cancelled before it started never runs")
	})
	for _, wait := range []string{"timer", "event"} {
		t.Run("waiting on its "+wait, func(t *testing.T) {
			b := setup(t)
			var resumed atomic.Int32
			run := baton.NewDurable("cx."+wait, func(dc *baton.Durable, _ int) (int, error) {
				resumed.Add(1)
				if wait == "timer" {
					return 0, baton.Sleep(dc, time.Hour)
				}
				_, err := baton.WaitEvent[int](dc, "go", time.Hour)
				return 0, err
			}, nil)
			b.startWorker(t, nil, run)
			ctx := ctxTimeout(t, 20*time.Second)
			h, err := run.Enqueue(ctx, b.client, 0, nil)
			require.NoError(t, err)
			waitWaiting(t, b, h.ID, wait)
			insp := asynq.NewInspectorFromRedisClient(b.rdb)
			timer := h.ID + "~1t"
			// The timer is enqueued right after the park is recorded.
			redistest.WaitFor(t, waitLimit, "the wait's timer is scheduled", func() bool {
				info, err := insp.GetTaskInfo(baton.QueueDefault, timer)
				return err == nil && info.State == asynq.TaskStateScheduled
			})

			require.NoError(t, b.client.Cancel(ctx, h.ID))
			_, err = h.Get(ctx)
			require.ErrorIs(t, err, baton.ErrCancelled)
			_, err = insp.GetTaskInfo(baton.QueueDefault, timer)
			require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the timer is cancelled")
			require.ErrorIs(t, b.client.Signal(ctx, h.ID, "go", 1), baton.ErrRunFinished)
			require.Equal(t, int32(1), resumed.Load())
		})
	}
}

func TestDurableMapPerItemFailures(t *testing.T) {
	b := setup(t)
	runs := newCounter()
	item := baton.NewTask("map.item", func(ctx context.Context, n int) (int, error) {
		ti, _ := baton.InfoFrom(ctx)
		runs.add(ti.ID)
		if n%2 == 1 {
			return 0, baton.Permanent(fmt.Errorf("odd input %d", n))
		}
		return n * n, nil
	}, &baton.TaskOptions{MaxRetries: 2})
	run := baton.NewDurable("map.run", func(dc *baton.Durable, n int) ([]string, error) {
		args := make([]int, n)
		for i := range args {
			args[i] = i
		}
		rs, err := baton.Map(dc, item, args, nil)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(rs))
		for i, r := range rs {
			var te *baton.TaskError
			switch {
			case r.Err == nil:
				out[i] = fmt.Sprint("ok ", r.Value)
			case errors.As(r.Err, &te):
				out[i] = fmt.Sprintf("%s %s %s", te.ID[strings.LastIndex(te.ID, ".c"):], te.State, te.Message)
			default:
				out[i] = "unexpected " + r.Err.Error()
			}
		}
		return out, nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, item, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 5, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ok 0", ".c0.1 FAILURE odd input 1", "ok 4", ".c0.3 FAILURE odd input 3", "ok 16"}, got)
	for i := range 5 {
		require.Equal(t, 1, runs.get(fmt.Sprintf("%s.c0.%d", h.ID, i)), "item %d ran once", i)
	}
	ops, err := b.client.Operations(ctx, h.ID)
	require.NoError(t, err)
	require.Len(t, ops, 1)
	require.Equal(t, "map", ops[0].Type)
	require.Len(t, ops[0].Children, 5)
	require.JSONEq(t, `[0, null, 4, null, 16]`, string(ops[0].Result))
	require.Contains(t, ops[0].Error, "2 of 5 failed")
}

func TestDurableStepRetries(t *testing.T) {
	b := setup(t)
	runs := newCounter()
	run := baton.NewDurable("step.retry", func(dc *baton.Durable, _ int) (string, error) {
		a, err := baton.RunStep(dc, "a", func(ctx context.Context) (int, error) { runs.add("a"); return 1, nil }, nil)
		if err != nil {
			return "", err
		}
		flaky, err := baton.RunStep(dc, "flaky", func(ctx context.Context) (int, error) {
			if n := runs.add("flaky"); n < 3 {
				return 0, fmt.Errorf("flaky attempt %d", n)
			}
			return 2, nil
		}, &baton.StepOpts{RetryDelay: baton.FixedDelay(50 * time.Millisecond)})
		if err != nil {
			return "", err
		}
		_, err = baton.RunStep(dc, "doomed", func(ctx context.Context) (int, error) {
			runs.add("doomed")
			return 0, errors.New("always fails")
		}, &baton.StepOpts{MaxRetries: 1, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
		var se *baton.StepError
		if !errors.As(err, &se) {
			return "", fmt.Errorf("want a *StepError, got %v", err)
		}
		// Park once more: the replay must return the same StepError without
		// running anything again.
		if err := baton.Sleep(dc, 20*time.Millisecond); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %d [%s]", a, flaky, se.Error()), nil
	}, nil)
	var tries atomic.Int32
	final := baton.NewDurable("step.final", func(dc *baton.Durable, _ int) (int, error) {
		return baton.RunStep(dc, "x", func(ctx context.Context) (int, error) {
			tries.Add(1)
			return 0, errors.New("nope")
		}, &baton.StepOpts{MaxRetries: -1})
	}, &baton.TaskOptions{MaxRetries: 3})
	b.startWorker(t, nil, run, final)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, `1 2 [step "doomed" failed after 2 attempts: always fails]`, got)
	require.Equal(t, 1, runs.get("a"), "an earlier step never runs again")
	require.Equal(t, 3, runs.get("flaky"))
	require.Equal(t, 2, runs.get("doomed"))
	rec := durRecord(t, ctx, b.client, h.ID)
	require.Equal(t, 5, rec.Executions, "first run, two flaky retries, one doomed retry, the sleep")

	ops, err := b.client.Operations(ctx, h.ID)
	require.NoError(t, err)
	require.Len(t, ops, 4)
	require.Equal(t, []string{"done", "done", "failed", "done"}, []string{ops[0].State, ops[1].State, ops[2].State, ops[3].State})
	require.Equal(t, 2, ops[1].Attempts)
	require.Equal(t, "always fails", ops[2].Error)

	// A handler that returns a step's recorded failure fails at once: a
	// retry could only replay it.
	fh, err := final.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	_, err = fh.Get(ctx)
	_ = requireTaskError(t, err, baton.Failure, `step "x" failed: nope`)
	require.Equal(t, int32(1), tries.Load())
	require.Equal(t, 0, durRecord(t, ctx, b.client, fh.ID).Retries)
}

// TestDurableRetriesFromRecord: a run that fails, retries, parks and fails
// again stops at its MaxRetries: the resume (a new asynq task, whose own
// retry count starts at 0) continues the count kept in the record.
func TestDurableRetriesFromRecord(t *testing.T) {
	b := setup(t)
	var runs, failures atomic.Int32
	run := baton.NewDurable("retry.record", func(dc *baton.Durable, _ int) (int, error) {
		runs.Add(1)
		ti, _ := baton.InfoFrom(dc.Context())
		if ti.Retries == 1 { // the retry parks before failing again
			if err := baton.Sleep(dc, 20*time.Millisecond); err != nil {
				return 0, err
			}
		}
		failures.Add(1)
		return 0, fmt.Errorf("fails with %d retries", ti.Retries)
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	b.startWorker(t, nil, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	_ = requireTaskError(t, err, baton.Failure, "fails with 1 retries", "gave up after 2 attempts")
	require.Equal(t, int32(2), failures.Load())
	require.Equal(t, int32(3), runs.Load(), "first attempt, the retry up to its sleep, the resume")
	require.Equal(t, 1, durRecord(t, ctx, b.client, h.ID).Retries)
}

func TestDurableInCanvases(t *testing.T) {
	b := setup(t)
	runs := newCounter()
	inc := baton.NewTask("cv.inc", func(ctx context.Context, n int) (int, error) {
		ti, _ := baton.InfoFrom(ctx)
		runs.add(ti.ID)
		return n + 1, nil
	}, nil)
	fail := baton.NewTask("cv.fail", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(fmt.Errorf("no %d", n))
	}, nil)
	// A durable run that waits on a child, a timer, then a child run.
	inner := baton.NewDurable("cv.inner", func(dc *baton.Durable, n int) (int, error) {
		v, err := baton.Call(dc, dDouble, n, nil)
		if err != nil {
			return 0, err
		}
		if err := baton.Sleep(dc, 30*time.Millisecond); err != nil {
			return 0, err
		}
		return baton.Call(dc, inc, v, nil)
	}, nil)
	// A durable run that Calls a canvas, a failing canvas, and a durable run.
	outer := baton.NewDurable("cv.outer", func(dc *baton.Durable, n int) (string, error) {
		var chained int
		if err := baton.CallCanvas(dc, "chain", baton.Chain(inc.S(n, nil), dDouble.Sig(nil), inc.Sig(nil)), &chained); err != nil {
			return "", err
		}
		var sums []int
		if err := baton.CallCanvas(dc, "group", baton.Group(inc.S(1, nil), inner.S(2, nil)), &sums); err != nil {
			return "", err
		}
		err := baton.CallCanvas(dc, "failing", baton.Chain(inc.S(1, nil), fail.Sig(nil)), nil)
		var te *baton.TaskError
		if !errors.As(err, &te) {
			return "", fmt.Errorf("want a *TaskError, got %v", err)
		}
		sub, err := baton.Call(dc, inner, 10, nil)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %v %s %d", chained, sums, te.ID[strings.LastIndex(te.ID, "."):], sub), nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, inc, fail, dDouble, inner, outer)
	ctx := ctxTimeout(t, 30*time.Second)

	t.Run("a durable task as a canvas step", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(inc.S(1, nil), inner.Sig(nil), inc.Sig(nil)), nil)
		require.NoError(t, err)
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, (1+1)*2+1+1, got)
		ids := durSteps(t, ctx, wf)
		ops, err := b.client.Operations(ctx, ids[1])
		require.NoError(t, err)
		require.Len(t, ops, 3)
		require.Equal(t, 1, runs.get(ids[1]+".c2"), "the run's child ran once")
	})
	t.Run("canvases and a durable task called from a durable task", func(t *testing.T) {
		h, err := outer.Enqueue(ctx, b.client, 3, nil)
		require.NoError(t, err)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%d [2 %d] .w2 %d", (3+1)*2+1, 2*2+1, 10*2+1), got)
		sub := durRecord(t, ctx, b.client, h.ID+".c3")
		require.Equal(t, baton.Success, sub.State)
		require.Equal(t, h.ID+":3", sub.Waiter)
		wf, err := b.client.Workflow(ctx, h.ID+".w0")
		require.NoError(t, err)
		rec, err := wf.Record(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
	})
}

// TestDurableParkedHoldNothing: 1,000 runs parked in WaitEvent on two
// workers of concurrency 4 hold no slot (asynq has no active task) and no
// goroutine; signalled, all finish with the right result, and no timer
// resume is left behind.
func TestDurableParkedHoldNothing(t *testing.T) {
	b := setup(t)
	run := baton.NewDurable("park.many", func(dc *baton.Durable, n int) (int, error) {
		v, err := baton.WaitEvent[int](dc, "go", 10*time.Minute)
		return n + v, err
	}, nil)
	ctx := ctxTimeout(t, 120*time.Second)
	before := runtime.NumGoroutine()
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, run)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, run)
	workers := runtime.NumGoroutine() - before

	const n = 1000
	hs := make([]*baton.TypedHandle[int], n)
	for i := range hs {
		h, err := run.Enqueue(ctx, b.client, i, nil)
		require.NoError(t, err)
		hs[i] = h
	}
	ids := make([]string, n)
	for i, h := range hs {
		ids[i] = h.ID
	}
	redistest.WaitFor(t, 90*time.Second, "all runs parked", func() bool {
		recs, err := b.client.Backend().GetMany(ctx, ids)
		if err != nil {
			return false
		}
		for _, r := range recs {
			if r == nil || r.State != baton.Waiting {
				return false
			}
		}
		return true
	})
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	qi, err := insp.GetQueueInfo(baton.QueueDefault)
	require.NoError(t, err)
	require.Zero(t, qi.Active, "a parked run holds no worker slot")
	require.Equal(t, n, qi.Scheduled, "one timer per wait")
	parked := 0
	redistest.WaitFor(t, 10*time.Second, "a parked run holds no goroutine", func() bool {
		parked = runtime.NumGoroutine() - before
		return parked < workers+50
	})
	t.Logf("goroutines: %d for two idle workers, %d with %d runs parked", workers, parked, n)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += 8 {
				if err := b.client.Signal(ctx, ids[i], "go", 1000); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i, h := range hs {
		v, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, i+1000, v)
	}
	qi, err = insp.GetQueueInfo(baton.QueueDefault)
	require.NoError(t, err)
	require.Zero(t, qi.Scheduled, "the timers of delivered waits are deleted")
}

// TestDurableRedisRestart: runs parked on a timer and on an event survive a
// Redis restart (AOF) and resume: the timer at its deadline, the event when
// signalled after the restart.
func TestDurableRedisRestart(t *testing.T) {
	b := durSetupAOF(t)
	runs := newCounter()
	timer := baton.NewDurable("rr.timer", func(dc *baton.Durable, _ int) (string, error) {
		if _, err := baton.RunStep(dc, "before", func(ctx context.Context) (int, error) { runs.add("timer.before"); return 1, nil }, nil); err != nil {
			return "", err
		}
		if err := baton.Sleep(dc, 2*time.Second); err != nil {
			return "", err
		}
		return "woke", nil
	}, nil)
	event := baton.NewDurable("rr.event", func(dc *baton.Durable, _ int) (string, error) {
		if _, err := baton.RunStep(dc, "before", func(ctx context.Context) (int, error) { runs.add("event.before"); return 1, nil }, nil); err != nil {
			return "", err
		}
		return baton.WaitEvent[string](dc, "go", time.Minute)
	}, nil)
	durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 2}, timer, event)
	ctx := ctxTimeout(t, 60*time.Second)
	ht, err := timer.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	he, err := event.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	waitWaiting(t, b, ht.ID, "timer")
	waitWaiting(t, b, he.ID, "event go")

	require.NoError(t, b.srv.Restart())

	redistest.WaitFor(t, 20*time.Second, "Redis answers after the restart", func() bool {
		return b.client.Signal(ctx, he.ID, "go", "signalled") == nil
	})
	got, err := he.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, "signalled", got)
	got, err = ht.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, "woke", got)
	require.Equal(t, 1, runs.get("timer.before"))
	require.Equal(t, 1, runs.get("event.before"))
}

func TestHeartbeatHungHandler(t *testing.T) {
	b := setup(t)
	var attempts atomic.Int32
	causes := make(chan error, 1)
	type progress struct{ Done int }
	hung := baton.NewTask("hb.hung", func(ctx context.Context, _ int) (int, error) {
		var p progress
		if ok, err := baton.HeartbeatDetails(ctx, &p); err != nil || (ok && attempts.Load() == 0) {
			return 0, fmt.Errorf("details %v %v on the first attempt", ok, err)
		}
		if attempts.Add(1) > 1 {
			return p.Done, nil
		}
		if err := baton.Heartbeat(ctx, progress{Done: 42}); err != nil {
			return 0, err
		}
		<-ctx.Done() // hangs: no more heartbeats
		causes <- context.Cause(ctx)
		return 0, ctx.Err()
	}, &baton.TaskOptions{HeartbeatTimeout: time.Second, MaxRetries: 2, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	b.startWorker(t, nil, hung)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := hung.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 42, got, "the next attempt got the last details")
	require.ErrorContains(t, <-causes, "heartbeat overdue")
	require.Equal(t, int32(2), attempts.Load())

	require.ErrorContains(t, baton.Heartbeat(ctx, 1), "TaskOptions.HeartbeatTimeout", "outside such a task")
	require.PanicsWithValue(t, `baton: task "hb.bad": HeartbeatTimeout 100ms is under 1s: the fleet checks heartbeats every 500ms; use 1s or more`, func() {
		baton.NewTask("hb.bad", func(ctx context.Context, _ int) (int, error) { return 0, nil }, &baton.TaskOptions{HeartbeatTimeout: 100 * time.Millisecond})
	})
}

// TestDurableKeysHaveTTL: after durable runs of every kind of operation
// (steps with retries, calls, maps, canvases, sleeps, events buffered and
// awaited, checkpoints, heartbeats, a cancel) every key baton wrote expires.
func TestDurableKeysHaveTTL(t *testing.T) {
	b := setup(t)
	block := baton.NewTask("ttl.block", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
	var flaky atomic.Int32
	run := baton.NewDurable("ttl.run", func(dc *baton.Durable, n int) (int, error) {
		v, err := baton.RunStep(dc, "flaky", func(ctx context.Context) (int, error) {
			if flaky.Add(1) == 1 {
				return 0, errors.New("once")
			}
			if err := dc.Checkpoint(map[string]int{"at": 1}); err != nil {
				return 0, err
			}
			return n, baton.Heartbeat(ctx, n)
		}, &baton.StepOpts{RetryDelay: baton.FixedDelay(time.Millisecond)})
		if err != nil {
			return 0, err
		}
		if err := dc.Checkpoint("between"); err != nil {
			return 0, err
		}
		if _, err := baton.Call(dc, dDouble, v, nil); err != nil {
			return 0, err
		}
		if _, err := baton.Map(dc, dDouble, []int{1, 2}, nil); err != nil {
			return 0, err
		}
		if err := baton.CallCanvas(dc, "cv", baton.Chain(dDouble.S(1, nil), dDouble.Sig(nil)), nil); err != nil {
			return 0, err
		}
		if err := baton.Sleep(dc, time.Millisecond); err != nil {
			return 0, err
		}
		return baton.WaitEvent[int](dc, "go", time.Minute)
	}, &baton.TaskOptions{Events: []string{"go"}, HeartbeatTimeout: 10 * time.Second})
	cancelled := baton.NewDurable("ttl.cancelled", func(dc *baton.Durable, _ int) (int, error) {
		return baton.Call(dc, block, 1, nil)
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 4}, block, dDouble, run, cancelled)
	ctx := ctxTimeout(t, 30*time.Second)

	h, err := run.Enqueue(ctx, b.client, 3, nil)
	require.NoError(t, err)
	require.NoError(t, b.client.Signal(ctx, h.ID, "go", 9)) // buffered
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 9, got)
	hc, err := cancelled.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	waitWaiting(t, b, hc.ID, "child")
	waitState(t, b, hc.ID+".c0", baton.Started)
	require.NoError(t, b.client.Cancel(ctx, hc.ID))
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	redistest.WaitFor(t, 15*time.Second, "the queue drains", func() bool {
		qi, err := insp.GetQueueInfo(baton.QueueDefault)
		return err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0
	})

	var keys, noTTL []string
	iter := b.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasPrefix(k, "asynq:") {
			continue
		}
		keys = append(keys, k)
		if ttl, err := b.rdb.PTTL(ctx, k).Result(); err == nil && ttl == -1 {
			noTTL = append(noTTL, k)
		}
	}
	require.NoError(t, iter.Err())
	require.Contains(t, keys, "baton:run:{"+h.ID+"}:"+h.ID)
	require.Empty(t, noTTL, "keys without a TTL (of %d baton keys: %v)", len(keys), keys)
}

// TestDurableAbandonedAttemptRecordsNothing: an attempt abandoned at its
// Timeout (its step ignores the context) finishes its step later, while the
// retry runs the same step: the late result is not recorded; the retry's is.
func TestDurableAbandonedAttemptRecordsNothing(t *testing.T) {
	b := setup(t)
	var attempts atomic.Int32
	var lateReturn atomic.Bool
	run := baton.NewDurable("abandon.run", func(dc *baton.Durable, _ int) (string, error) {
		return baton.RunStep(dc, "slow", func(ctx context.Context) (string, error) {
			if attempts.Add(1) == 1 {
				time.Sleep(1500 * time.Millisecond) // hangs past the timeout, ignoring ctx
				lateReturn.Store(true)
				return "abandoned attempt", nil // were it recorded, the retry would get it
			}
			select { // the retry: still running when the abandoned step returns
			case <-time.After(800 * time.Millisecond):
				return "retry", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}, nil)
	}, &baton.TaskOptions{Timeout: time.Second, MaxRetries: 1, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	b.startWorker(t, nil, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, "retry", got)
	ops, err := b.client.Operations(ctx, h.ID)
	require.NoError(t, err)
	require.Len(t, ops, 1)
	require.JSONEq(t, `"retry"`, string(ops[0].Result))
	require.True(t, lateReturn.Load(), "the abandoned step returned before the retry's was recorded")
}
