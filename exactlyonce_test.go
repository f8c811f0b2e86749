package baton_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// TestSuccessNeverRunsTwice: a task whose SUCCESS is recorded is not run
// again when it is delivered again, and no late write moves it off SUCCESS.
func TestSuccessNeverRunsTwice(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	ran := newRunLog()
	gate := make(chan struct{})
	once := baton.NewTask("once", func(ctx context.Context, n int) (int, error) {
		ran.begin(ctx)
		if n == 100 {
			<-gate
		}
		return n + 1, nil
	}, nil)
	b.startWorker(t, nil, once)
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	processed := func() int {
		qi, err := insp.GetQueueInfo(baton.QueueDefault)
		require.NoError(t, err)
		return qi.ProcessedTotal
	}

	t.Run("redelivery after success", func(t *testing.T) {
		// Capture the exact message asynq holds while it runs, then deliver
		// that same message again (what a crash before asynq's ack looks like).
		id := "redeliver-1"
		h, err := once.Enqueue(ctx, b.client, 100, &baton.EnqueueOpts{ID: id})
		require.NoError(t, err)
		var info *asynq.TaskInfo
		redistest.WaitFor(t, waitLimit, "task active", func() bool {
			info, err = insp.GetTaskInfo(baton.QueueDefault, id)
			return err == nil && info.State == asynq.TaskStateActive
		})
		payload := info.Payload
		close(gate)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 101, got)
		waitAsynqGone(t, b, baton.QueueDefault, id)
		before := processed()

		aq := asynq.NewClientFromRedisClient(b.rdb)
		_, err = aq.EnqueueContext(ctx, asynq.NewTask("once", payload), asynq.TaskID(id), asynq.MaxRetry(3))
		require.NoError(t, err)
		redistest.WaitFor(t, waitLimit, "second delivery processed", func() bool { return processed() == before+1 })
		waitAsynqGone(t, b, baton.QueueDefault, id)

		require.Equal(t, 1, ran.count(id), "the handler ran once")
		rec, err := b.client.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, `101`, string(rec.Result))
		require.Equal(t, 1, rec.Executions)
	})

	t.Run("enqueue of a finished id", func(t *testing.T) {
		id := "finished-1"
		h, err := once.Enqueue(ctx, b.client, 5, &baton.EnqueueOpts{ID: id})
		require.NoError(t, err)
		_, err = h.Get(ctx)
		require.NoError(t, err)
		waitAsynqGone(t, b, baton.QueueDefault, id)
		before := processed()

		h2, err := b.client.EnqueueKind(ctx, "once", 5, &baton.EnqueueOpts{ID: id})
		require.NoError(t, err, "enqueuing a known id is idempotent, not an error")
		rec, err := h2.Wait(ctx)
		require.NoError(t, err)
		require.JSONEq(t, `6`, string(rec.Result))
		// If a copy was queued, let it be processed before counting runs.
		waitAsynqGone(t, b, baton.QueueDefault, id)
		require.LessOrEqual(t, processed(), before+1)
		require.Equal(t, 1, ran.count(id))
		require.Equal(t, 1, rec.Executions)
	})

	be := b.client.Backend()
	t.Run("late RETRY does not overwrite SUCCESS", func(t *testing.T) {
		h, err := once.Enqueue(ctx, b.client, 10, nil)
		require.NoError(t, err)
		_, err = h.Wait(ctx)
		require.NoError(t, err)
		before, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)

		for _, st := range []baton.State{baton.Retry, baton.Failure, baton.Revoked, baton.Success} {
			got, err := be.Finish(ctx, backend.Outcome{ID: h.ID, State: st, Error: "late", Result: json.RawMessage(`99`), Retries: 7, NextTry: time.Now().Add(time.Hour)})
			require.NoError(t, err)
			require.Equal(t, baton.Success, got.State, "Finish(%s) reports the kept state", st)
			require.JSONEq(t, `11`, string(got.Result))
		}
		after, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, before, after, "the record is untouched")
	})

	t.Run("STARTED on a SUCCESS record", func(t *testing.T) {
		h, err := once.Enqueue(ctx, b.client, 20, nil)
		require.NoError(t, err)
		_, err = h.Wait(ctx)
		require.NoError(t, err)
		before, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)

		st, err := be.Start(ctx, backend.StartRequest{Meta: backend.Meta{ID: h.ID, Kind: "once"}, Retries: 3})
		require.NoError(t, err)
		require.Equal(t, baton.Success, st.State)
		require.JSONEq(t, `21`, string(st.Result))
		after, err := b.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, before, after, "the record is untouched")
	})
}

// TestDuplicateSubmission: enqueuing an id that is already queued does not
// run the task again.
func TestDuplicateSubmission(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	ran := newRunLog()
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	dup := baton.NewTask("dup", func(ctx context.Context, block bool) (string, error) {
		id, _ := ran.begin(ctx)
		if block {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return id, nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Queues: map[string]int{"default": 1, "other": 1}}, dup)

	t.Run("same queue while scheduled", func(t *testing.T) {
		opts := &baton.EnqueueOpts{ID: "dup-1", Countdown: 1200 * time.Millisecond}
		h1, err := dup.Enqueue(ctx, b.client, false, opts)
		require.NoError(t, err)
		h2, err := dup.Enqueue(ctx, b.client, false, opts)
		require.NoError(t, err, "a duplicate submission is not an error")
		require.Equal(t, h1.ID, h2.ID)
		_, err = b.client.EnqueueKind(ctx, "dup", false, &baton.EnqueueOpts{ID: "dup-1"})
		require.NoError(t, err)

		got, err := h2.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, "dup-1", got)
		waitAsynqGone(t, b, baton.QueueDefault, "dup-1")
		require.Equal(t, 1, ran.count("dup-1"))
	})

	t.Run("other queue while running", func(t *testing.T) {
		h, err := dup.Enqueue(ctx, b.client, true, &baton.EnqueueOpts{ID: "dup-2"})
		require.NoError(t, err)
		<-entered
		_, err = dup.Enqueue(ctx, b.client, true, &baton.EnqueueOpts{ID: "dup-2", Queue: "other"})
		require.NoError(t, err)
		// Let every copy of dup-2 be delivered and settle before releasing
		// the first: the copy on "other" must not start a second run.
		insp := asynq.NewInspectorFromRedisClient(b.rdb)
		redistest.WaitFor(t, waitLimit, "the copy on queue other was taken off the queue", func() bool {
			info, err := insp.GetTaskInfo("other", "dup-2")
			return err != nil || (info.State != asynq.TaskStatePending && info.State != asynq.TaskStateScheduled)
		})
		redistest.WaitFor(t, waitLimit, "the copy on queue other settled", func() bool {
			info, err := insp.GetTaskInfo("other", "dup-2")
			if err != nil || info.State != asynq.TaskStateActive {
				return true
			}
			rec, err := b.client.Get(ctx, "dup-2")
			return err == nil && rec.Executions > 1 // it started a run
		})
		close(release)
		_, err = h.Wait(ctx)
		require.NoError(t, err)
		waitAsynqGone(t, b, baton.QueueDefault, "dup-2")
		waitAsynqGone(t, b, "other", "dup-2")
		require.Equal(t, 1, ran.count("dup-2"), "a duplicate submission on another queue ran the task again")
	})
}
