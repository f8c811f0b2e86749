package batontest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
)

func TestRun(t *testing.T) {
	t.Parallel()

	t.Run("ResultAndInfo", func(t *testing.T) {
		t.Parallel()
		got, err := batontest.Run(t, add, addArgs{A: 2, B: 3})
		require.NoError(t, err)
		require.Equal(t, 5, got)

		whoami := baton.NewTask("bt.whoami", func(ctx context.Context, _ struct{}) (baton.TaskInfo, error) {
			info, _ := baton.InfoFrom(ctx)
			return info, nil
		}, &baton.TaskOptions{Queue: "low", MaxRetries: 4})
		info, err := batontest.Run(t, whoami, struct{}{})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(info.ID, "batontest-"), info.ID)
		require.Equal(t, baton.TaskInfo{ID: info.ID, Kind: "bt.whoami", Queue: "low", MaxRetries: 4}, info)

		info, err = batontest.RunWith(t, whoami, struct{}{}, &batontest.RunOpts{Info: baton.TaskInfo{ID: "t1", Retries: 4, WorkflowID: "wf"}})
		require.NoError(t, err)
		require.Equal(t, baton.TaskInfo{ID: "t1", Kind: "bt.whoami", Queue: "low", WorkflowID: "wf", Retries: 4, MaxRetries: 4}, info)
	})

	t.Run("PanicIsAnError", func(t *testing.T) {
		t.Parallel()
		boom := baton.NewTask("bt.boom", func(_ context.Context, n int) (int, error) {
			var counts []int
			return counts[n], nil // index out of range
		}, nil)
		var got int
		var err error
		msg, f := failures(t, func(tb testing.TB) { got, err = batontest.Run(tb, boom, 1) })
		require.Empty(t, msg, "a panic is the handler's error, not the test's failure")
		require.Zero(t, got)
		require.EqualError(t, err, "panic: runtime error: index out of range [1] with length 0")
		require.False(t, baton.IsPermanent(err), "a worker retries a panic like any error")
		require.Len(t, f.logs, 1)
		require.Contains(t, f.logs[0], "batontest: task bt.boom panicked: runtime error: index out of range [1] with length 0\ngoroutine ")
	})

	t.Run("ErrorsAreTheHandlers", func(t *testing.T) {
		t.Parallel()
		limited := baton.NewTask("bt.limited", func(_ context.Context, _ int) (int, error) {
			return 0, baton.RetryAfter(30*time.Second, errors.New("429 Too Many Requests"))
		}, nil)
		_, err := batontest.Run(t, limited, 1)
		d, ok := baton.RetryAfterDelay(err)
		require.True(t, ok)
		require.Equal(t, 30*time.Second, d)
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		slow := baton.NewTask("bt.slow", func(ctx context.Context, _ int) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, &baton.TaskOptions{Timeout: 10 * time.Millisecond})
		_, err := batontest.Run(t, slow, 1)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.EqualError(t, err, "timed out after 10ms: context deadline exceeded")
	})

	t.Run("ArgumentsGoThroughJSON", func(t *testing.T) {
		t.Parallel()
		type secretive struct {
			Public  string `json:"public"`
			private string
		}
		echo := baton.NewTask("bt.echo", func(_ context.Context, a secretive) (string, error) {
			return a.Public + "|" + a.private, nil
		}, nil)
		got, err := batontest.Run(t, echo, secretive{Public: "a", private: "b"})
		require.NoError(t, err)
		require.Equal(t, "a|", got, "an unexported field does not reach a worker's handler")

		_, err = batontest.Run(t, baton.NewTask("bt.lossy", func(_ context.Context, _ lossy) (int, error) { return 0, nil }, nil), lossy{N: 1})
		require.True(t, baton.IsPermanent(err), "a worker fails arguments that do not decode")
		require.ErrorContains(t, err, `task "bt.lossy": arguments do not decode into batontest_test.lossy`)

		ch := baton.NewTask("bt.chan", func(_ context.Context, _ int) (chan int, error) { return make(chan int), nil }, nil)
		_, err = batontest.Run(t, ch, 1)
		require.True(t, baton.IsPermanent(err))
		require.ErrorContains(t, err, `task "bt.chan": encode result chan int: json: unsupported type: chan int`)
	})

	t.Run("ProducerDefinition", func(t *testing.T) {
		t.Parallel()
		producer := baton.NewTask[int, int]("bt.remote", nil, nil)
		msg, _ := failures(t, func(tb testing.TB) { _, _ = batontest.Run(tb, producer, 1) })
		require.Equal(t, `batontest: Run: task "bt.remote" was defined without a handler (a producer's definition): run the worker's`, msg)
	})
}

// lossy encodes to JSON that does not decode back into it.
type lossy struct{ N int }

func (l lossy) MarshalJSON() ([]byte, error) { return []byte(`"n"`), nil }
