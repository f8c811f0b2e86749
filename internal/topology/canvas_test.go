//go:build topology

package topology_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// arithmetic tasks on e's queue.
type arith struct {
	incr, double *baton.Task[int, int]
	sumAll       *baton.Task[[]int, int]
}

func arithTasks(e *env) arith {
	o := &baton.TaskOptions{Queue: e.queue}
	return arith{
		incr:   baton.NewTask("incr", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, o),
		double: baton.NewTask("double", func(ctx context.Context, n int) (int, error) { return n * 2, nil }, o),
		sumAll: baton.NewTask("sum", func(ctx context.Context, ns []int) (int, error) {
			t := 0
			for _, n := range ns {
				t += n
			}
			return t, nil
		}, o),
	}
}

func (a arith) defs() []baton.Definition { return []baton.Definition{a.incr, a.double, a.sumAll} }

// TestCanvas: a chain, a group and a chord of 10 headers run to their
// results. Every record, join and script of a workflow lives in its
// workflow's hash slot, so no multi-key script crosses slots on a cluster.
func TestCanvas(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		a := arithTasks(e)
		e.worker(t, &baton.WorkerOptions{Concurrency: 8}, a.defs()...)

		t.Run("chain", func(t *testing.T) {
			wf, err := e.client.Submit(ctx, baton.Chain(a.incr.S(0, nil), a.incr.Sig(nil), a.double.Sig(nil)), nil)
			require.NoError(t, err)
			var got int
			require.NoError(t, wf.Get(ctx, &got))
			require.Equal(t, 4, got)
			steps, err := wf.Steps(ctx)
			require.NoError(t, err)
			require.Len(t, steps, 3)
			for _, s := range steps {
				require.Equal(t, baton.Success, s.Record.State)
			}
		})
		t.Run("group", func(t *testing.T) {
			wf, err := e.client.Submit(ctx, baton.Group(a.double.S(1, nil), a.double.S(2, nil), a.double.S(3, nil)), nil)
			require.NoError(t, err)
			var got []int
			require.NoError(t, wf.Get(ctx, &got))
			require.Equal(t, []int{2, 4, 6}, got)
		})
		t.Run("chord of 10", func(t *testing.T) {
			var hdr []baton.Canvas
			want := 0
			for i := range 10 {
				hdr = append(hdr, a.double.S(i, nil))
				want += 2 * i
			}
			wf, err := e.client.Submit(ctx, baton.Chord(baton.Group(hdr...), a.sumAll.Sig(nil)), nil)
			require.NoError(t, err)
			var got int
			require.NoError(t, wf.Get(ctx, &got))
			require.Equal(t, want, got)
		})
	})
}

// TestCancelWorkflow: cancelling a workflow revokes its steps; the running
// step's context is cancelled through asynq's cancel channel (pub/sub), and
// the steps after it never run.
func TestCancelWorkflow(t *testing.T) {
	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, waitLimit)
		started, stopped := make(chan struct{}, 1), make(chan struct{}, 1)
		var afterRan atomic.Int32
		o := &baton.TaskOptions{Queue: e.queue}
		hold := baton.NewTask("hold", func(ctx context.Context, n int) (int, error) {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- struct{}{}
			return 0, ctx.Err()
		}, o)
		after := baton.NewTask("after", func(ctx context.Context, n int) (int, error) { afterRan.Add(1); return n, nil }, o)
		e.worker(t, nil, hold, after)

		wf, err := e.client.Submit(ctx, baton.Chain(hold.S(1, nil), after.Sig(nil), after.Sig(nil)), nil)
		require.NoError(t, err)
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the first step did not start")
		}
		require.NoError(t, e.client.Cancel(ctx, wf.ID))
		_, err = wf.Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
		select {
		case <-stopped:
		case <-ctx.Done():
			t.Fatal("the running step's context was not cancelled")
		}
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		redistest.WaitFor(t, waitLimit, "the running step revoked", func() bool {
			r, err := e.client.Get(ctx, steps[0].Record.ID)
			return err == nil && r.State == baton.Revoked
		})
		for _, s := range steps[1:] {
			require.Equal(t, baton.Revoked, s.Record.State)
		}
		require.Zero(t, afterRan.Load())
	})
}
