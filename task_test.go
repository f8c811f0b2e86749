package baton_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

type addArgs struct{ A, B int }

func TestEnqueueAndGet(t *testing.T) {
	b := setup(t)
	add := baton.NewTask("add", func(ctx context.Context, a addArgs) (int, error) { return a.A + a.B, nil }, nil)
	b.startWorker(t, nil, add)
	ctx := ctxTimeout(t, 10*time.Second)
	h, err := add.Enqueue(ctx, b.client, addArgs{2, 3}, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, got)
	rec, err := b.client.Get(ctx, h.ID)
	require.NoError(t, err)
	require.Equal(t, baton.Success, rec.State)
	require.Equal(t, "add", rec.Kind)
	require.Equal(t, "default", rec.Queue)
	require.False(t, rec.EnqueuedAt.IsZero())
	require.False(t, rec.StartedAt.IsZero())
	require.False(t, rec.FinishedAt.IsZero())
	require.Equal(t, 1, rec.Executions)
}
