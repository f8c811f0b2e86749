package baton_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

func TestWait(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	echo := baton.NewTask("echo", func(ctx context.Context, s string) (string, error) {
		if s == "fail" {
			return "", baton.Permanent(errors.New("asked to fail"))
		}
		return s, nil
	}, nil)
	b.startWorker(t, nil, echo)

	t.Run("success", func(t *testing.T) {
		h, err := echo.Enqueue(ctx, b.client, "hello", nil)
		require.NoError(t, err)
		rec, err := b.client.Wait(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, `"hello"`, string(rec.Result))
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "hello", got)
	})

	t.Run("failure is a TaskError", func(t *testing.T) {
		h, err := echo.Enqueue(ctx, b.client, "fail", nil)
		require.NoError(t, err)
		rec, err := b.client.Wait(ctx, h.ID)
		te := requireTaskError(t, err, baton.Failure, "asked to fail")
		require.Equal(t, h.ID, te.ID)
		require.Equal(t, "echo", te.Kind)
		require.NotErrorIs(t, err, baton.ErrRevoked)
		require.NotNil(t, rec, "the failed record comes with the error")
		_, err = h.Get(ctx)
		_ = requireTaskError(t, err, baton.Failure, "asked to fail")
	})

	t.Run("bounded by ctx", func(t *testing.T) {
		h, err := echo.Enqueue(ctx, b.client, "later", &baton.EnqueueOpts{Countdown: time.Hour})
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = b.client.Wait(wctx, h.ID)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 2*time.Second, "Wait returns promptly when its context ends")

		cctx, cancel2 := context.WithCancel(ctx)
		cancel2()
		_, err = h.Get(cctx)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("unknown id", func(t *testing.T) {
		_, err := b.client.Wait(ctx, "no-such-task")
		require.ErrorIs(t, err, baton.ErrNotFound)
		require.Contains(t, err.Error(), "no-such-task")
		_, err = b.client.Get(ctx, "no-such-task")
		require.ErrorIs(t, err, baton.ErrNotFound)
	})

	t.Run("result stored before the wait", func(t *testing.T) {
		h, err := echo.Enqueue(ctx, b.client, "early", nil)
		require.NoError(t, err)
		waitState(t, b, h.ID, baton.Success)
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		rec, err := b.client.Wait(wctx, h.ID)
		require.NoError(t, err, "a finished task's Wait returns at once")
		require.JSONEq(t, `"early"`, string(rec.Result))
		got, err := h.Get(wctx)
		require.NoError(t, err)
		require.Equal(t, "early", got)
	})
}

// TestManyWaitersFewConnections: 1,000 callers waiting on 1,000 tasks share
// one pub/sub connection: the server sees a handful of clients, not one per
// waiter.
func TestManyWaitersFewConnections(t *testing.T) {
	// A fixed pool size (go-redis defaults to 10 per CPU) keeps the bound
	// below independent of the machine: pooled connections (worker and
	// client share this pool; the worker's long-poll clone has another) plus
	// a few pub/sub connections.
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 10})
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	b := &bundle{srv: srv, rdb: rdb, client: c}
	ctx := ctxTimeout(t, 60*time.Second)
	release := make(chan struct{})
	gate := baton.NewTask("gate", func(ctx context.Context, n int) (int, error) {
		select {
		case <-release:
			return n, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 20}, gate)

	const n = 1000
	handles := make([]*baton.TypedHandle[int], n)
	for i := range n {
		h, err := gate.Enqueue(ctx, b.client, i, nil)
		require.NoError(t, err)
		handles[i] = h
	}

	type result struct {
		i   int
		got int
		err error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := h.Get(ctx)
			results <- result{i, got, err}
		}()
	}

	// Every waiter is subscribed (the hub holds one channel per task).
	redistest.WaitFor(t, 30*time.Second, "1,000 waiters subscribed", func() bool {
		chans, err := b.rdb.PubSubChannels(ctx, backend.DoneChannel("*")).Result()
		return err == nil && len(chans) == n
	})
	list, err := b.rdb.ClientList(ctx).Result()
	require.NoError(t, err)
	clients := strings.Count(strings.TrimSpace(list), "\n") + 1
	t.Logf("%d Redis clients with %d waiters blocked", clients, n)
	require.Less(t, clients, 50, "waiters must share connections:\n%s", list)

	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		require.NoError(t, r.err, "waiter %d", r.i)
		require.Equal(t, r.i, r.got)
	}
}

// TestWaitSurvivesRedisRestart: a waiter blocked across a Redis restart gets
// the result stored after it (the hub resubscribes and re-checks).
func TestWaitSurvivesRedisRestart(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{AOF: true})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	b := &bundle{srv: srv, rdb: rdb, client: c}
	ctx := ctxTimeout(t, 60*time.Second)

	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	long := baton.NewTask("long", func(ctx context.Context, n int) (int, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return n * 10, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	b.startWorker(t, nil, long)

	h, err := long.Enqueue(ctx, c, 4, nil)
	require.NoError(t, err)
	<-entered

	type result struct {
		rec *baton.Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := c.Wait(ctx, h.ID)
		done <- result{rec, err}
	}()
	subscribed := func() bool {
		m, err := rdb.PubSubNumSub(ctx, backend.DoneChannel(h.ID)).Result()
		return err == nil && m[backend.DoneChannel(h.ID)] == 1
	}
	redistest.WaitFor(t, 10*time.Second, "waiter subscribed", subscribed)

	require.NoError(t, srv.Restart())
	// Nothing was lost: the record survived (AOF) and is still running.
	rec, err := c.Get(ctx, h.ID)
	require.NoError(t, err)
	require.Equal(t, baton.Started, rec.State)
	// The hub subscribed again on the new server.
	redistest.WaitFor(t, 10*time.Second, "waiter resubscribed after the restart", subscribed)

	close(release)
	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Equal(t, baton.Success, r.rec.State)
		require.JSONEq(t, `40`, string(r.rec.Result))
	case <-ctx.Done():
		t.Fatal("the waiter did not return after the restart")
	}
	// And the hub is subscribed again for later waiters.
	h2, err := long.Enqueue(ctx, c, 5, nil)
	require.NoError(t, err)
	got, err := h2.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 50, got)
}
