package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

type num struct {
	N     int  `json:"n"`
	Input *int `json:"input,omitempty"`
}

var (
	incr   = baton.NewTask("incr", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	double = baton.NewTask("double", func(ctx context.Context, n int) (int, error) { return n * 2, nil }, nil)
	sum    = baton.NewTask("sum", func(ctx context.Context, ns []int) (int, error) {
		t := 0
		for _, n := range ns {
			t += n
		}
		return t, nil
	}, nil)
	addTo = baton.NewTask("add_to", func(ctx context.Context, a num) (int, error) {
		if a.Input == nil {
			return a.N, nil
		}
		return a.N + *a.Input, nil
	}, nil)
	boom = baton.NewTask("boom", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(fmt.Errorf("boom on %d", n))
	}, nil)
)

func canvasWorker(t *testing.T, b *bundle, extra ...baton.Definition) {
	defs := append([]baton.Definition{incr, double, sum, addTo, boom}, extra...)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 8}, defs...)
}

func TestChain(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 20*time.Second)

	for _, n := range []int{2, 3, 10} {
		t.Run(fmt.Sprintf("%d steps", n), func(t *testing.T) {
			steps := []baton.Canvas{incr.S(0, nil)}
			for i := 1; i < n; i++ {
				steps = append(steps, incr.Sig(nil))
			}
			wf, err := b.client.Submit(ctx, baton.Chain(steps...), nil)
			require.NoError(t, err)
			var got int
			require.NoError(t, wf.Get(ctx, &got))
			require.Equal(t, n, got)
			st, err := wf.Steps(ctx)
			require.NoError(t, err)
			require.Len(t, st, n)
			for _, s := range st {
				require.Equal(t, baton.Success, s.Record.State)
			}
		})
	}
	t.Run("partial and immutable", func(t *testing.T) {
		// 1 → +10 (partial: input beside n) → immutable 100 → double
		wf, err := b.client.Submit(ctx, baton.Chain(incr.S(0, nil), addTo.S(num{N: 10}, nil), incr.SI(99, nil), double.Sig(nil)), nil)
		require.NoError(t, err)
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 200, got)
	})
}

func TestGroupAndChord(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("group order", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Group(double.S(1, nil), double.S(2, nil), double.S(3, nil)), nil)
		require.NoError(t, err)
		var got []int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, []int{2, 4, 6}, got)
	})
	for _, n := range []int{1, 10, 1000} {
		t.Run(fmt.Sprintf("chord of %d", n), func(t *testing.T) {
			var hdr []baton.Canvas
			want := 0
			for i := range n {
				hdr = append(hdr, double.S(i, nil))
				want += 2 * i
			}
			wf, err := b.client.Submit(ctx, baton.Chord(baton.Group(hdr...), sum.Sig(nil)), nil)
			require.NoError(t, err)
			var got int
			require.NoError(t, wf.Get(ctx, &got))
			require.Equal(t, want, got)
		})
	}
}

func TestChainFailure(t *testing.T) {
	b := setup(t)
	var ran atomic.Int32
	after := baton.NewTask("after", func(ctx context.Context, n int) (int, error) { ran.Add(1); return n, nil }, nil)
	canvasWorker(t, b, after)
	ctx := ctxTimeout(t, 20*time.Second)
	wf, err := b.client.Submit(ctx, baton.Chain(incr.S(1, nil), boom.Sig(nil), after.Sig(nil), after.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	var te *baton.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, baton.Failure, te.State)
	require.Contains(t, te.Message, "boom on 2")
	st, err := wf.Steps(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Success, st[0].Record.State)
	require.Equal(t, baton.Failure, st[1].Record.State)
	for _, s := range st[2:] {
		require.Equal(t, baton.Failure, s.Record.State, "a skipped step fails with its parent's error (Celery's states)")
		require.Contains(t, s.Record.Error, "parent "+st[1].Record.ID+" failed: boom on 2")
		_, err := b.client.HandleFor(s.Record.ID).Wait(ctx)
		_ = requireTaskError(t, err, baton.Failure, "boom on 2")
		require.False(t, errors.Is(err, baton.ErrRevoked), "a skipped step is not revoked: %v", err)
	}
	require.Zero(t, ran.Load())
}

func TestChainTypeMismatch(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 20*time.Second)
	// sum expects []int but gets incr's int result.
	wf, err := b.client.Submit(ctx, baton.Chain(incr.S(1, nil), sum.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.Error(t, err)
	st, err := wf.Steps(ctx)
	require.NoError(t, err)
	rec := st[1].Record
	require.Equal(t, baton.Failure, rec.State)
	require.Equal(t, 1, rec.Executions, "a type mismatch is not retried")
	require.Contains(t, rec.Error, "workflow "+wf.ID)
	require.Contains(t, rec.Error, "step 2 of 2 of a chain")
	require.Contains(t, rec.Error, "a JSON number")
	require.Contains(t, rec.Error, "[]int")
}

func TestNestedCanvases(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 30*time.Second)
	cases := []struct {
		name string
		cv   baton.Canvas
		want string
	}{
		// chain containing a group (→ chord) and a chord whose body is a chain
		{"chain with group and chord", baton.Chain(
			incr.S(1, nil), // 2
			baton.Group(double.Sig(nil), incr.Sig(nil)), // [4, 3]
			sum.Sig(nil), // 7
			baton.Chord(baton.Group(double.Sig(nil), double.Sig(nil)), baton.Chain(sum.Sig(nil), incr.Sig(nil))), // [14,14] → 28 → 29
		), "29"},
		// group containing chains
		{"group of chains", baton.Group(
			baton.Chain(incr.S(1, nil), double.Sig(nil)),
			baton.Chain(double.S(5, nil), incr.Sig(nil), incr.Sig(nil)),
		), "[4,12]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wf, err := b.client.Submit(ctx, tc.cv, nil)
			require.NoError(t, err)
			rec, err := wf.Wait(ctx)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(rec.Result))
		})
	}
}

func TestErrorCallbackRunsOnce(t *testing.T) {
	b := setup(t)
	var calls atomic.Int32
	var got atomic.Value
	onErr := baton.NewTask("on_err", func(ctx context.Context, info map[string]any) (bool, error) {
		calls.Add(1)
		got.Store(info)
		return true, nil
	}, nil)
	canvasWorker(t, b, onErr)
	ctx := ctxTimeout(t, 20*time.Second)
	failing := boom.S(3, nil)
	failing.OnError = onErr.Sig(nil)
	wf, err := b.client.Submit(ctx, baton.Chain(failing, incr.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.Error(t, err)
	errbackID := wf.Plan.Nodes[wf.Plan.Tasks()[0]].TaskID + ".err"
	rec, err := b.client.HandleFor(errbackID).Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Success, rec.State)
	info := got.Load().(map[string]any)
	require.Equal(t, "boom", info["kind"])
	require.Contains(t, info["error"], "boom on 3")
	require.EqualValues(t, 1, calls.Load())
}

func TestCompensationsOnlyForCompletedSteps(t *testing.T) {
	b := setup(t)
	var mu sync.Mutex
	var undone []int
	undo := baton.NewTask("undo", func(ctx context.Context, n int) (int, error) {
		mu.Lock()
		undone = append(undone, n)
		mu.Unlock()
		return n, nil
	}, nil)
	canvasWorker(t, b, undo)
	ctx := ctxTimeout(t, 20*time.Second)
	s1 := incr.S(0, nil) // → 1
	s1.Compensate = undo.Sig(nil)
	s2 := incr.Sig(nil) // → 2
	s2.Compensate = undo.Sig(nil)
	s3 := boom.Sig(nil) // fails
	s3.Compensate = undo.Sig(nil)
	s4 := incr.Sig(nil) // never runs
	s4.Compensate = undo.Sig(nil)
	wf, err := b.client.Submit(ctx, baton.Chain(s1, s2, s3, s4), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.Error(t, err)
	compID, err := wf.Compensation(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, compID)
	comp, err := b.client.Workflow(ctx, compID)
	require.NoError(t, err)
	_, err = comp.Wait(ctx)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{2, 1}, undone, "reverse order, completed steps only, each fed its step's result")
}

func TestCancelWorkflow(t *testing.T) {
	b := setup(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var afterRan atomic.Int32
	hold := baton.NewTask("hold", func(ctx context.Context, n int) (int, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-release:
			return n, nil
		}
	}, nil)
	after := baton.NewTask("after_cancel", func(ctx context.Context, n int) (int, error) { afterRan.Add(1); return n, nil }, nil)
	canvasWorker(t, b, hold, after)
	ctx := ctxTimeout(t, 20*time.Second)
	wf, err := b.client.Submit(ctx, baton.Chain(hold.S(1, nil), after.Sig(nil), after.Sig(nil)), nil)
	require.NoError(t, err)
	<-started
	require.NoError(t, b.client.Cancel(ctx, wf.ID))
	_, err = wf.Wait(ctx)
	require.ErrorIs(t, err, baton.ErrCancelled)
	// the running step's context was cancelled: it ends REVOKED, not SUCCESS
	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	redistest.WaitFor(t, 10*time.Second, "running step revoked", func() bool {
		r, err := b.client.Get(ctx, steps[0].Record.ID)
		return err == nil && r.State == baton.Revoked
	})
	for _, s := range steps[1:] {
		require.Equal(t, baton.Revoked, s.Record.State)
	}
	close(release)
	require.Zero(t, afterRan.Load())
}

// TestRandomCanvasesMatchInProcess: random nested canvases of arithmetic
// tasks give the same result on the queue as evaluating them in-process.
func TestRandomCanvasesMatchInProcess(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 60*time.Second)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 25 {
		cv, want := randomCanvas(rng, 3, true, 1)
		wf, err := b.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		rec, err := wf.Wait(ctx)
		require.NoError(t, err, "canvas %d", i)
		wantJSON, _ := json.Marshal(want)
		require.JSONEq(t, string(wantJSON), string(rec.Result), "canvas %d", i)
	}
}

// randomCanvas builds a canvas of int → int steps and returns it with the
// value evaluating it in-process yields. first means no input is fed in (so
// the first task gets static args); in is the input otherwise.
func randomCanvas(rng *rand.Rand, depth int, first bool, in int) (baton.Canvas, int) {
	leaf := func(in int) (baton.Canvas, int) {
		if first {
			n := rng.IntN(10)
			if rng.IntN(2) == 0 {
				return incr.S(n, nil), n + 1
			}
			return double.S(n, nil), n * 2
		}
		if rng.IntN(2) == 0 {
			return incr.Sig(nil), in + 1
		}
		return double.Sig(nil), in * 2
	}
	if depth == 0 {
		return leaf(in)
	}
	switch rng.IntN(3) {
	case 0: // chain of 2-3
		var steps []baton.Canvas
		v, isFirst := in, first
		for range 2 + rng.IntN(2) {
			c, out := randomCanvas(rng, depth-1, isFirst, v)
			steps, v, isFirst = append(steps, c), out, false
		}
		return baton.Chain(steps...), v
	case 1: // chord: group of 2-3, summed
		var members []baton.Canvas
		total := 0
		for range 2 + rng.IntN(2) {
			c, out := randomCanvas(rng, depth-1, first, in)
			members, total = append(members, c), total+out
		}
		return baton.Chord(baton.Group(members...), sum.Sig(nil)), total
	default:
		return leaf(in)
	}
}

// TestChordBodyOnceWithTwoWorkers: two workers race through a 1,000-task
// header; the join is atomic, so the body runs exactly once.
func TestChordBodyOnceWithTwoWorkers(t *testing.T) {
	b := setup(t)
	var bodies atomic.Int32
	body := baton.NewTask("count_body", func(ctx context.Context, ns []int) (int, error) {
		bodies.Add(1)
		return len(ns), nil
	}, nil)
	for range 2 {
		w, err := baton.NewWorker(b.rdb, &baton.WorkerOptions{Concurrency: 10, Logger: quietLogger()})
		require.NoError(t, err)
		require.NoError(t, w.Register(double, body))
		require.NoError(t, w.Start())
		t.Cleanup(w.Shutdown)
	}
	ctx := ctxTimeout(t, 60*time.Second)
	hdr := make([]baton.Canvas, 1000)
	for i := range hdr {
		hdr[i] = double.S(i, nil)
	}
	wf, err := b.client.Submit(ctx, baton.Chord(baton.Group(hdr...), body.Sig(nil)), nil)
	require.NoError(t, err)
	var n int
	require.NoError(t, wf.Get(ctx, &n))
	require.Equal(t, 1000, n)
	require.EqualValues(t, 1, bodies.Load())
	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, steps[len(steps)-1].Record.Executions)
}

// TestChainExpiredStep: a step that expires is REVOKED, and so are the steps
// it skips (a revocation is not a failure), naming it.
func TestChainExpiredStep(t *testing.T) {
	b := setup(t)
	canvasWorker(t, b)
	ctx := ctxTimeout(t, 20*time.Second)
	late := &baton.EnqueueOpts{Countdown: 1200 * time.Millisecond, ExpiresIn: 100 * time.Millisecond}
	wf, err := b.client.Submit(ctx, baton.Chain(incr.S(1, late), incr.Sig(nil), incr.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.Error(t, err)
	st, err := wf.Steps(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Revoked, st[0].Record.State)
	for _, s := range st[1:] {
		r := waitState(t, b, s.Record.ID, baton.Revoked)
		require.Contains(t, r.Error, "parent "+st[0].Record.ID+" was revoked: expired")
	}
}
