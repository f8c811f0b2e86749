//go:build topology

package topology_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// TestEnqueueAndWait: a task enqueued through the topology runs and its
// result is read back; a waiter on another connection, subscribed before the
// task ends, is woken by the result's publication (on the cluster, by a
// script on another node than the one the waiter subscribed on).
func TestEnqueueAndWait(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		release := make(chan struct{})
		add := baton.NewTask("add", func(ctx context.Context, a [2]int) (int, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return a[0] + a[1], nil
		}, &baton.TaskOptions{Queue: e.queue})
		e.worker(t, nil, add)

		// On the cluster, an id whose record and channel live on different
		// masters: the result is published by a script on one node and
		// must reach a waiter subscribed on another.
		id := uuid.NewString()
		for e.topology == "cluster" {
			rec, err := cluster.MasterOf(ctx, backend.TaskKey(id))
			require.NoError(t, err)
			sub, err := cluster.MasterOf(ctx, backend.DoneChannel(id))
			require.NoError(t, err)
			if rec != sub {
				break
			}
			id = uuid.NewString()
		}
		h, err := add.Enqueue(ctx, e.client, [2]int{2, 3}, &baton.EnqueueOpts{ID: id})
		require.NoError(t, err)
		require.Equal(t, e.queue, h.Queue)

		other, err := baton.NewClient(e.newRedis(t), nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = other.Close() })
		got := make(chan *baton.Record, 1)
		go func() {
			r, err := other.Wait(ctx, h.ID)
			if err != nil {
				t.Errorf("wait: %v", err)
			}
			got <- r
		}()
		redistest.WaitFor(t, waitLimit, "the waiter subscribed", func() bool {
			return e.subscribers(t, ctx, backend.DoneChannel(h.ID)) == 1
		})
		close(release)
		select {
		case r := <-got:
			require.NotNil(t, r)
			require.Equal(t, baton.Success, r.State)
			require.JSONEq(t, "5", string(r.Result))
		case <-ctx.Done():
			t.Fatal("the waiter was not woken by the result")
		}
		n, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 5, n)
	})
}

// TestRetry: a task that fails once is retried and succeeds; its record
// counts the retry.
func TestRetry(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		var attempts atomic.Int32
		flaky := baton.NewTask("flaky", func(ctx context.Context, n int) (int, error) {
			if attempts.Add(1) == 1 {
				return 0, errors.New("transient failure")
			}
			return n, nil
		}, &baton.TaskOptions{Queue: e.queue, MaxRetries: 2, RetryDelay: baton.FixedDelay(100 * time.Millisecond)})
		e.worker(t, nil, flaky)
		h, err := flaky.Enqueue(ctx, e.client, 7, nil)
		require.NoError(t, err)
		n, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 7, n)
		require.EqualValues(t, 2, attempts.Load())
		r, err := e.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, 1, r.Retries)
		require.Equal(t, 2, r.Executions)
	})
}

// TestWakeUp: an idle worker whose poll interval is ten minutes picks up
// each new task at once, because the producer's wake-up reaches it over
// pub/sub; without it each task would wait for the poll. A worker goes
// idle after one empty look at its queues, which happens while a task runs,
// so every task after the first is enqueued to an idle worker.
func TestWakeUp(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, 2*waitLimit)
		echo := baton.NewTask("echo", func(ctx context.Context, n int) (int, error) { return n, nil }, &baton.TaskOptions{Queue: e.queue})
		e.worker(t, &baton.WorkerOptions{PollInterval: 10 * time.Minute, Concurrency: 2, RecoverInterval: -1}, echo)
		redistest.WaitFor(t, waitLimit, "the worker listens for wake-ups", func() bool {
			return e.subscribers(t, ctx, baton.WakeChannel) == 1
		})
		for i := range 3 {
			h, err := echo.Enqueue(ctx, e.client, i, nil)
			require.NoError(t, err)
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := h.Get(tctx)
			cancel()
			require.NoError(t, err, "task %d is picked up long before the 10-minute poll", i)
			require.Equal(t, i, n)
		}
	})
}
