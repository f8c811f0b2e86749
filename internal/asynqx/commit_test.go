package asynqx

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// loadAsynqScripts has a plain asynq server (no hook) run one task, so that
// Redis holds asynq's dequeue and done scripts and the tests can call them
// by SHA1 as asynq does.
func (b *bundle) loadAsynqScripts(t *testing.T) {
	t.Helper()
	b.enqueue(t, "warmup", "t", 1)
	plain := redis.NewClient(&redis.Options{Addr: b.srv.Addr})
	defer plain.Close()
	srv, _ := startServer(t, plain, 1, map[string]int{"warmup": 1}, func(context.Context, *asynq.Task) error { return nil })
	b.waitProcessed(t, "warmup", 1)
	srv.Shutdown()
}

// doneArgs are asynq's done script's KEYS and ARGV for task id of q.
func doneArgs(q, id string) ([]string, []any) {
	now := time.Now()
	return []string{activeKey(q), leaseKey(q), taskKey(q, id), processedKey(q, now), processedTotalKey(q)},
		[]any{id, now.Add(statsTTL).Unix(), int64(1<<63 - 1)}
}

// done runs asynq's done script for id on the worker's client, as asynq's
// processor does.
func (b *bundle) done(t testing.TB, q, id string) error {
	keys, args := doneArgs(q, id)
	return b.worker.EvalSha(context.Background(), shaOf(t, kindDone), keys, args...).Err()
}

// dequeueAll takes n tasks of q through the hook, as asynq's processor.
func (b *bundle) dequeueAll(t *testing.T, q string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.dequeueOnce(t, q)
		require.NotEmpty(t, ids[i])
	}
	return ids
}

// TestGroupCommitGivesEachCallerItsReply: concurrent acknowledgements go
// to Redis in one pipeline, and each caller gets its own reply: OK, or
// NOT FOUND for a task that is not active.
func TestGroupCommitGivesEachCallerItsReply(t *testing.T) {
	const valid, invalid = 20, 5
	b := setup(t, Options{Concurrency: 30, Linger: time.Minute, GroupMax: valid + invalid})
	b.loadAsynqScripts(t)
	b.enqueue(t, "default", "t", valid)
	ids := b.dequeueAll(t, "default", valid)
	for i := range invalid {
		ids = append(ids, fmt.Sprintf("missing-%d", i))
	}
	before := b.wire.roundTrips()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = b.done(t, "default", id) })
	}
	wg.Wait()
	for i, err := range errs {
		if i < valid {
			require.NoError(t, err, ids[i])
		} else {
			require.ErrorContains(t, err, "NOT FOUND", ids[i])
		}
	}
	require.Equal(t, 1, b.wire.roundTrips()-before, "the acknowledgements took more than one round trip")
	st := b.hook.Stats()
	require.EqualValues(t, 1, st.Groups)
	require.EqualValues(t, valid+invalid, st.Grouped)
	b.waitProcessed(t, "default", valid)
	b.requireQueueEmpty(t, "default")
}

// TestCloseSendsQueuedAcknowledgements: acknowledgements waiting in a
// group commit's linger when the hook closes are sent, not dropped.
func TestCloseSendsQueuedAcknowledgements(t *testing.T) {
	b := setup(t, Options{Concurrency: 10, Linger: time.Minute})
	b.loadAsynqScripts(t)
	b.enqueue(t, "default", "t", 3)
	ids := b.dequeueAll(t, "default", 3)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = b.done(t, "default", id) })
	}
	waitFor(t, "three acknowledgements lingering", func() bool { return b.hook.commit.waiting.Load() == 3 })
	require.NoError(t, b.hook.Close(context.Background()))
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	b.waitProcessed(t, "default", 3)
	// Closed, the hook passes acknowledgements straight through.
	require.ErrorContains(t, b.done(t, "default", "missing"), "NOT FOUND")
}

// TestHookSurvivesScriptFlush: after Redis forgets its scripts (a restart,
// SCRIPT FLUSH), the batch dequeue loads itself again and asynq's
// acknowledgements in a group commit fall back to EVAL through go-redis.
func TestHookSurvivesScriptFlush(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	b.enqueue(t, "default", "t", 50)
	_, lg := b.server(t, 10, nil, func(context.Context, *asynq.Task) error { return nil })
	b.waitProcessed(t, "default", 50)
	require.NoError(t, b.rdb.ScriptFlush(ctx).Err())
	evals := b.wire.evalCount()
	b.enqueue(t, "default", "t", 50)
	b.waitProcessed(t, "default", 100)
	require.Greater(t, b.wire.evalCount(), evals, "no script was sent again")
	b.requireQueueEmpty(t, "default")
	require.Empty(t, lg.String())
}

// TestGroupCommitOff: with Linger < 0 every acknowledgement is its own
// round trip, and tasks still run once each.
func TestGroupCommitOff(t *testing.T) {
	b := setup(t, Options{Concurrency: 10, Linger: -1})
	b.enqueue(t, "default", "t", 50)
	b.server(t, 10, nil, func(context.Context, *asynq.Task) error { return nil })
	b.waitProcessed(t, "default", 50)
	require.Len(t, b.wire.sent(kindDone), 50)
	require.Zero(t, b.hook.Stats().Groups)
}
