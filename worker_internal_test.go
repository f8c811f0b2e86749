package baton

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitUntil waits for a time up to maxEarly away (asynq delivers up to a
// second early) and not for a later one: a task delivered that early was
// run early on purpose. A cancelled context tells which way it went.
func TestWaitUntilRunEarlyOnPurpose(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, waitUntil(cancelled, time.Now().Add(2*time.Second)), context.Canceled, "within asynq's slack: it waits")
	require.NoError(t, waitUntil(cancelled, time.Now().Add(time.Hour)), "an hour early: run on purpose, no wait")
	require.NoError(t, waitUntil(cancelled, time.Now().Add(-time.Second)), "its time has passed")
	require.NoError(t, waitUntil(cancelled, time.Time{}), "no time set")
}
