//go:build topology

package asynqx

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// hookOn adds a hook to a topology's worker client, closed when t ends.
func hookOn(t *testing.T, worker redis.UniversalClient, conc int) *Hook {
	t.Helper()
	h, err := New(worker, Options{Concurrency: conc})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, h.Close(context.Background()))
		_ = worker.Close()
	})
	return h
}

func processedOn(t *testing.T, rdb redis.UniversalClient, q string, n int) {
	t.Helper()
	waitFor(t, "processed counter of "+q, func() bool {
		got, _ := rdb.Get(context.Background(), processedTotalKey(q)).Int()
		return got >= n
	})
}

// TestBatchedDequeueOnCluster: batched dequeue and group commit work on
// Redis Cluster (every key of a batch is in the queue's {q} slot; a group
// commit's pipeline is split by node), and fused completion refuses.
func TestBatchedDequeueOnCluster(t *testing.T) {
	cl := redistest.MustStartCluster(t, redistest.ClusterOptions{NodeTimeout: 5 * time.Second})
	rdb := cl.Client(t)
	worker := cl.NewClient(nil)
	h := hookOn(t, worker, 10)
	require.False(t, h.Fused())
	_, err := h.Complete(context.Background(), NewCompleter(""), Completion{})
	require.ErrorIs(t, err, ErrFusedUnavailable)

	ac := asynq.NewClientFromRedisClient(rdb)
	queues := map[string]int{"one": 1, "two": 1}
	for q := range queues {
		for range 100 {
			_, err := ac.Enqueue(asynq.NewTask("t", nil), asynq.Queue(q))
			require.NoError(t, err)
		}
	}
	var runs sync.Map
	startServer(t, worker, 10, queues, func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if _, dup := runs.LoadOrStore(id, true); dup {
			t.Errorf("task %s ran twice", id)
		}
		return nil
	})
	for q := range queues {
		processedOn(t, rdb, q, 100)
	}
	st := h.Stats()
	require.EqualValues(t, 200, st.Moved)
	require.Less(t, st.Batches, st.Dequeues)
	require.Greater(t, st.Grouped, int64(0))
}

// TestFusedOnSentinel: on a Sentinel-managed master the fused completion is
// available and hands a chain on.
func TestFusedOnSentinel(t *testing.T) {
	ss := redistest.MustStartSentinel(t, redistest.SentinelOptions{DownAfter: 5 * time.Second})
	rdb := ss.Client(t, 0)
	worker := ss.NewClient(nil)
	h := hookOn(t, worker, 5)
	require.True(t, h.Fused())
	ac := asynq.NewClientFromRedisClient(rdb)
	for range 20 {
		_, err := ac.Enqueue(asynq.NewTask("a", []byte("x")))
		require.NoError(t, err)
	}
	c := NewCompleter("")
	_, lg := startServer(t, worker, 5, nil, func(ctx context.Context, task *asynq.Task) error {
		if task.Type() == "b" {
			return nil
		}
		id, _ := asynq.GetTaskID(ctx)
		res, err := h.Complete(ctx, c, Completion{TaskID: id, Next: []Next{{Msg: nextMsg("b-"+id, "b", "default", task.Payload())}}})
		if err == nil && !res.Acked {
			err = errors.New("not acknowledged")
		}
		return err
	})
	processedOn(t, rdb, "default", 40)
	require.EqualValues(t, 20, h.Stats().LocalAcks)
	require.Empty(t, lg.String())
}
