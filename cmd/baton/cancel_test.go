package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("steps not started are revoked", func(t *testing.T) {
		cv := baton.Chain(tasks.Echo.S(json.RawMessage(`1`), &baton.EnqueueOpts{Countdown: time.Hour}), tasks.Echo.Sig(nil))
		_, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "wf-cancel"})
		require.NoError(t, err)
		o := b.run(t, "cancel", "wf-cancel").requireCode(t, exitOK)
		require.Equal(t, "cancelled workflow wf-cancel\n", o.stdout)
		m := b.run(t, "result", "wf-cancel", "--wait", "--json").requireCode(t, exitFailure).record(t)
		wf := m["workflow"].(map[string]any)
		require.Equal(t, "REVOKED", wf["state"])
		for _, s := range m["steps"].([]any) {
			require.Equal(t, "REVOKED", s.(map[string]any)["state"])
		}
	})
	t.Run("a running step is interrupted", func(t *testing.T) {
		cv := baton.Chain(tasks.Sleep.S(tasks.SleepArgs{MS: time.Minute.Milliseconds()}, nil), tasks.Echo.Sig(nil))
		wf, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "wf-running"})
		require.NoError(t, err)
		b.waitState(t, "wf-running.1", baton.Started)
		b.run(t, "cancel", "wf-running").requireCode(t, exitOK)
		_, err = wf.Wait(ctx)
		require.ErrorIs(t, err, baton.ErrCancelled)
	})
	t.Run("a finished workflow is left alone", func(t *testing.T) {
		wf, err := b.client.Submit(ctx, baton.Chain(tasks.Echo.S(json.RawMessage(`1`), nil)), &baton.SubmitOpts{ID: "wf-done"})
		require.NoError(t, err)
		_, err = wf.Wait(ctx)
		require.NoError(t, err)
		o := b.run(t, "cancel", "wf-done").requireCode(t, exitOK)
		require.Equal(t, "workflow wf-done already finished (SUCCESS); nothing to cancel\n", o.stdout)
	})
	t.Run("unknown id exits 4", func(t *testing.T) {
		o := b.run(t, "cancel", "no-such-wf").requireCode(t, exitNotFound)
		require.Contains(t, o.stderr, "no-such-wf")
	})
	t.Run("a task id is not a workflow", func(t *testing.T) {
		h, err := b.client.EnqueueKind(ctx, "echo", 1, nil)
		require.NoError(t, err)
		o := b.run(t, "cancel", h.ID).requireCode(t, exitUsage)
		require.Contains(t, o.stderr, "is a task, not a workflow")
	})
}

// waitState polls until task id is in state.
func (b *bundle) waitState(t *testing.T, id string, state baton.State) {
	t.Helper()
	redistest.WaitFor(t, 20*time.Second, "task "+id+" in state "+string(state), func() bool {
		r, err := b.client.Get(t.Context(), id)
		return err == nil && r.State == state
	})
}
