package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

func TestBuiltinKinds(t *testing.T) {
	var kinds []string
	for _, d := range Builtins() {
		kinds = append(kinds, d.Kind())
	}
	require.Equal(t, []string{"echo", "sleep", "fail", "flaky"}, kinds)
	require.Equal(t, 2, Fail.Options().MaxRetries)
	require.Equal(t, baton.FixedDelay(100*time.Millisecond), Fail.Options().RetryDelay)
}

func TestEcho(t *testing.T) {
	for _, in := range []string{`{"x":1}`, `[1,"a"]`, `"s"`, `42`, `null`} {
		out, err := echo(context.Background(), json.RawMessage(in))
		require.NoError(t, err)
		require.JSONEq(t, in, string(out))
	}
}

func TestSleep(t *testing.T) {
	ctx := context.Background()
	t.Run("returns result, else input, else null", func(t *testing.T) {
		out, err := sleep(ctx, SleepArgs{MS: 1, Result: json.RawMessage(`"done"`), Input: json.RawMessage(`1`)})
		require.NoError(t, err)
		require.JSONEq(t, `"done"`, string(out))
		out, err = sleep(ctx, SleepArgs{Input: json.RawMessage(`{"a":1}`)})
		require.NoError(t, err)
		require.JSONEq(t, `{"a":1}`, string(out))
		out, err = sleep(ctx, SleepArgs{})
		require.NoError(t, err)
		require.Equal(t, "null", string(out))
	})
	t.Run("respects its context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := sleep(cctx, SleepArgs{MS: time.Hour.Milliseconds()})
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("negative ms is permanent", func(t *testing.T) {
		_, err := sleep(ctx, SleepArgs{MS: -1})
		require.True(t, baton.IsPermanent(err))
	})
}

func TestFail(t *testing.T) {
	ctx := context.Background()
	_, err := fail(ctx, FailArgs{})
	require.EqualError(t, err, FailMessageDefault)
	require.False(t, baton.IsPermanent(err))
	_, ok := baton.RetryAfterDelay(err)
	require.False(t, ok)

	_, err = fail(ctx, FailArgs{Message: "boom", Permanent: true})
	require.EqualError(t, err, "boom")
	require.True(t, baton.IsPermanent(err))

	_, err = fail(ctx, FailArgs{RetryAfterMS: 250})
	d, ok := baton.RetryAfterDelay(err)
	require.True(t, ok)
	require.Equal(t, 250*time.Millisecond, d)
}

func TestFlakyCountsByKey(t *testing.T) {
	ctx := context.Background()
	const key = "TestFlakyCountsByKey"
	t.Cleanup(func() {
		flakyAttempts.Lock()
		delete(flakyAttempts.n, key)
		flakyAttempts.Unlock()
	})
	args := json.RawMessage(`{"fail_times":2,"key":"` + key + `","extra":true}`)
	for i := 1; i <= 2; i++ {
		_, err := flaky(ctx, args)
		require.ErrorContains(t, err, "fails on purpose")
	}
	out, err := flaky(ctx, args)
	require.NoError(t, err)
	require.JSONEq(t, string(args), string(out), "flaky echoes its args")
	_, err = flaky(ctx, args)
	require.ErrorContains(t, err, "attempt 1 fails", "the counter restarts after a success")

	_, err = flaky(ctx, json.RawMessage(`{"fail_times":1}`))
	require.True(t, baton.IsPermanent(err), "no task id and no key")
	_, err = flaky(ctx, json.RawMessage(`[1]`))
	require.True(t, baton.IsPermanent(err))
}

// TestBuiltinsOnWorker runs the built-in tasks on a real worker: the
// registered retry settings are what the CLI's users rely on.
func TestBuiltinsOnWorker(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollInterval:    20 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, w.Register(Builtins()...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Declare(Builtins()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)

	t.Run("fail ends FAILURE after exactly 3 attempts", func(t *testing.T) {
		h, err := c.EnqueueKind(ctx, "fail", FailArgs{Message: "deliberate"}, nil)
		require.NoError(t, err)
		rec, err := h.Wait(ctx)
		var te *baton.TaskError
		require.True(t, errors.As(err, &te), "got %v", err)
		require.Equal(t, baton.Failure, rec.State)
		require.Equal(t, 2, rec.Retries)
		require.Equal(t, 3, rec.Executions)
		require.Contains(t, rec.Error, "deliberate")
	})
	t.Run("permanent fail runs once", func(t *testing.T) {
		h, err := c.EnqueueKind(ctx, "fail", FailArgs{Permanent: true}, nil)
		require.NoError(t, err)
		rec, err := h.Wait(ctx)
		require.Error(t, err)
		require.Equal(t, 1, rec.Executions)
	})
	t.Run("flaky succeeds after its failures", func(t *testing.T) {
		h, err := c.EnqueueKind(ctx, "flaky", map[string]int{"fail_times": 2}, nil)
		require.NoError(t, err)
		rec, err := h.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, baton.Success, rec.State)
		require.Equal(t, 2, rec.Retries)
		require.JSONEq(t, `{"fail_times":2}`, string(rec.Result))
	})
	t.Run("sleep in a chain passes the result on", func(t *testing.T) {
		wf, err := c.Submit(ctx, baton.Chain(Echo.S(json.RawMessage(`{"v":7}`), nil), Sleep.S(SleepArgs{MS: 1}, nil)), nil)
		require.NoError(t, err)
		var got map[string]int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, map[string]int{"v": 7}, got)
	})
}
