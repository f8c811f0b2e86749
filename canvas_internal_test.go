package baton

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// TestSendAll: a fan-out larger than the sends kept in flight enqueues every
// message; the first failure is the error returned and no send starts
// after it; a context that ended before the start sends nothing and says so.
func TestSendAll(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	c, err := NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	msgs := func(prefix string, n int) []*message {
		out := make([]*message, n)
		for i := range out {
			out[i] = &message{V: messageVersion, ID: fmt.Sprintf("%s-%d", prefix, i), Kind: "k", Queue: prefix, asynqMax: 1}
		}
		return out
	}
	queued := func(queue string) int {
		info, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(queue)
		if err != nil {
			return 0 // the queue was never written
		}
		return info.Pending
	}

	require.NoError(t, c.sendAll(ctx, msgs("all", 100)))
	require.Equal(t, 100, queued("all"))

	// Writes paused: the first eight sends start, and all but the bad one
	// wait on Redis while the bad one fails at once.
	failing := msgs("failing", 100)
	failing[3].Args = json.RawMessage(`"` + strings.Repeat("x", c.maxSize) + `"`) // over the payload limit
	require.NoError(t, rdb.Do(ctx, "CLIENT", "PAUSE", 1000, "WRITE").Err())
	err = c.sendAll(ctx, failing)
	require.ErrorIs(t, err, ErrPayloadTooLarge)
	require.ErrorContains(t, err, "failing-3")
	require.LessOrEqual(t, queued("failing"), 7, "no send starts after the first error; those in flight finish")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, c.sendAll(cancelled, msgs("cancelled", 100)), context.Canceled)
	require.Zero(t, queued("cancelled"))
}
