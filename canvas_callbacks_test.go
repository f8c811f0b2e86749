package baton_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// Link callbacks, canvas-level error callbacks, empty groups and call-time
// input: the guarantees around them. Celery's own cases are in
// celery_canvas_test.go.

// gate holds a task's handler until released, and lets the test see that it
// is running.
type gate struct {
	mu      sync.Mutex
	held    map[string]chan struct{}
	running chan string
}

func newGate() *gate { return &gate{held: map[string]chan struct{}{}, running: make(chan string, 16)} }

// wait blocks the handler of task id until release(id).
func (g *gate) wait(ctx context.Context) {
	info, _ := baton.InfoFrom(ctx)
	g.mu.Lock()
	ch, ok := g.held[info.ID]
	if !ok {
		ch = make(chan struct{})
		g.held[info.ID] = ch
	}
	g.mu.Unlock()
	g.running <- info.ID
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (g *gate) release(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.held[id]
	if !ok {
		ch = make(chan struct{})
		g.held[id] = ch
	}
	close(ch)
}

// activePayload waits for g to report task id running and returns the
// delivery asynq holds for it, to deliver again later.
func (g *gate) activePayload(t *testing.T, b *bundle, id string) *asynq.TaskInfo {
	t.Helper()
	select {
	case got := <-g.running:
		require.Equal(t, id, got)
	case <-time.After(waitLimit):
		t.Fatalf("task %s never started", id)
	}
	info, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo(baton.QueueDefault, id)
	require.NoError(t, err)
	return info
}

// TestLinkCallbacksOnceUnderRedelivery: a step delivered again after its
// success (a crash before asynq's ack) enqueues its link callbacks again
// under the same ids, and nothing runs twice: not the callbacks, not the
// next step. A callback whose PENDING record was written by a delivery that
// died before enqueuing it still runs.
func TestLinkCallbacksOnceUnderRedelivery(t *testing.T) {
	b := setup(t)
	runs := newDurRuns()
	g := newGate()
	step := baton.NewTask("lk.step", func(ctx context.Context, n int) (int, error) {
		runs.hit(ctx)
		if n == 1 {
			g.wait(ctx) // the last step: held so its delivery can be captured
		}
		return n + 1, nil
	}, nil)
	note := baton.NewTask("lk.note", func(ctx context.Context, n int) (int, error) {
		runs.hit(ctx)
		return n * 100, nil
	}, nil)
	defs := []baton.Definition{step, note}
	b.client.Declare(defs...)
	ctx := ctxTimeout(t, 40*time.Second)

	wf, err := b.client.Submit(ctx, baton.Chain(step.S(0, nil).WithLink(note.Sig(nil)), step.Sig(nil)).WithLink(note.Sig(nil)), nil)
	require.NoError(t, err)
	ids := durSteps(t, ctx, wf)
	stepLink, chainLink := ids[0]+".link", wf.ID+".n0.link"
	// As if a first delivery of the last step had recorded its chain's link
	// PENDING and died before enqueuing it.
	require.NoError(t, b.client.Backend().MarkPending(ctx, backend.Meta{ID: chainLink, Kind: note.Kind(), Queue: baton.QueueDefault}))
	first := durQueued(t, b.rdb, ids[0])

	_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, defs...)
	defer stop()
	last := g.activePayload(t, b, ids[1])
	g.release(ids[1])
	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, 2, got, "a link does not change the result")
	waitAsynqGone(t, b, baton.QueueDefault, ids[1])

	require.JSONEq(t, "100", string(waitState(t, b, stepLink, baton.Success).Result), "the step's link got the step's result")
	require.JSONEq(t, "200", string(waitState(t, b, chainLink, baton.Success).Result), "the chain's link got the chain's result")

	durDuplicate(t, b.rdb, first, ids[0]+"-dup")
	durDuplicate(t, b.rdb, last, ids[1]+"-dup")
	durWaitProcessed(t, b.rdb, ids[0]+"-dup", false)
	durWaitProcessed(t, b.rdb, ids[1]+"-dup", false)
	// The callbacks enqueued again by the duplicates were processed too.
	waitAsynqGone(t, b, baton.QueueDefault, stepLink)
	waitAsynqGone(t, b, baton.QueueDefault, chainLink)
	for _, id := range []string{ids[0], ids[1], stepLink, chainLink} {
		require.Equal(t, 1, runs.get(id), "%s ran once", id)
		require.Equal(t, 1, durRecord(t, ctx, b.client, id).Executions, "%s executed once", id)
	}
}

// TestCanvasErrorCallbackOnce: an on_error on a group fires once however
// many members fail, with the first failure's info; on every member it
// fires per failure.
func TestCanvasErrorCallbackOnce(t *testing.T) {
	b := setup(t)
	var mu sync.Mutex
	infos := map[string][]map[string]any{}
	fail := baton.NewTask("oe.fail", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(fmt.Errorf("failed at %d", n))
	}, nil)
	record := baton.NewTask("oe.record", func(ctx context.Context, info map[string]any) (bool, error) {
		ti, _ := baton.InfoFrom(ctx)
		mu.Lock()
		infos[ti.ID] = append(infos[ti.ID], info)
		mu.Unlock()
		return true, nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 8}, fail, record)
	ctx := ctxTimeout(t, 30*time.Second)

	members := []baton.Canvas{}
	for i := range 5 {
		members = append(members, fail.S(i, nil).WithOnError(record.Sig(nil)))
	}
	wf, err := b.client.Submit(ctx, baton.Group(members...).WithOnError(record.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, "failed at")
	steps := durSteps(t, ctx, wf)
	for _, id := range steps {
		waitState(t, b, id+".err", baton.Success)
	}
	groupErr := waitState(t, b, wf.ID+".n0.err", baton.Success)
	require.Equal(t, 1, groupErr.Executions)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, infos[wf.ID+".n0.err"], 1, "the group's on_error ran once")
	first := infos[wf.ID+".n0.err"][0]
	require.Contains(t, steps, first["id"], "with a failed member's info")
	require.Equal(t, "oe.fail", first["kind"])
	require.Equal(t, wf.ID, first["workflow"])
	for _, id := range steps {
		require.Len(t, infos[id+".err"], 1, "member %s's own on_error ran once", id)
		require.Equal(t, id, infos[id+".err"][0]["id"])
	}
}

// TestSubmitInput: SubmitOpts.Input feeds the first steps as a previous
// result would; a resubmission keeps the input stored first.
func TestSubmitInput(t *testing.T) {
	b := setup(t)
	addAll := baton.NewTask("in.add", func(ctx context.Context, ns []int) (int, error) {
		s := 0
		for _, n := range ns {
			s += n
		}
		return s, nil
	}, nil)
	b.startWorker(t, nil, addAll, incr)
	ctx := ctxTimeout(t, 20*time.Second)

	cv := baton.Chain(baton.Group(addAll.S([]int{10}, nil), addAll.S([]int{20, 1}, nil), incr.Sig(nil)), addAll.Sig(nil))
	wf, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "with-input", Input: json.RawMessage("5")})
	require.NoError(t, err)
	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, (5+10)+(5+20+1)+(5+1), got)

	again, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "with-input", Input: json.RawMessage("1000")})
	require.NoError(t, err)
	require.JSONEq(t, "5", string(again.Plan.Input), "the stored input wins")
	require.NoError(t, again.Get(ctx, &got))
	require.Equal(t, 47, got)

	_, err = b.client.Submit(ctx, cv, &baton.SubmitOpts{Input: json.RawMessage("{nope")})
	require.ErrorIs(t, err, baton.ErrInvalidCanvas)
	require.Contains(t, err.Error(), "SubmitOpts.Input is not valid JSON")

	_, err = b.client.Submit(ctx, incr.SI(1, nil).WithLink(&baton.Signature{Kind: "in.add", Args: json.RawMessage("3")}), nil)
	require.ErrorIs(t, err, baton.ErrInvalidCanvas)
	require.Contains(t, err.Error(), `link callback "in.add" of task`, "a callback that cannot take its input is refused at submit")
}

// TestEmptyCanvases: an empty group is [] at once, even at the root (the
// workflow ends as it is submitted, its link runs); an empty chord header
// runs the body with [].
func TestEmptyCanvases(t *testing.T) {
	b := setup(t)
	count := baton.NewTask("em.count", func(ctx context.Context, xs []int) (int, error) { return len(xs) + 100, nil }, nil)
	b.startWorker(t, nil, count, sum)
	ctx := ctxTimeout(t, 20*time.Second)

	wf, err := b.client.Submit(ctx, baton.Group().WithLink(count.Sig(nil)), nil)
	require.NoError(t, err)
	rec, err := wf.Record(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Success, rec.State, "recorded at submit")
	require.JSONEq(t, "[]", string(rec.Result))
	require.JSONEq(t, "100", string(waitState(t, b, wf.ID+".n0.link", baton.Success).Result))

	wf, err = b.client.Submit(ctx, baton.Chord(baton.Group(), sum.Sig(nil)), nil)
	require.NoError(t, err)
	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Zero(t, got)

	redistest.WaitFor(t, waitLimit, "nothing left queued", func() bool {
		qi, err := asynq.NewInspectorFromRedisClient(b.rdb).GetQueueInfo(baton.QueueDefault)
		return err == nil && qi.Size == 0
	})
}
