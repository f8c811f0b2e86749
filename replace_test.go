package baton_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

// replaceTasks are tasks that replace themselves with canvases.
type replaceTasks struct {
	runs    *durRuns
	g       *gate
	add     *baton.Task[[]int, int]
	hold    *baton.Task[[]int, int] // add, held at the gate
	addRepl *baton.Task[[]int, int] // replaced by add of its args
	failing *baton.Task[[]int, int]
	toGroup *baton.Task[[]int, int] // replaced by a group adding 1 to each arg
	toBad   *baton.Task[[]int, int] // replaced by an empty chain
	nested  *baton.Task[[]int, int] // replaced by a chain of addRepl and add
	holdRpl *baton.Task[[]int, int] // replaced by hold of its args
	after   *baton.Task[int, int]
	onErr   *baton.Task[map[string]any, string]
}

func newReplaceTasks() *replaceTasks {
	r := &replaceTasks{runs: newDurRuns(), g: newGate()}
	sumOf := func(ns []int) int {
		s := 0
		for _, n := range ns {
			s += n
		}
		return s
	}
	r.add = baton.NewTask("rp.add", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		return sumOf(ns), nil
	}, nil)
	r.hold = baton.NewTask("rp.hold", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		r.g.wait(ctx)
		return sumOf(ns), nil
	}, nil)
	r.addRepl = baton.NewTask("rp.add_replaced", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		return 0, baton.Replace(r.add.SI(ns, nil))
	}, nil)
	r.failing = baton.NewTask("rp.fail_replaced", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		return 0, baton.Replace(baton.Chain(r.add.SI(ns, nil), &baton.Signature{Kind: "rp.boom"}))
	}, nil)
	r.toGroup = baton.NewTask("rp.add_to_all", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		var g []baton.Canvas
		for _, n := range ns {
			g = append(g, r.add.SI([]int{n, 1}, nil))
		}
		return 0, baton.Replace(baton.Group(g...))
	}, nil)
	r.toBad = baton.NewTask("rp.empty_chain", func(ctx context.Context, ns []int) (int, error) {
		return 0, baton.Replace(baton.Chain())
	}, nil)
	r.nested = baton.NewTask("rp.nested", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		return 0, baton.Replace(baton.Chain(r.addRepl.SI(ns, nil), r.add.S([]int{1000}, nil)))
	}, nil)
	r.holdRpl = baton.NewTask("rp.hold_replaced", func(ctx context.Context, ns []int) (int, error) {
		r.runs.hit(ctx)
		return 0, baton.Replace(r.hold.SI(ns, nil))
	}, nil)
	r.after = baton.NewTask("rp.after", func(ctx context.Context, n int) (int, error) {
		r.runs.hit(ctx)
		return n * 10, nil
	}, nil)
	r.onErr = baton.NewTask("rp.on_error", func(ctx context.Context, info map[string]any) (string, error) {
		r.runs.hit(ctx)
		return fmt.Sprint(info["id"]), nil
	}, nil)
	return r
}

func (r *replaceTasks) defs() []baton.Definition {
	boom := baton.NewTask("rp.boom", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(errors.New("boom in the replacement"))
	}, nil)
	return []baton.Definition{r.add, r.hold, r.addRepl, r.failing, r.toGroup, r.toBad, r.nested, r.holdRpl, r.after, r.onErr, boom}
}

func TestReplace(t *testing.T) {
	b := setup(t)
	r := newReplaceTasks()
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 8}, r.defs()...)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("the replacement's result is the task's, handed on", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(r.addRepl.S([]int{2, 3}, nil), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 50, got)
		ids := durSteps(t, ctx, wf)
		rec := durRecord(t, ctx, b.client, ids[0])
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, "5", string(rec.Result))
		require.Equal(t, ids[0]+".r", rec.Replaced, "the record names the replacement")
		require.Equal(t, 1, rec.Executions)
		sub, err := b.client.Workflow(ctx, rec.Replaced)
		require.NoError(t, err)
		subRec, err := sub.Wait(ctx)
		require.NoError(t, err)
		require.JSONEq(t, "5", string(subRec.Result))
	})

	t.Run("a task enqueued on its own", func(t *testing.T) {
		h, err := r.addRepl.Enqueue(ctx, b.client, []int{40, 2}, nil)
		require.NoError(t, err)
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 42, got)
	})

	t.Run("replaced by a group, in a group: order kept", func(t *testing.T) {
		var members []baton.Canvas
		for i := range 10 {
			members = append(members, r.toGroup.S([]int{2 * i, 2*i + 1}, nil))
		}
		wf, err := b.client.Submit(ctx, baton.Group(members...), nil)
		require.NoError(t, err)
		var got [][]int
		require.NoError(t, wf.Get(ctx, &got))
		require.Len(t, got, 10)
		for i, g := range got {
			require.Equal(t, []int{2*i + 1, 2*i + 2}, g)
		}
	})

	t.Run("replaced by an empty group: []", func(t *testing.T) {
		h, err := r.toGroup.Enqueue(ctx, b.client, []int{}, nil)
		require.NoError(t, err)
		got, err := h.Handle.Wait(ctx)
		require.NoError(t, err)
		require.JSONEq(t, "[]", string(got.Result))
	})

	t.Run("a replacement that replaces itself", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(r.nested.S([]int{1, 2}, nil), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 10030, got)
		ids := durSteps(t, ctx, wf)
		inner := durRecord(t, ctx, b.client, ids[0]+".r.1")
		require.Equal(t, ids[0]+".r.1.r", inner.Replaced)
	})

	t.Run("a failed replacement fails the task and what follows", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(r.failing.S([]int{1}, nil).WithOnError(r.onErr.Sig(nil)), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		_, err = wf.Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "boom in the replacement")
		ids := durSteps(t, ctx, wf)
		rec := waitState(t, b, ids[0], baton.Failure)
		require.Contains(t, rec.Error, "replaced by workflow "+ids[0]+".r, which failed")
		after := waitState(t, b, ids[1], baton.Failure)
		require.Contains(t, after.Error, "parent "+ids[0]+" failed")
		eb := waitState(t, b, ids[0]+".err", baton.Success)
		require.JSONEq(t, fmt.Sprintf("%q", ids[0]), string(eb.Result), "the task's own on_error ran")
		require.Zero(t, r.runs.get(ids[1]))
	})

	t.Run("an invalid replacement fails the task at once", func(t *testing.T) {
		h, err := r.toBad.Enqueue(ctx, b.client, []int{1}, nil)
		require.NoError(t, err)
		_, err = h.Get(ctx)
		_ = requireTaskError(t, err, baton.Failure, "replace:", "a chain needs at least one step")
	})

	t.Run("cancelling the workflow cancels the replacement", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(r.holdRpl.S([]int{7}, nil), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		held := ids[0] + ".r.1"
		select {
		case got := <-r.g.running:
			require.Equal(t, held, got)
		case <-ctx.Done():
			t.Fatal("the replacement never started")
		}
		require.NoError(t, b.client.Cancel(ctx, wf.ID))
		_, err = wf.Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		waitState(t, b, held, baton.Revoked) // its context was cancelled
		sub, err := b.client.Workflow(ctx, ids[0]+".r")
		require.NoError(t, err)
		_, err = sub.Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		require.Zero(t, r.runs.get(ids[1]))
	})
}

// TestReplaceRedelivery: a replacing task delivered again never starts its
// replacement twice, and the task completes (and hands on) exactly once.
func TestReplaceRedelivery(t *testing.T) {
	b := setup(t)
	r := newReplaceTasks()
	defs := r.defs()
	b.client.Declare(defs...)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("delivered again while its replacement runs, and after", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(r.holdRpl.S([]int{4}, nil), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		first := durQueued(t, b.rdb, ids[0]) // the replacing task's delivery
		_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, defs...)
		defer stop()

		held := ids[0] + ".r.1"
		last := r.g.activePayload(t, b, held) // the replacement's last step
		// The replacing task was done with (acked) and is delivered again,
		// as after a crash before the ack: its handler does not run again.
		durDuplicate(t, b.rdb, first, ids[0]+"-dup1")
		durWaitProcessed(t, b.rdb, ids[0]+"-dup1", false)
		require.Equal(t, 1, r.runs.get(ids[0]))
		require.Equal(t, baton.Started, durRecord(t, ctx, b.client, ids[0]).State, "still waiting on its replacement")

		r.g.release(held)
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 40, got)
		waitAsynqGone(t, b, baton.QueueDefault, held)

		// After everything: the replacing task, and the replacement's last
		// step (which reports the end to the task again), once more each.
		durDuplicate(t, b.rdb, first, ids[0]+"-dup2")
		durDuplicate(t, b.rdb, last, held+"-dup")
		durWaitProcessed(t, b.rdb, ids[0]+"-dup2", false)
		durWaitProcessed(t, b.rdb, held+"-dup", false)
		for _, id := range []string{ids[0], held, ids[1]} {
			require.Equal(t, 1, r.runs.get(id), "%s ran once", id)
		}
		rec := durRecord(t, ctx, b.client, ids[0])
		require.Equal(t, baton.Success, rec.State)
		require.Equal(t, 1, rec.Executions)
		require.Equal(t, 1, durRecord(t, ctx, b.client, ids[1]).Executions, "the next step was enqueued and ran once")
	})

	t.Run("two deliveries replacing at once start one replacement", func(t *testing.T) {
		// Both deliveries run the handler (neither finds the replacement
		// recorded when it starts), as when a worker dies after submitting
		// the replacement and before recording it.
		var mu sync.Mutex
		arrived := 0
		both := make(chan struct{})
		twice := baton.NewTask("rp.twice", func(ctx context.Context, ns []int) (int, error) {
			r.runs.hit(ctx)
			mu.Lock()
			arrived++
			if arrived == 2 {
				close(both)
			}
			mu.Unlock()
			select {
			case <-both:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return 0, baton.Replace(baton.Chain(r.add.SI(ns, nil), r.add.S([]int{1}, nil)))
		}, nil)
		b.client.Declare(twice)
		wf, err := b.client.Submit(ctx, baton.Chain(twice.S([]int{5, 6}, nil), r.after.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		durDuplicate(t, b.rdb, durQueued(t, b.rdb, ids[0]), ids[0]+"-dup")
		_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, append(defs[:len(defs):len(defs)], twice)...)
		defer stop()

		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 120, got)
		durWaitProcessed(t, b.rdb, ids[0], false)
		durWaitProcessed(t, b.rdb, ids[0]+"-dup", false)
		require.Equal(t, 2, r.runs.get(ids[0]), "both deliveries ran the handler")
		for _, id := range []string{ids[0] + ".r.1", ids[0] + ".r.2", ids[1]} {
			require.Equal(t, 1, r.runs.get(id), "%s ran once", id)
			require.Equal(t, 1, durRecord(t, ctx, b.client, id).Executions)
		}
	})
}
