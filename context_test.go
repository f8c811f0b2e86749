package baton_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

// A handler called directly with WithInfo's context sees the info through
// InfoFrom, as it does under a worker; a producer-only task has no handler.
func TestHandlerWithInfo(t *testing.T) {
	whoami := baton.NewTask("whoami", func(ctx context.Context, _ struct{}) (baton.TaskInfo, error) {
		info, ok := baton.InfoFrom(ctx)
		if !ok {
			return baton.TaskInfo{}, errors.New("no task info in the context")
		}
		return info, nil
	}, nil)
	want := baton.TaskInfo{ID: "t1", Kind: "whoami", Queue: "default", WorkflowID: "wf", ParentID: "wf.0", Retries: 2, MaxRetries: 3}
	got, err := whoami.Handler()(baton.WithInfo(t.Context(), want), struct{}{})
	require.NoError(t, err)
	require.Equal(t, want, got)

	_, ok := baton.InfoFrom(t.Context())
	require.False(t, ok, "a plain context carries no task info")
	require.Nil(t, baton.NewTask[int, int]("producer-only", nil, nil).Handler())
}
