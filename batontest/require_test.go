package batontest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
)

type welcomeArgs struct {
	To   string `json:"to"`
	Tier int    `json:"tier"`
}

var welcome = baton.NewTask("bt.welcome", func(_ context.Context, a welcomeArgs) (string, error) { return "sent to " + a.To, nil },
	&baton.TaskOptions{Queue: "mail"})

func TestRequireEnqueued(t *testing.T) {
	t.Parallel()
	env := newEnv(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	ada, err := welcome.Enqueue(ctx, env.Client(), welcomeArgs{To: "ada@example.com", Tier: 1}, nil)
	require.NoError(t, err)
	_, err = welcome.Enqueue(ctx, env.Client(), welcomeArgs{To: "bob@example.com", Tier: 2}, nil)
	require.NoError(t, err)
	_, err = add.Enqueue(ctx, env.Client(), addArgs{A: 1, B: 2}, &baton.EnqueueOpts{Countdown: time.Hour})
	require.NoError(t, err)

	t.Run("Matches", func(t *testing.T) {
		got := batontest.RequireEnqueued(t, env, "bt.welcome", welcomeArgs{To: "ada@example.com", Tier: 1}, nil)
		require.Len(t, got, 1)
		require.Equal(t, ada.ID, got[0].ID)
		require.Equal(t, "mail", got[0].Queue)
		require.Equal(t, "pending", got[0].State)
		// JSON-equal: any Go value or raw JSON, keys in any order, 1 == 1.0.
		batontest.RequireEnqueued(t, env, "bt.welcome", json.RawMessage(`{"tier": 1.0, "to": "ada@example.com"}`), nil)
		batontest.RequireEnqueued(t, env, "bt.welcome", map[string]any{"to": "bob@example.com", "tier": 2}, &batontest.RequireOpts{Queue: "mail"})
		// nil args: any task of the kind.
		batontest.RequireEnqueued(t, env, "bt.welcome", nil, &batontest.RequireOpts{Count: 2})
		batontest.RequireNotEnqueued(t, env, "bt.welcome", welcomeArgs{To: "eve@example.com"}, nil)
		batontest.RequireNotEnqueued(t, env, "bt.welcome", nil, &batontest.RequireOpts{Queue: "default"})
	})

	t.Run("FailureListsWhatIsEnqueued", func(t *testing.T) {
		msg, _ := failures(t, func(tb testing.TB) {
			batontest.RequireEnqueued(tb, env, "bt.welcome", welcomeArgs{To: "eve@example.com", Tier: 1}, nil)
			tb.Error("RequireEnqueued returned after a failure")
		})
		require.Contains(t, msg, `batontest: RequireEnqueued: no task of kind "bt.welcome" with args {"to":"eve@example.com","tier":1} is enqueued; the queues hold 3 task(s):`)
		require.Regexp(t, `\n  default\s+scheduled\s+kind=bt.add id=\S+ args={"a":1,"b":2} due=in (59m59s|1h0m0s)`, msg)
		require.Regexp(t, `\n  mail\s+pending\s+kind=bt.welcome id=`+ada.ID+` args={"to":"ada@example.com","tier":1}`, msg)
		require.Contains(t, msg, `args={"to":"bob@example.com","tier":2}`)
		require.NotContains(t, msg, "returned after a failure")
	})

	t.Run("FailureOnCountAndQueue", func(t *testing.T) {
		msg, _ := failures(t, func(tb testing.TB) {
			batontest.RequireEnqueued(tb, env, "bt.welcome", nil, &batontest.RequireOpts{Count: 3})
		})
		require.Contains(t, msg, `want 3 task(s) of kind "bt.welcome", found 2; the queues hold 3 task(s):`)
		msg, _ = failures(t, func(tb testing.TB) {
			batontest.RequireEnqueued(tb, env, "bt.welcome", nil, &batontest.RequireOpts{Queue: "default"})
		})
		require.Contains(t, msg, `no task of kind "bt.welcome" on queue "default" is enqueued`)
	})

	t.Run("NotEnqueuedFailureListsTheMatches", func(t *testing.T) {
		msg, _ := failures(t, func(tb testing.TB) {
			batontest.RequireNotEnqueued(tb, env, "bt.welcome", nil, nil)
		})
		require.Contains(t, msg, `batontest: RequireNotEnqueued: found 2 task(s) of kind "bt.welcome", want none; the queues hold 2 task(s):`)
		require.NotContains(t, msg, "bt.add", "only the matches are listed")
	})

	t.Run("EmptyQueues", func(t *testing.T) {
		empty := newEnv(t, nil)
		msg, _ := failures(t, func(tb testing.TB) {
			batontest.RequireEnqueued(tb, empty, "bt.welcome", nil, nil)
		})
		require.Equal(t, `batontest: RequireEnqueued: no task of kind "bt.welcome" is enqueued; the queues hold no task`, msg)
	})
}

func TestRequireRecord(t *testing.T) {
	t.Parallel()
	env := newEnv(t, nil)
	ctx := ctxTimeout(t, 20*time.Second)
	fail := baton.NewTask("bt.fail", func(_ context.Context, _ int) (int, error) {
		return 0, errors.New("disk full")
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(time.Millisecond)})
	env.Register(fail)
	h, err := fail.Enqueue(ctx, env.Client(), 1, nil)
	require.NoError(t, err)
	batontest.RequireRecord(t, env, h.ID, baton.Pending)
	env.DrainUntilIdle(t)
	rec := batontest.RequireRecord(t, env, h.ID, baton.Failure)
	require.Equal(t, 1, rec.Retries)

	msg, _ := failures(t, func(tb testing.TB) { batontest.RequireRecord(tb, env, h.ID, baton.Success) })
	require.Equal(t, "batontest: RequireRecord: task "+h.ID+" (bt.fail) is FAILURE, want SUCCESS; error: disk full (gave up after 2 attempts); retries: 1", msg)
	msg, _ = failures(t, func(tb testing.TB) { batontest.RequireRecord(tb, env, "nope", baton.Success) })
	require.Equal(t, "batontest: RequireRecord: task nope has no record, want SUCCESS: it was never enqueued (or its record expired)", msg)
}
