package batontest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

var (
	double = baton.NewTask("bt.double", func(_ context.Context, n int) (int, error) { return 2 * n, nil }, nil)
	square = baton.NewTask("bt.square", func(_ context.Context, n int) (int, error) { return n * n, nil }, nil)
	sum    = baton.NewTask("bt.sum", func(_ context.Context, ns []int) (int, error) {
		t := 0
		for _, n := range ns {
			t += n
		}
		return t, nil
	}, nil)
)

func TestRunCanvas(t *testing.T) {
	t.Parallel()

	t.Run("Chain", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		env.Register(double, square)
		ctx := ctxTimeout(t, 20*time.Second)
		wf, rec, err := env.RunCanvas(ctx, baton.Chain(double.S(3, nil), square.Sig(nil), double.Sig(nil)))
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.JSONEq(t, "72", string(rec.Result)) // ((3×2)²)×2
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		for _, s := range steps {
			require.Equal(t, baton.Success, s.Record.State)
		}
	})

	t.Run("Chord", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		env.Register(square, sum)
		ctx := ctxTimeout(t, 20*time.Second)
		header := baton.Group(square.S(1, nil), square.S(2, nil), square.S(3, nil), square.S(4, nil))
		_, rec, err := env.RunCanvas(ctx, baton.Chord(header, sum.Sig(nil)))
		require.NoError(t, err)
		require.JSONEq(t, "30", string(rec.Result))
	})

	t.Run("ChordWithRetriesFastForwarded", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		var calls atomic.Int32
		shaky := baton.NewTask("bt.shaky", func(_ context.Context, n int) (int, error) {
			if n == 2 && calls.Add(1) == 1 {
				return 0, baton.RetryAfter(time.Hour, errors.New("429"))
			}
			return n, nil
		}, &baton.TaskOptions{MaxRetries: 1})
		env.Register(shaky, sum)
		ctx := ctxTimeout(t, 20*time.Second)
		wf, rec, err := env.RunCanvas(ctx, baton.Chord(baton.Group(shaky.S(1, nil), shaky.S(2, nil)), sum.Sig(nil)))
		require.ErrorContains(t, err, "after the drain: a step waits for its time (Countdown, ETA or a retry delay); Options.FastForward runs it at once")
		require.False(t, rec.State.Terminal(), "the workflow waits for the retry")

		_, err = env.FastForward(ctx)
		require.NoError(t, err)
		require.NoError(t, env.Drain(ctx))
		var total int
		require.NoError(t, wf.Get(ctx, &total))
		require.Equal(t, 3, total)
	})

	t.Run("FailingWorkflow", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		var after atomic.Int32
		reject := baton.NewTask("bt.reject", func(_ context.Context, n int) (int, error) {
			return 0, baton.Permanent(errors.New("card declined"))
		}, nil)
		count := baton.NewTask("bt.count", func(_ context.Context, n int) (int, error) {
			after.Add(1)
			return n, nil
		}, nil)
		env.Register(double, reject, count)
		ctx := ctxTimeout(t, 20*time.Second)
		wf, rec, err := env.RunCanvas(ctx, baton.Chain(double.S(1, nil), reject.Sig(nil), count.Sig(nil)))
		var te *baton.TaskError
		require.ErrorAs(t, err, &te)
		require.Equal(t, baton.Failure, te.State)
		require.Contains(t, te.Message, "card declined")
		require.Equal(t, baton.Failure, rec.State)
		steps, err := wf.Steps(ctx)
		require.NoError(t, err)
		require.Equal(t, []baton.State{baton.Success, baton.Failure, baton.Failure}, []baton.State{steps[0].Record.State, steps[1].Record.State, steps[2].Record.State})
		require.Zero(t, after.Load(), "a step after the failed one never runs")
	})

	t.Run("InvalidCanvas", func(t *testing.T) {
		t.Parallel()
		env := newEnv(t, nil)
		ctx := ctxTimeout(t, 20*time.Second)
		_, _, err := env.RunCanvas(ctx, baton.Chain())
		require.ErrorIs(t, err, baton.ErrInvalidCanvas)
	})
}
