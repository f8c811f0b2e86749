package baton_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
)

// newWorker builds a started worker without registering a cleanup, for
// tests that shut it down themselves.
func newWorker(t *testing.T, b *bundle, opts baton.WorkerOptions, defs ...baton.Definition) *baton.Worker {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	w, err := baton.NewWorker(b.rdb, &opts)
	require.NoError(t, err)
	require.NoError(t, w.Register(defs...))
	require.NoError(t, w.Start())
	return w
}

func TestClientClose(t *testing.T) {
	b := setup(t)
	c, err := baton.NewClient(b.rdb, nil)
	require.NoError(t, err)
	require.NoError(t, c.Close(), "Close of a client that owns nothing but its goroutines succeeds")
	require.NotPanics(t, func() { _ = c.Close() }, "a second Close is harmless")
}

func TestBackendClosed(t *testing.T) {
	b := setup(t)
	t.Run("second Close", func(t *testing.T) {
		be, err := backend.New(b.rdb, backend.Options{})
		require.NoError(t, err)
		require.NoError(t, be.Close())
		require.NotPanics(t, func() { _ = be.Close() }, "a second Close is harmless")
	})
	t.Run("write after Close", func(t *testing.T) {
		be, err := backend.New(b.rdb, backend.Options{})
		require.NoError(t, err)
		require.NoError(t, be.Close())
		// A write after Close fails at once with a clear error; it must not
		// hang until the caller's deadline (20 tries: not a coin toss).
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := be.MarkPending(ctx, backend.Meta{ID: "after-close", Kind: "k"})
			cancel()
			require.ErrorContains(t, err, "closed")
			require.NotErrorIs(t, err, context.DeadlineExceeded)
		}
	})
}

func TestWorkerShutdown(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		b := setup(t)
		task := baton.NewTask("noop", func(ctx context.Context, _ struct{}) (int, error) { return 0, nil }, nil)
		w := newWorker(t, b, baton.WorkerOptions{}, task)
		require.NotPanics(t, func() {
			w.Shutdown()
			w.Shutdown()
		})
	})

	t.Run("never started", func(t *testing.T) {
		b := setup(t)
		w, err := baton.NewWorker(b.rdb, &baton.WorkerOptions{Logger: quietLogger()})
		require.NoError(t, err)
		require.NotPanics(t, w.Shutdown)
	})

	t.Run("Run returns when ctx ends", func(t *testing.T) {
		b := setup(t)
		task := baton.NewTask("noop", func(ctx context.Context, _ struct{}) (int, error) { return 7, nil }, nil)
		w, err := baton.NewWorker(b.rdb, &baton.WorkerOptions{Logger: quietLogger(), PollInterval: 20 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, w.Register(task))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		h, err := task.Enqueue(ctxTimeout(t, 10*time.Second), b.client, struct{}{}, nil)
		require.NoError(t, err)
		got, err := h.Get(ctxTimeout(t, 10*time.Second))
		require.NoError(t, err)
		require.Equal(t, 7, got)
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})

	t.Run("in-flight task finishes", func(t *testing.T) {
		b := setup(t)
		ctx := ctxTimeout(t, 20*time.Second)
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		slow := baton.NewTask("slow", func(ctx context.Context, _ struct{}) (string, error) {
			entered <- struct{}{}
			<-release
			return "finished", nil
		}, nil)
		w := newWorker(t, b, baton.WorkerOptions{ShutdownTimeout: 10 * time.Second}, slow)
		h, err := slow.Enqueue(ctx, b.client, struct{}{}, nil)
		require.NoError(t, err)
		<-entered
		stopped := make(chan struct{})
		go func() { w.Shutdown(); close(stopped) }()
		close(release)
		<-stopped
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, `"finished"`, string(rec.Result))
	})

	t.Run("cut-off task goes back to the queue", func(t *testing.T) {
		b := setup(t)
		ctx := ctxTimeout(t, 30*time.Second)
		var runs atomic.Int32
		entered := make(chan struct{}, 1)
		patient := baton.NewTask("patient", func(ctx context.Context, _ struct{}) (int32, error) {
			n := runs.Add(1)
			if n == 1 {
				entered <- struct{}{}
				<-ctx.Done() // outlives the shutdown timeout
				return 0, ctx.Err()
			}
			return n, nil
		}, nil) // MaxRetries 0: had the cut-off counted as a failure, it would be final
		w1 := newWorker(t, b, baton.WorkerOptions{ShutdownTimeout: 200 * time.Millisecond}, patient)
		h, err := patient.Enqueue(ctx, b.client, struct{}{}, nil)
		require.NoError(t, err)
		<-entered
		w1.Shutdown()
		rec, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.False(t, rec.State.Terminal(), "a task cut off by shutdown is not finished: %s %q", rec.State, rec.Error)

		b.startWorker(t, nil, patient)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, int32(2), got)
	})
}
