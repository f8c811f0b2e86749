package baton_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// TestCancelledIsData: a workflow cancel is recorded as data (the record's
// Reason), on the workflow, the steps revoked before they started and the
// step whose context was cancelled while it ran; ErrCancelled comes from
// that field.
func TestCancelledIsData(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	started := make(chan struct{}, 1)
	hold := baton.NewTask("cd.hold", func(ctx context.Context, n int) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
	next := baton.NewTask("cd.next", func(ctx context.Context, n int) (int, error) { return n, nil }, nil)
	b.startWorker(t, nil, hold, next)

	wf, err := b.client.Submit(ctx, baton.Chain(hold.S(1, nil), next.Sig(nil)), nil)
	require.NoError(t, err)
	<-started
	require.NoError(t, b.client.Cancel(ctx, wf.ID))
	wrec, err := wf.Wait(ctx)
	require.ErrorIs(t, err, baton.ErrCancelled)
	require.ErrorIs(t, err, baton.ErrRevoked)
	require.Equal(t, baton.Revoked, wrec.State)
	require.Equal(t, backend.ReasonCancelled, wrec.Reason)

	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	for _, s := range steps {
		r := waitState(t, b, s.Record.ID, baton.Revoked)
		require.Equal(t, backend.ReasonCancelled, r.Reason, "step %s", r.ID)
		_, err := b.client.HandleFor(r.ID).Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled, "step %s", r.ID)
	}
}

// TestCancelledErrorTextIsAFailure: a handler error whose text starts with
// "cancelled" is an ordinary failure: FAILURE, not REVOKED; the step's
// OnError runs, the completed steps are compensated, and nobody is told
// ErrCancelled.
func TestCancelledErrorTextIsAFailure(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	var mu sync.Mutex
	var undone []int
	var errbacks atomic.Int32
	step := baton.NewTask("ct.step", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	refuse := baton.NewTask("ct.refuse", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(errors.New("cancelled by the payment provider: card expired"))
	}, nil)
	undo := baton.NewTask("ct.undo", func(ctx context.Context, n int) (int, error) {
		mu.Lock()
		undone = append(undone, n)
		mu.Unlock()
		return n, nil
	}, nil)
	onErr := baton.NewTask("ct.onerr", func(ctx context.Context, info map[string]any) (bool, error) {
		errbacks.Add(1)
		return true, nil
	}, nil)
	b.startWorker(t, nil, step, refuse, undo, onErr)

	s1 := step.S(0, nil)
	s1.Compensate = undo.Sig(nil)
	s2 := refuse.Sig(nil)
	s2.OnError = onErr.Sig(nil)
	wf, err := b.client.Submit(ctx, baton.Chain(s1, s2, step.Sig(nil)), nil)
	require.NoError(t, err)

	_, err = wf.Wait(ctx)
	te := requireTaskError(t, err, baton.Failure, "cancelled by the payment provider")
	require.NotErrorIs(t, err, baton.ErrCancelled)
	require.NotErrorIs(t, err, baton.ErrRevoked)
	require.Equal(t, wf.ID, te.ID)
	wrec, err := b.client.Get(ctx, wf.ID)
	require.NoError(t, err)
	require.Empty(t, wrec.Reason)

	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Success, steps[0].Record.State)
	require.Equal(t, baton.Failure, steps[1].Record.State)
	require.Empty(t, steps[1].Record.Reason)
	_, err = b.client.HandleFor(steps[1].Record.ID).Wait(ctx)
	require.NotErrorIs(t, err, baton.ErrCancelled)
	require.Equal(t, baton.Failure, steps[2].Record.State, "the step after a failure fails naming its parent, as in Celery")
	require.Contains(t, steps[2].Record.Error, "parent "+steps[1].Record.ID+" failed")
	require.Empty(t, steps[2].Record.Reason, "skipped because its parent failed, not cancelled")

	errback, err := b.client.HandleFor(steps[1].Record.ID + ".err").Wait(ctx)
	require.NoError(t, err, "the step's OnError ran")
	require.Equal(t, baton.Success, errback.State)
	compID, err := wf.Compensation(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, compID, "the completed step is compensated")
	comp, err := b.client.Workflow(ctx, compID)
	require.NoError(t, err)
	_, err = comp.Wait(ctx)
	require.NoError(t, err)
	redistest.WaitFor(t, 5*time.Second, "the compensation ran", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(undone) == 1 && undone[0] == 1
	})
	require.EqualValues(t, 1, errbacks.Load())

	// Outside workflows too: a single task's error text does not make it
	// cancelled.
	h, err := refuse.Enqueue(ctx, b.client, 1, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	_ = requireTaskError(t, err, baton.Failure, "cancelled by the payment provider")
	require.NotErrorIs(t, err, baton.ErrCancelled)
}
