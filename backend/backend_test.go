package backend_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// TestMain fails the run if a Backend leaves a goroutine behind after Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	srv *redistest.Server
	rdb *redis.Client
	be  *backend.Backend
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	be, err := backend.New(rdb, backend.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = be.Close() })
	return &fixture{srv: srv, rdb: rdb, be: be}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func meta(id string) backend.Meta {
	return backend.Meta{ID: id, Kind: "k", Queue: "q", EnqueuedAt: time.Now()}
}

func (f *fixture) requireTTL(t *testing.T, key string) time.Duration {
	t.Helper()
	ttl, err := f.rdb.PTTL(context.Background(), key).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0), "key %s has no TTL (%v)", key, ttl)
	return ttl
}

func TestNewOptions(t *testing.T) {
	f := setup(t)
	_, err := backend.New(f.rdb, backend.Options{ResultTTL: -time.Minute})
	require.ErrorContains(t, err, "use a positive duration such as 24h")
	_, err = backend.New(f.rdb, backend.Options{ResultTTL: 10 * time.Millisecond})
	require.ErrorContains(t, err, "under 1s")
	be, err := backend.New(f.rdb, backend.Options{})
	require.NoError(t, err)
	defer be.Close()
	require.Equal(t, backend.ResultTTLDefault, be.TTL())
}

// TestValidID: the one rule for caller-chosen ids.
func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "A-b_c:9", "tenant:42", strings.Repeat("x", backend.IDMaxLen)} {
		require.NoError(t, backend.ValidID(id), id)
	}
	for _, id := range []string{"", "a.b", "a b", "{a}", "a/b", "é", "a\n", strings.Repeat("x", backend.IDMaxLen+1)} {
		err := backend.ValidID(id)
		require.Error(t, err, id)
		require.ErrorContains(t, err, backend.IDRule)
	}
}

func TestPending(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)

	p, err := f.be.StartPending(ctx, meta("p1"), meta("p2"))
	require.NoError(t, err)
	created, err := p.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, created)
	require.Empty(t, p.ExistingKind(0), "created, so no existing kind")

	rec, err := f.be.Get(ctx, "p1")
	require.NoError(t, err)
	require.Equal(t, backend.Pending, rec.State)
	require.Equal(t, "k", rec.Kind)
	require.Equal(t, "q", rec.Queue)
	require.False(t, rec.EnqueuedAt.IsZero())
	ttl := f.requireTTL(t, backend.TaskKey("p1"))
	require.LessOrEqual(t, ttl, backend.ResultTTLDefault)

	// A duplicate keeps the existing record.
	_, err = f.be.Finish(ctx, backend.Outcome{ID: "p1", State: backend.Success, Result: json.RawMessage(`1`)})
	require.NoError(t, err)
	p, err = f.be.StartPending(ctx, meta("p1"))
	require.NoError(t, err)
	created, err = p.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, []bool{false}, created)
	require.Equal(t, "k", p.ExistingKind(0), "the kind of the record that was kept")
	rec, err = f.be.Get(ctx, "p1")
	require.NoError(t, err)
	require.Equal(t, backend.Success, rec.State)

	// A countdown longer than the TTL extends the record's life.
	m := meta("p3")
	m.RunAt = time.Now().Add(48 * time.Hour)
	require.NoError(t, f.be.MarkPending(ctx, m))
	require.Greater(t, f.requireTTL(t, backend.TaskKey("p3")), 48*time.Hour)
}

func TestStartAndFinish(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)

	t.Run("start without a pending record fills in the meta", func(t *testing.T) {
		st, err := f.be.Start(ctx, backend.StartRequest{Meta: meta("s1")})
		require.NoError(t, err)
		require.Equal(t, backend.Started, st.State)
		rec, err := f.be.Get(ctx, "s1")
		require.NoError(t, err)
		require.Equal(t, backend.Started, rec.State)
		require.Equal(t, "k", rec.Kind)
		require.Equal(t, 1, rec.Executions)
		require.False(t, rec.StartedAt.IsZero())
		f.requireTTL(t, backend.TaskKey("s1"))
	})

	t.Run("retry then success", func(t *testing.T) {
		require.NoError(t, f.be.MarkPending(ctx, meta("s2")))
		_, err := f.be.Start(ctx, backend.StartRequest{Meta: meta("s2")})
		require.NoError(t, err)
		next := time.Now().Add(time.Minute)
		st, err := f.be.Finish(ctx, backend.Outcome{ID: "s2", State: backend.Retry, Error: "boom", Retries: 1, NextTry: next})
		require.NoError(t, err)
		require.Equal(t, backend.Retry, st.State)
		rec, err := f.be.Get(ctx, "s2")
		require.NoError(t, err)
		require.Equal(t, backend.Retry, rec.State)
		require.Equal(t, "boom", rec.Error)
		require.Equal(t, 1, rec.Retries)
		require.Equal(t, next.UnixMilli(), rec.NextTryAt.UnixMilli())
		require.True(t, rec.FinishedAt.IsZero())

		_, err = f.be.Start(ctx, backend.StartRequest{Meta: meta("s2"), Retries: 1})
		require.NoError(t, err)
		st, err = f.be.Finish(ctx, backend.Outcome{ID: "s2", State: backend.Success, Result: json.RawMessage(`{"ok":true}`), Retries: 1})
		require.NoError(t, err)
		require.Equal(t, backend.Success, st.State)
		rec, err = f.be.Get(ctx, "s2")
		require.NoError(t, err)
		require.Equal(t, backend.Success, rec.State)
		require.JSONEq(t, `{"ok":true}`, string(rec.Result))
		require.Empty(t, rec.Error, "a success clears the last attempt's error")
		require.Equal(t, 2, rec.Executions)
		require.False(t, rec.FinishedAt.IsZero())
	})

	t.Run("failure keeps the payload", func(t *testing.T) {
		st, err := f.be.Finish(ctx, backend.Outcome{ID: "s3", State: backend.Failure, Error: "bad", Payload: json.RawMessage(`[1,2]`), Meta: &backend.Meta{ID: "s3", Kind: "k"}})
		require.NoError(t, err)
		require.Equal(t, backend.Failure, st.State)
		rec, err := f.be.Get(ctx, "s3")
		require.NoError(t, err)
		require.JSONEq(t, `[1,2]`, string(rec.Payload))
		require.Equal(t, "k", rec.Kind)
		f.requireTTL(t, backend.TaskKey("s3"))
	})
}

// TestTerminalIsFinal: no write moves a record off SUCCESS, FAILURE or
// REVOKED, and Start on one reports it without running anything.
func TestTerminalIsFinal(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	terminal := []backend.Outcome{
		{State: backend.Success, Result: json.RawMessage(`"kept"`)},
		{State: backend.Failure, Error: "kept failure"},
		{State: backend.Revoked, Error: "kept revocation"},
	}
	late := []backend.State{backend.Retry, backend.Success, backend.Failure, backend.Revoked}
	for i, first := range terminal {
		t.Run(string(first.State), func(t *testing.T) {
			id := fmt.Sprintf("t%d", i)
			require.NoError(t, f.be.MarkPending(ctx, meta(id)))
			_, err := f.be.Start(ctx, backend.StartRequest{Meta: meta(id)})
			require.NoError(t, err)
			first.ID = id
			_, err = f.be.Finish(ctx, first)
			require.NoError(t, err)
			before, err := f.be.Get(ctx, id)
			require.NoError(t, err)

			for _, st := range late {
				got, err := f.be.Finish(ctx, backend.Outcome{ID: id, State: st, Error: "late", Result: json.RawMessage(`"late"`), Retries: 9, NextTry: time.Now().Add(time.Hour)})
				require.NoError(t, err)
				require.Equal(t, first.State, got.State, "late %s", st)
				require.Equal(t, before.Error, got.Error)
			}
			_, err = f.be.FinishInOrder(ctx, backend.Outcome{ID: id, State: backend.Revoked, Error: "late"})
			require.NoError(t, err)
			st, err := f.be.Start(ctx, backend.StartRequest{Meta: meta(id), Retries: 5})
			require.NoError(t, err)
			require.Equal(t, first.State, st.State)
			require.Equal(t, string(first.Result), string(st.Result))
			require.NoError(t, f.be.MarkPending(ctx, meta(id)))

			after, err := f.be.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, before, after, "the record is untouched")
		})
	}
}

func TestStartCancelledWorkflow(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, f.rdb.HSet(ctx, backend.WorkflowKey("wf1"), "cancelled", "1", "cancel_reason", "cancelled: by test").Err())
	m := meta("wf1.1")
	m.WorkflowID = "wf1"
	st, err := f.be.Start(ctx, backend.StartRequest{Meta: m, CheckCancel: true})
	require.NoError(t, err)
	require.Equal(t, backend.Revoked, st.State)
	require.Equal(t, "cancelled: by test", st.Error)
	require.Equal(t, backend.ReasonCancelled, st.Reason, "the cancel is data")
	rec, err := f.be.Get(ctx, "wf1.1")
	require.NoError(t, err)
	require.Equal(t, backend.Revoked, rec.State)
	require.Equal(t, backend.ReasonCancelled, rec.Reason)
	require.Zero(t, rec.Executions)
	f.requireTTL(t, backend.TaskKey("wf1.1"))

	// Started again (a redelivery), or finished by a late writer: the kept
	// record's reason comes back with it.
	st, err = f.be.Start(ctx, backend.StartRequest{Meta: m})
	require.NoError(t, err)
	require.Equal(t, backend.ReasonCancelled, st.Reason)
	st, err = f.be.Finish(ctx, backend.Outcome{ID: "wf1.1", State: backend.Failure, Error: "late"})
	require.NoError(t, err)
	require.False(t, st.Written)
	require.Equal(t, backend.ReasonCancelled, st.Reason)
	sts, err := f.be.FinishInOrder(ctx, backend.Outcome{ID: "wf1.1", State: backend.Failure, Error: "late"})
	require.NoError(t, err)
	require.Equal(t, backend.ReasonCancelled, sts[0].Reason)
}

// TestReasonRecorded: a terminal outcome's Reason is stored; an error text
// alone never makes one.
func TestReasonRecorded(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := f.be.Finish(ctx, backend.Outcome{ID: "r1", State: backend.Revoked, Error: "stopped", Reason: backend.ReasonCancelled})
	require.NoError(t, err)
	require.True(t, st.Written)
	require.Equal(t, backend.ReasonCancelled, st.Reason)
	rec, err := f.be.Get(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, backend.ReasonCancelled, rec.Reason)

	_, err = f.be.Finish(ctx, backend.Outcome{ID: "r2", State: backend.Failure, Error: "cancelled by upstream"})
	require.NoError(t, err)
	rec, err = f.be.Get(ctx, "r2")
	require.NoError(t, err)
	require.Empty(t, rec.Reason)
}

func TestChordJoin(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	join := func(idx int, res string) []json.RawMessage {
		out, err := f.be.ChordJoin(ctx, "wf", "wf.g0", idx, 3, json.RawMessage(res))
		require.NoError(t, err)
		return out
	}
	require.Nil(t, join(2, `"c"`))
	require.Nil(t, join(0, `"a"`))
	require.Nil(t, join(0, `"a-again"`), "a header delivered twice joins once")
	got := join(1, `"b"`)
	require.Equal(t, []json.RawMessage{json.RawMessage(`"a"`), json.RawMessage(`"b"`), json.RawMessage(`"c"`)}, got)
	require.Equal(t, got, join(2, `"c"`), "a repeated completion sees the same results")
	f.requireTTL(t, backend.ChordKey("wf", "wf.g0"))
}

// TestEveryWriteExpires: each backend write leaves its key with a TTL.
func TestEveryWriteExpires(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	writes := map[string]func(id string) error{
		"MarkPending": func(id string) error { return f.be.MarkPending(ctx, meta(id)) },
		"Start":       func(id string) error { _, err := f.be.Start(ctx, backend.StartRequest{Meta: meta(id)}); return err },
		"Finish RETRY": func(id string) error {
			_, err := f.be.Finish(ctx, backend.Outcome{ID: id, State: backend.Retry, NextTry: time.Now().Add(time.Minute)})
			return err
		},
		"Finish SUCCESS": func(id string) error {
			_, err := f.be.Finish(ctx, backend.Outcome{ID: id, State: backend.Success, Result: json.RawMessage(`1`)})
			return err
		},
		"FinishInOrder": func(id string) error {
			_, err := f.be.FinishInOrder(ctx, backend.Outcome{ID: id, State: backend.Revoked, Error: "x"})
			return err
		},
	}
	for name, write := range writes {
		t.Run(name+" on a missing record", func(t *testing.T) {
			id := "ttl-" + strings.ReplaceAll(name, " ", "-")
			require.NoError(t, write(id))
			f.requireTTL(t, backend.TaskKey(id))
		})
	}
	t.Run("RETRY due after the TTL", func(t *testing.T) {
		be, err := backend.New(f.rdb, backend.Options{ResultTTL: time.Second})
		require.NoError(t, err)
		defer be.Close()
		next := time.Now().Add(time.Hour)
		_, err = be.Finish(ctx, backend.Outcome{ID: "late-retry", State: backend.Retry, NextTry: next})
		require.NoError(t, err)
		require.Greater(t, f.requireTTL(t, backend.TaskKey("late-retry")), time.Until(next))
	})
}

func TestWait(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)

	t.Run("terminal returns at once", func(t *testing.T) {
		_, err := f.be.Finish(ctx, backend.Outcome{ID: "w1", State: backend.Success, Result: json.RawMessage(`5`)})
		require.NoError(t, err)
		rec, err := f.be.Wait(ctx, "w1")
		require.NoError(t, err)
		require.JSONEq(t, `5`, string(rec.Result))
	})

	t.Run("unknown id", func(t *testing.T) {
		_, err := f.be.Wait(ctx, "nobody")
		require.ErrorIs(t, err, backend.ErrNotFound)
	})

	t.Run("woken by the result", func(t *testing.T) {
		require.NoError(t, f.be.MarkPending(ctx, meta("w2")))
		done := make(chan error, 1)
		go func() {
			rec, err := f.be.Wait(ctx, "w2")
			if err == nil && rec.State != backend.Failure {
				err = fmt.Errorf("state %s", rec.State)
			}
			done <- err
		}()
		waitSubscribed(t, f, "w2")
		// A RETRY is not the end: the waiter keeps waiting.
		_, err := f.be.Finish(ctx, backend.Outcome{ID: "w2", State: backend.Retry, NextTry: time.Now()})
		require.NoError(t, err)
		_, err = f.be.Finish(ctx, backend.Outcome{ID: "w2", State: backend.Failure, Error: "x"})
		require.NoError(t, err)
		require.NoError(t, <-done)
	})

	t.Run("WaitKnown waits for a record not yet written", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := f.be.WaitKnown(ctx, "w3"); done <- err }()
		waitSubscribed(t, f, "w3")
		_, err := f.be.Finish(ctx, backend.Outcome{ID: "w3", State: backend.Success, Result: json.RawMessage(`1`)})
		require.NoError(t, err)
		require.NoError(t, <-done)
	})

	t.Run("bounded by ctx", func(t *testing.T) {
		require.NoError(t, f.be.MarkPending(ctx, meta("w4")))
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.be.Wait(wctx, "w4")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 2*time.Second)
		// The waiter unsubscribed on its way out.
		redistest.WaitFor(t, 5*time.Second, "unsubscribed", func() bool {
			m, err := f.rdb.PubSubNumSub(ctx, backend.DoneChannel("w4")).Result()
			return err == nil && m[backend.DoneChannel("w4")] == 0
		})
	})

	t.Run("many waiters on one id", func(t *testing.T) {
		require.NoError(t, f.be.MarkPending(ctx, meta("w5")))
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Add(1)
			go func() { defer wg.Done(); _, err := f.be.Wait(ctx, "w5"); errs <- err }()
		}
		waitSubscribed(t, f, "w5")
		_, err := f.be.Finish(ctx, backend.Outcome{ID: "w5", State: backend.Success, Result: json.RawMessage(`1`)})
		require.NoError(t, err)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

func waitSubscribed(t *testing.T, f *fixture, id string) {
	t.Helper()
	ch := backend.DoneChannel(id)
	redistest.WaitFor(t, 5*time.Second, "waiter on "+id+" subscribed", func() bool {
		m, err := f.rdb.PubSubNumSub(context.Background(), ch).Result()
		return err == nil && m[ch] == 1
	})
}

// TestPipelinedWrites: many concurrent writers share pipelines and each gets
// its own reply.
func TestPipelinedWrites(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("pw-%d", i)
			st, err := f.be.Finish(ctx, backend.Outcome{ID: id, State: backend.Success, Result: json.RawMessage(fmt.Sprint(i))})
			if err == nil && (st.State != backend.Success || string(st.Result) != fmt.Sprint(i)) {
				err = fmt.Errorf("%s: got %s %s", id, st.State, st.Result)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ids := make([]string, n+1)
	for i := range n {
		ids[i] = fmt.Sprintf("pw-%d", i)
	}
	ids[n] = "missing"
	recs, err := f.be.GetMany(ctx, ids)
	require.NoError(t, err)
	for i := range n {
		require.JSONEq(t, fmt.Sprint(i), string(recs[i].Result))
	}
	require.Nil(t, recs[n])
}

// TestScriptCacheFlushed: scripts are reloaded when Redis lost them (a
// restart without persistence, SCRIPT FLUSH), for single calls and batches.
func TestScriptCacheFlushed(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, f.be.MarkPending(ctx, meta("warm")))
	require.NoError(t, f.rdb.ScriptFlush(ctx).Err())
	require.NoError(t, f.be.MarkPending(ctx, meta("one")))
	require.NoError(t, f.rdb.ScriptFlush(ctx).Err())
	metas := make([]backend.Meta, 50)
	for i := range metas {
		metas[i] = meta(fmt.Sprintf("batch-%d", i))
	}
	require.NoError(t, f.be.MarkPending(ctx, metas...))
	recs, err := f.be.GetMany(ctx, []string{"one", "batch-0", "batch-49"})
	require.NoError(t, err)
	for _, r := range recs {
		require.NotNil(t, r)
		require.Equal(t, backend.Pending, r.State)
	}
}

// TestRedisDown: calls fail with an error, bounded by the caller's context.
func TestRedisDown(t *testing.T) {
	f := setup(t)
	f.srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err := f.be.MarkPending(ctx, meta("down"))
	require.Error(t, err)
	require.Less(t, time.Since(start), 15*time.Second)
	_, err = f.be.Get(ctx, "down")
	require.Error(t, err)
	require.False(t, errors.Is(err, backend.ErrNotFound), "Redis being down is not 'not found'")
}
