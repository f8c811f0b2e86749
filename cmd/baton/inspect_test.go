package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

func TestInspect(t *testing.T) {
	t.Parallel()
	b := setup(t) // no worker: tasks stay where they are put
	ctx := ctxTimeout(t, 30*time.Second)

	t.Run("an empty Redis lists the default queue", func(t *testing.T) {
		o := b.run(t, "inspect").requireCode(t, exitOK)
		require.Regexp(t, `^QUEUE +PENDING +ACTIVE +SCHEDULED +RETRY +ARCHIVED +COMPLETED\ndefault +0 +0 +0 +0 +0 +0\n$`, o.stdout)
	})

	_, err := b.client.EnqueueKind(ctx, "echo", 1, nil)
	require.NoError(t, err)
	_, err = b.client.EnqueueKind(ctx, "echo", 2, &baton.EnqueueOpts{Countdown: time.Hour})
	require.NoError(t, err)
	_, err = b.client.EnqueueKind(ctx, "echo", 3, &baton.EnqueueOpts{Queue: "llm"})
	require.NoError(t, err)

	t.Run("counts per queue", func(t *testing.T) {
		o := b.run(t, "inspect").requireCode(t, exitOK)
		require.Regexp(t, `(?m)^default +1 +0 +1 +0 +0 +0$`, o.stdout)
		require.Regexp(t, `(?m)^llm +1 +0 +0 +0 +0 +0$`, o.stdout)
	})
	t.Run("json", func(t *testing.T) {
		o := b.run(t, "inspect", "--json").requireCode(t, exitOK)
		var got struct{ Queues []queueStats }
		require.NoError(t, json.Unmarshal([]byte(o.stdout), &got))
		require.Equal(t, []queueStats{
			{Queue: "default", Pending: 1, Scheduled: 1},
			{Queue: "llm", Pending: 1},
		}, got.Queues)
	})
}
