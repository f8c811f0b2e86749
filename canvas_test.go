package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
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
		require.Equal(t, baton.Revoked, s.Record.State)
		require.Contains(t, s.Record.Error, "parent "+st[1].Record.ID+" failed")
		_, err := b.client.HandleFor(s.Record.ID).Wait(ctx)
		require.True(t, errors.Is(err, baton.ErrRevoked), "waiter on a revoked step returns at once: %v", err)
	}
	require.Zero(t, ran.Load())
	_ = json.Valid
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
