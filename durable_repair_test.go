package baton_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

// The repairs of durable.go's protocol ("What a crash between two writes
// leaves"): one write fails, as if the worker had died right before it, and
// the run still ends right, through the repair the protocol names.

// failOnce is a go-redis hook that fails the first command (alone or in a
// pipeline) whose arguments match.
type failOnce struct {
	match func(args []any) bool
	fired atomic.Bool
}

func (f *failOnce) hit(cmd redis.Cmder) bool {
	return !f.fired.Load() && f.match(cmd.Args()) && f.fired.CompareAndSwap(false, true)
}

func (f *failOnce) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (f *failOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.hit(cmd) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *failOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if f.hit(c) {
				for _, c := range cmds {
					c.SetErr(errInjected)
				}
				return errInjected
			}
		}
		return next(ctx, cmds)
	}
}

// hasArg matches a command with an argument for which ok holds.
func hasArg(ok func(string) bool) func([]any) bool {
	return func(args []any) bool {
		for _, a := range args {
			if s, isStr := a.(string); isStr && ok(s) {
				return true
			}
		}
		return false
	}
}

// hookedClient is a client of b's Redis with hook f.
func hookedClient(t *testing.T, b *bundle, f *failOnce) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: b.srv.Addr})
	rdb.AddHook(f)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestDurableRepairTimerNotEnqueued: the worker parks a run on a timer and
// fails to enqueue the timer (a crash after the park script). The delivery
// comes back, finds the run parked at a later generation, and enqueues the
// wake-up itself.
func TestDurableRepairTimerNotEnqueued(t *testing.T) {
	b := setup(t)
	var runs atomic.Int32
	run := baton.NewDurable("rp.timer", func(dc *baton.Durable, _ int) (string, error) {
		runs.Add(1)
		if err := baton.Sleep(dc, 200*time.Millisecond); err != nil {
			return "", err
		}
		return "woke", nil
	}, nil)
	var id atomic.Value
	id.Store("")
	f := &failOnce{match: hasArg(func(s string) bool {
		run, _ := id.Load().(string)
		return run != "" && strings.HasSuffix(s, ":t:"+run+"~1t")
	})}
	durWorker(t, hookedClient(t, b, f), baton.WorkerOptions{}, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 0, &baton.EnqueueOpts{ID: "rp-timer-run"})
	require.NoError(t, err)
	id.Store(h.ID)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, "woke", got)
	require.True(t, f.fired.Load(), "the timer's enqueue failed once")
	require.Equal(t, int32(2), runs.Load(), "the first run and the resume; the redelivery only re-armed the wake-up")
}

// TestDurableRepairChildNotNotified: a child's end is recorded but the
// notification of its run fails (a crash in between). The child's delivery
// comes back, finds its record terminal, notifies again, and the run
// resumes; the child ran once.
func TestDurableRepairChildNotNotified(t *testing.T) {
	b := setup(t)
	var childRuns atomic.Int32
	child := baton.NewTask("rp.child", func(ctx context.Context, n int) (int, error) {
		childRuns.Add(1)
		return n * 3, nil
	}, nil)
	run := baton.NewDurable("rp.parent", func(dc *baton.Durable, n int) (int, error) {
		return baton.Call(dc, child, n, nil)
	}, nil)
	const runID = "rp-notify-run"
	f := &failOnce{match: func(args []any) bool { // the notify script: its child id argument
		return len(args) > 7 && args[0] == "evalsha" && args[7] == runID+".c0"
	}}
	durWorker(t, hookedClient(t, b, f), baton.WorkerOptions{}, child, run)
	ctx := ctxTimeout(t, 20*time.Second)
	h, err := run.Enqueue(ctx, b.client, 5, &baton.EnqueueOpts{ID: runID})
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 15, got)
	require.True(t, f.fired.Load(), "the notification failed once")
	require.Equal(t, int32(1), childRuns.Load(), "the child was delivered again, not run again")
}

// TestDurableRepairSignalResumeNotEnqueued: Signal records the event but
// cannot enqueue the resume. Either the caller repeats the Signal (the same
// payload: the resume is enqueued, nothing is delivered twice), or, left
// alone, the wait's timer claims the run at its deadline and finds the event.
func TestDurableRepairSignalResumeNotEnqueued(t *testing.T) {
	for _, retry := range []bool{true, false} {
		name := "left alone"
		if retry {
			name = "signal repeated"
		}
		t.Run(name, func(t *testing.T) {
			b := setup(t)
			run := baton.NewDurable("rp.signal", func(dc *baton.Durable, _ int) (string, error) {
				v, err := baton.WaitEvent[string](dc, "go", 800*time.Millisecond)
				if errors.Is(err, baton.ErrEventTimeout) {
					return "timed out", nil
				}
				return v, err
			}, nil)
			b.startWorker(t, nil, run)
			const runID = "rp-signal-run"
			f := &failOnce{match: hasArg(func(s string) bool { return strings.HasSuffix(s, ":t:"+runID+"~1") })}
			c, err := baton.NewClient(hookedClient(t, b, f), nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			ctx := ctxTimeout(t, 20*time.Second)
			h, err := run.Enqueue(ctx, b.client, 0, &baton.EnqueueOpts{ID: runID})
			require.NoError(t, err)
			waitWaiting(t, b, h.ID, "event go")
			err = c.Signal(ctx, h.ID, "go", "yes")
			require.Error(t, err)
			require.Contains(t, err.Error(), errInjected.Error())
			if retry {
				require.NoError(t, c.Signal(ctx, h.ID, "go", "yes"))
			}
			got, err := h.Get(ctx)
			require.NoError(t, err)
			require.Equal(t, "yes", got, "the event was delivered, not lost to the timeout")
		})
	}
}
