package asynqx

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// shaOf is the pinned SHA1 of asynq's script of kind k.
func shaOf(t testing.TB, k scriptKind) string {
	t.Helper()
	for sha, kind := range asynqScripts {
		if kind == k {
			return sha
		}
	}
	t.Fatalf("no pinned script of kind %s", k)
	return ""
}

// dequeueOnce runs asynq's dequeue of queue q on the worker's client, as
// asynq's processor does, and returns the task id it got ("" for none).
func (b *bundle) dequeueOnce(t *testing.T, q string) string {
	t.Helper()
	keys := []string{pendingKey(q), pausedKey(q), activeKey(q), leaseKey(q)}
	res, err := b.worker.EvalSha(context.Background(), shaOf(t, kindDequeue), keys, time.Now().Add(LeaseDuration).Unix(), taskKeyPrefix(q)).Text()
	if err == redis.Nil {
		return ""
	}
	require.NoError(t, err)
	m, err := Decode([]byte(res))
	require.NoError(t, err)
	return m.ID
}

// TestBatchedDequeueRunsEveryTaskOnce: an asynq server with the hook runs
// every task exactly once, acknowledged, dequeuing in batches: never
// asynq's own one-task dequeue script reaches Redis.
func TestBatchedDequeueRunsEveryTaskOnce(t *testing.T) {
	b := setup(t, Options{Concurrency: 20})
	ctx := context.Background()
	ids := b.enqueue(t, "default", "noop", 300)
	var runs sync.Map
	_, lg := b.server(t, 20, nil, func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		n, _ := runs.LoadOrStore(id, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return nil
	})
	b.waitProcessed(t, "default", len(ids))
	for _, id := range ids {
		n, ok := runs.Load(id)
		require.True(t, ok, "task %s never ran", id)
		require.EqualValues(t, 1, n.(*atomic.Int32).Load(), "task %s", id)
	}
	b.requireQueueEmpty(t, "default")
	st := b.hook.Stats()
	require.EqualValues(t, len(ids), st.Moved)
	require.Less(t, st.Batches, st.Dequeues, "no dequeue was served from a batch")
	require.Empty(t, b.wire.sent(kindDequeue), "asynq's one-task dequeue reached Redis")
	require.EqualValues(t, len(ids), st.Acks)
	require.Empty(t, lg.String())
	require.EqualValues(t, 0, b.rdb.Exists(ctx, taskKey("default", ids[0])).Val())
}

// waitProcessed waits until asynq's processed counter of q reaches n.
func (b *bundle) waitProcessed(t *testing.T, q string, n int) {
	t.Helper()
	waitFor(t, "processed counter of "+q, func() bool {
		got, _ := b.rdb.Get(context.Background(), processedTotalKey(q)).Int()
		return got >= n
	})
	got, _ := b.rdb.Get(context.Background(), processedTotalKey(q)).Int()
	require.Equal(t, n, got, "queue %s processed more tasks than it had", q)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireQueueEmpty: nothing pending, active or leased in q.
func (b *bundle) requireQueueEmpty(t *testing.T, q string) {
	t.Helper()
	ctx := context.Background()
	require.Zero(t, b.rdb.LLen(ctx, pendingKey(q)).Val(), "pending")
	require.Zero(t, b.rdb.LLen(ctx, activeKey(q)).Val(), "active")
	require.Zero(t, b.rdb.ZCard(ctx, leaseKey(q)).Val(), "lease")
}

// TestBatchNeverExceedsFreeSlots: a batch takes at most the slots the
// server has free, so no task waits active in the buffer for a slot:
// with every slot busy, Redis holds exactly Concurrency active tasks.
func TestBatchNeverExceedsFreeSlots(t *testing.T) {
	const conc = 10
	b := setup(t, Options{Concurrency: conc})
	ctx := context.Background()
	b.enqueue(t, "default", "block", 100)
	release := make(chan struct{})
	var started atomic.Int32
	b.server(t, conc, nil, func(ctx context.Context, _ *asynq.Task) error {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	t.Cleanup(func() { close(release) })
	waitFor(t, "every slot busy", func() bool { return started.Load() == conc })
	require.EqualValues(t, 1, b.hook.Stats().Batches, "the first batch should fill every free slot at once")
	require.EqualValues(t, conc, b.rdb.LLen(ctx, activeKey("default")).Val())
	require.EqualValues(t, conc, b.rdb.ZCard(ctx, leaseKey("default")).Val())
	require.EqualValues(t, 100-conc, b.rdb.LLen(ctx, pendingKey("default")).Val())
	b.hook.mu.Lock()
	require.Zero(t, b.hook.nbuf, "tasks left in the buffer with no free slot")
	b.hook.mu.Unlock()

	for range 4 {
		release <- struct{}{}
	}
	waitFor(t, "freed slots refilled", func() bool { return started.Load() == conc+4 })
	require.EqualValues(t, conc, b.rdb.LLen(ctx, activeKey("default")).Val())
	require.EqualValues(t, 100-conc-4, b.rdb.LLen(ctx, pendingKey("default")).Val())
}

// TestBatchedStateIsAsynqDequeueState: a task the batch moved to active
// looks, in Redis and to asynq's Inspector, exactly like one asynq's own
// dequeue moved, and ends the same way.
func TestBatchedStateIsAsynqDequeueState(t *testing.T) {
	b := setup(t, Options{Concurrency: 3})
	ctx := context.Background()
	plainIDs := b.enqueue(t, "plain", "block", 1)
	batchIDs := b.enqueue(t, "batched", "block", 3)
	release := make(chan struct{})
	var started atomic.Int32
	handler := func(ctx context.Context, _ *asynq.Task) error {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	plain := redis.NewClient(&redis.Options{Addr: b.srv.Addr})
	t.Cleanup(func() { _ = plain.Close() })
	startServer(t, plain, 1, map[string]int{"plain": 1}, handler)
	b.server(t, 3, map[string]int{"batched": 1}, handler)
	waitFor(t, "all four running", func() bool { return started.Load() == 4 })

	leaseAt := time.Now().Add(LeaseDuration).Unix()
	ref := b.rdb.HGetAll(ctx, taskKey("plain", plainIDs[0])).Val()
	require.Equal(t, "active", ref["state"])
	for _, id := range batchIDs {
		got := b.rdb.HGetAll(ctx, taskKey("batched", id)).Val()
		require.Equal(t, keysOf(ref), keysOf(got), "hash fields of %s", id)
		require.Equal(t, "active", got["state"])
		score := b.rdb.ZScore(ctx, leaseKey("batched"), id).Val()
		require.InDelta(t, leaseAt, score, 3, "lease of %s", id)
		require.Contains(t, b.rdb.LRange(ctx, activeKey("batched"), 0, -1).Val(), id)
		info, err := b.insp.GetTaskInfo("batched", id)
		require.NoError(t, err)
		require.Equal(t, asynq.TaskStateActive, info.State)
	}
	plainScore := b.rdb.ZScore(ctx, leaseKey("plain"), plainIDs[0]).Val()
	require.InDelta(t, leaseAt, plainScore, 3)
	active, err := b.insp.ListActiveTasks("batched")
	require.NoError(t, err)
	require.Len(t, active, 3)

	close(release)
	b.waitProcessed(t, "plain", 1)
	b.waitProcessed(t, "batched", 3)
	b.requireQueueEmpty(t, "plain")
	b.requireQueueEmpty(t, "batched")
	qi, err := b.insp.GetQueueInfo("batched")
	require.NoError(t, err)
	require.Equal(t, 3, qi.Processed)
}

func keysOf(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBufferedTasksGoBackAfterBufferAge: what asynq does not take from the
// buffer within BufferAge goes back to the head of pending, in order, with
// its pending_since, out of active and the lease set.
func TestBufferedTasksGoBackAfterBufferAge(t *testing.T) {
	b := setup(t, Options{Concurrency: 10, BufferAge: 100 * time.Millisecond})
	ctx := context.Background()
	ids := b.enqueue(t, "default", "t", 5)
	since := map[string]string{}
	for _, id := range ids {
		since[id] = b.rdb.HGet(ctx, taskKey("default", id), "pending_since").Val()
		require.NotEmpty(t, since[id])
	}
	require.Equal(t, ids[0], b.dequeueOnce(t, "default"))
	require.EqualValues(t, 5, b.hook.Stats().Moved)

	waitFor(t, "buffered tasks given back", func() bool { return b.rdb.LLen(ctx, pendingKey("default")).Val() == 4 })
	require.Equal(t, []string{ids[0]}, b.rdb.LRange(ctx, activeKey("default"), 0, -1).Val())
	require.Equal(t, []string{ids[0]}, b.rdb.ZRange(ctx, leaseKey("default"), 0, -1).Val())
	pending := b.rdb.LRange(ctx, pendingKey("default"), 0, -1).Val()
	slices.Reverse(pending) // asynq pops from the right
	require.Equal(t, ids[1:], pending, "given back out of order")
	for _, id := range ids[1:] {
		h := b.rdb.HGetAll(ctx, taskKey("default", id)).Val()
		require.Equal(t, "pending", h["state"], id)
		require.Equal(t, since[id], h["pending_since"], id)
	}
	require.EqualValues(t, 4, b.hook.Stats().GivenBack)
	// The next dequeue goes to Redis again and gets the next task.
	require.Equal(t, ids[1], b.dequeueOnce(t, "default"))
}

// TestCloseGivesBufferedTasksBack: Close returns the buffer to pending at
// once, and another server then runs those tasks.
func TestCloseGivesBufferedTasksBack(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	ids := b.enqueue(t, "default", "t", 5)
	require.Equal(t, ids[0], b.dequeueOnce(t, "default"))
	require.EqualValues(t, 5, b.rdb.LLen(ctx, activeKey("default")).Val(), "one handed out, four buffered")
	require.Zero(t, b.rdb.LLen(ctx, pendingKey("default")).Val())
	require.NoError(t, b.hook.Close(ctx))
	require.EqualValues(t, 4, b.rdb.LLen(ctx, pendingKey("default")).Val())
	require.EqualValues(t, 4, b.hook.Stats().GivenBack)

	var ran sync.Map
	plain := redis.NewClient(&redis.Options{Addr: b.srv.Addr})
	t.Cleanup(func() { _ = plain.Close() })
	startServer(t, plain, 2, nil, func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		ran.Store(id, true)
		return nil
	})
	b.waitProcessed(t, "default", 4)
	for _, id := range ids[1:] {
		_, ok := ran.Load(id)
		require.True(t, ok, "task %s given back never ran", id)
	}
}

// TestPausedQueueIsNotDequeued: a paused queue gives nothing, as asynq's
// dequeue; unpaused, it gives its tasks again.
func TestPausedQueueIsNotDequeued(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	ids := b.enqueue(t, "default", "t", 3)
	require.NoError(t, b.insp.PauseQueue("default"))
	require.Empty(t, b.dequeueOnce(t, "default"))
	require.EqualValues(t, 3, b.rdb.LLen(ctx, pendingKey("default")).Val())
	require.Zero(t, b.rdb.LLen(ctx, activeKey("default")).Val())
	require.NoError(t, b.insp.UnpauseQueue("default"))
	require.Equal(t, ids[0], b.dequeueOnce(t, "default"))
}

// TestWeightedQueuesRunEveryTaskOnce: with several queues each batch comes
// from the queue asynq asked for, and every task of every queue runs once.
func TestWeightedQueuesRunEveryTaskOnce(t *testing.T) {
	b := setup(t, Options{Concurrency: 8})
	queues := map[string]int{"high": 3, "low": 1}
	ids := append(b.enqueue(t, "high", "t", 100), b.enqueue(t, "low", "t", 100)...)
	var runs sync.Map
	b.server(t, 8, queues, func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		_, dup := runs.LoadOrStore(id, true)
		if dup {
			t.Errorf("task %s ran twice", id)
		}
		return nil
	})
	b.waitProcessed(t, "high", 100)
	b.waitProcessed(t, "low", 100)
	for _, id := range ids {
		_, ok := runs.Load(id)
		require.True(t, ok, id)
	}
	b.requireQueueEmpty(t, "high")
	b.requireQueueEmpty(t, "low")
}

// TestHeartbeatForgetsTasksAsynqDropped: a task asynq stopped listing in
// its heartbeat without acknowledging it (a lost lease) stops counting
// against the free slots one heartbeat later; listed and newer ones stay.
func TestHeartbeatForgetsTasksAsynqDropped(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	h := b.hook
	beat := func(listed ...string) {
		args := []any{"evalsha", shaOf(t, kindServerState), 2, "asynq:servers:{x}", "asynq:workers:{x}", 10.0, []byte("info")}
		for _, id := range listed {
			args = append(args, id, []byte("w"))
		}
		call, ok := recognise(args)
		require.True(t, ok)
		h.beat(call)
	}
	old := time.Now().Add(-time.Minute)
	h.mu.Lock()
	h.running["kept"] = runningTask{queue: "q", at: old}
	h.running["dropped"] = runningTask{queue: "q", at: old}
	h.fused["dropped"] = true
	h.mu.Unlock()
	beat("kept") // the first heartbeat: nothing was handed out before the previous one
	h.mu.Lock()
	require.Len(t, h.running, 2)
	h.running["new"] = runningTask{queue: "q", at: time.Now()}
	h.mu.Unlock()
	beat("kept")
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Contains(t, h.running, "kept")
	require.Contains(t, h.running, "new", "handed out after the previous heartbeat: asynq may not have listed it yet")
	require.NotContains(t, h.running, "dropped")
	require.NotContains(t, h.fused, "dropped")
}

func TestOptionsValidation(t *testing.T) {
	b := setup(t, Options{Concurrency: 1})
	for _, o := range []Options{{}, {Concurrency: 1, BatchMax: -1}, {Concurrency: 1, BufferAge: 3 * time.Second}} {
		_, err := New(b.rdb, o)
		require.Error(t, err, "%+v", o)
	}
}
