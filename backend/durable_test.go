package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// The durable-run protocol at the script level (the rules are in the root
// package's durable.go): claims by generation and root delivery, fences,
// parks, notifications and signals, each transition asserted on the
// records it leaves.

// start delivers run id with resume generation rg as asynq delivery dlv.
func start(t *testing.T, f *fixture, id string, rg int, root, dlv string) backend.Status {
	t.Helper()
	st, err := f.be.StartDurable(context.Background(), backend.StartRequest{Meta: meta(id), DeliveryID: dlv},
		backend.DurableStart{Gen: rg, Root: root, Msg: []byte(`{"v":1,"id":"` + id + `","kind":"k"}`), Events: []string{"go"}})
	require.NoError(t, err)
	return st
}

func TestDurableClaims(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	const id = "run1"

	// The first delivery claims the run; a duplicate message (another asynq
	// id) is stale; a recovery copy of the first (same root) replays.
	st := start(t, f, id, 0, id, id)
	require.Equal(t, backend.Started, st.State)
	require.NotNil(t, st.Run.Log)
	require.Equal(t, backend.Stale, start(t, f, id, 0, "dup", "dup").State)
	require.Equal(t, backend.Started, start(t, f, id, 0, id, id+"~r1").State)

	// The copy owns the run now: the original delivery, should it still be
	// alive, is fenced out; the copy is not.
	orig := backend.Fence{Run: id, Gen: 0, Root: id, Delivery: id}
	copyF := backend.Fence{Run: id, Gen: 0, Root: id, Delivery: id + "~r1"}
	_, err := f.be.Park(ctx, orig, backend.ParkRequest{Seq: 0, Kind: backend.WaitSleep, Until: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, backend.ErrRunLost)

	// The copy parks on a timer: WAITING, generation 1, TTL past the deadline.
	until := time.Now().Add(time.Hour)
	rep, err := f.be.Park(ctx, copyF, backend.ParkRequest{Seq: 0, Kind: backend.WaitSleep, Until: until,
		Header: []byte(`{"t":"sleep","n":"sleep"}`), Waiting: "timer"})
	require.NoError(t, err)
	require.False(t, rep.Ready)
	require.Equal(t, 1, rep.Gen)
	rec, err := f.be.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, backend.Waiting, rec.State)
	require.Equal(t, "timer", rec.Waiting)
	require.Greater(t, f.requireTTL(t, backend.RunKey(id)), time.Hour)

	// Nothing the parked delivery does afterwards is written.
	_, _, err = f.be.RecordOp(ctx, copyF, 1, []byte(`{"t":"step","n":"x"}`), true, []byte(`1`), time.Now())
	require.ErrorIs(t, err, backend.ErrRunLost)

	// Redelivered, the parking delivery learns the run is parked, and when
	// its timer is due.
	st = start(t, f, id, 0, id, id+"~r1")
	require.Equal(t, backend.Parked, st.State)
	require.Equal(t, 1, st.Run.Gen)
	require.False(t, st.Run.WakeReady)
	require.WithinDuration(t, until, st.Run.WakeAt, time.Millisecond)

	// Two resumes of generation 1 (the timer and a wake-up): the first
	// claims, the other is stale; a resume of a later generation is stale.
	require.Equal(t, backend.Stale, start(t, f, id, 2, id+"~2", id+"~2").State)
	st = start(t, f, id, 1, id+"~1t", id+"~1t")
	require.Equal(t, backend.Started, st.State)
	require.Equal(t, 1, st.Run.Gen)
	require.Equal(t, backend.Stale, start(t, f, id, 1, id+"~1", id+"~1").State)
	rec, err = f.be.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, backend.Started, rec.State)
	require.Empty(t, rec.Waiting)
	require.Equal(t, 3, rec.Executions, "first delivery, its copy, the timer resume")

	// Terminal: every fenced write answers GONE, every delivery gets the
	// terminal record.
	_, err = f.be.Finish(ctx, backend.Outcome{ID: id, State: backend.Success, Result: []byte(`7`)})
	require.NoError(t, err)
	_, err = f.be.Park(ctx, backend.Fence{Run: id, Gen: 1, Root: id + "~1t", Delivery: id + "~1t"}, backend.ParkRequest{Seq: 1, Kind: backend.WaitRetry})
	require.ErrorIs(t, err, backend.ErrRunGone)
	st = start(t, f, id, 1, id+"~1", id+"~1")
	require.Equal(t, backend.Success, st.State)
	require.JSONEq(t, `7`, string(st.Result))
}

func TestDurableTimerClaimCompletesDueWaits(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	for _, kind := range []string{backend.WaitSleep, backend.WaitEvent} {
		id := "due-" + kind
		start(t, f, id, 0, id, id)
		fence := backend.Fence{Run: id, Root: id, Delivery: id}
		until := time.Now().Add(50 * time.Millisecond)
		rep, err := f.be.Park(ctx, fence, backend.ParkRequest{Seq: 0, Kind: kind, Until: until, Event: "go",
			Header: []byte(`{"t":"x","n":"y"}`)})
		require.NoError(t, err)
		require.False(t, rep.Ready)
		redistest.WaitFor(t, time.Second, "the deadline passes", func() bool { return time.Now().After(until) })
		st := start(t, f, id, 1, id+"~1t", id+"~1t")
		require.Equal(t, backend.Started, st.State)
		op := st.Run.Log.Ops[0]
		require.NotNil(t, op)
		if kind == backend.WaitSleep {
			require.Equal(t, backend.OpOK, op.Status, "a due sleep completes at the claim")
		} else {
			require.Equal(t, backend.OpErr, op.Status, "a due event wait times out at the claim")
			require.Equal(t, backend.EventTimeout, op.Error)
		}
	}
}

func TestDurableChildrenNotify(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	const id = "parent"
	start(t, f, id, 0, id, id)
	fence := backend.Fence{Run: id, Root: id, Delivery: id}
	kids := []backend.Child{{ID: id + ".c0.0", Task: true}, {ID: id + ".c0.1", Task: true}}
	created, err := f.be.StartCall(ctx, fence, 0, []byte(`{"t":"map","n":"k","c":2}`), "k", "q", kids, time.Time{})
	require.NoError(t, err)
	require.True(t, created)
	created, err = f.be.StartCall(ctx, fence, 0, []byte(`{"t":"map","n":"k","c":2}`), "k", "q", kids, time.Time{})
	require.NoError(t, err)
	require.False(t, created, "a replay finds the operation recorded")
	rec, err := f.be.Get(ctx, kids[0].ID)
	require.NoError(t, err)
	require.Equal(t, backend.Pending, rec.State)
	require.Equal(t, id+":0", rec.Waiter)

	// A child that ends before the run parks: no resume (the run is running);
	// the park then sees the operation incomplete and parks.
	gen, _, err := f.be.NotifyChild(ctx, id, 0, kids[0].ID, 0, backend.ChildOutcome{State: backend.Success, Payload: `1`})
	require.NoError(t, err)
	require.Zero(t, gen)
	rep, err := f.be.Park(ctx, fence, backend.ParkRequest{Seq: 0, Kind: backend.WaitChildren, Children: 2})
	require.NoError(t, err)
	require.False(t, rep.Ready)

	// The last child resumes the run, as often as it is told (a redelivered
	// child), and its outcome is stored once.
	for range 2 {
		gen, msg, err := f.be.NotifyChild(ctx, id, 0, kids[1].ID, 1, backend.ChildOutcome{State: backend.Failure, Payload: "boom"})
		require.NoError(t, err)
		require.Equal(t, 1, gen)
		require.Contains(t, string(msg), `"id":"parent"`)
	}
	_, _, err = f.be.NotifyChild(ctx, id, 0, kids[1].ID, 1, backend.ChildOutcome{State: backend.Success, Payload: "late"})
	require.NoError(t, err)
	st := start(t, f, id, 1, id+"~1", id+"~1")
	require.Equal(t, backend.Started, st.State)
	op := st.Run.Log.Ops[0]
	require.Equal(t, backend.OpOK, op.Status)
	require.Equal(t, backend.ChildOutcome{State: backend.Success, Payload: "1"}, op.Children[0])
	require.Equal(t, backend.ChildOutcome{State: backend.Failure, Payload: "boom"}, op.Children[1])
	gen, _, err = f.be.NotifyChild(ctx, id, 0, kids[1].ID, 1, backend.ChildOutcome{State: backend.Failure, Payload: "boom"})
	require.NoError(t, err)
	require.Zero(t, gen, "no resume once the run runs again")
}

func TestDurableSignalScript(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	const id = "sig"

	rep, err := f.be.Signal(ctx, id, "go", []byte(`1`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalNotStarted, rep.Code)
	rep, err = f.be.Signal(ctx, id, "go", []byte(`1`), []string{"go"}, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalBuffered, rep.Code, "an event declared by the kind is kept before the run starts")

	start(t, f, id, 0, id, id)
	fence := backend.Fence{Run: id, Root: id, Delivery: id}
	rep, err = f.be.Signal(ctx, id, "go", []byte(`2`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalPending, rep.Code, "one undelivered event per name")
	rep, err = f.be.Signal(ctx, id, "stop", []byte(`2`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalUnknown, rep.Code)

	// The wait consumes the buffered event without parking.
	pr, err := f.be.Park(ctx, fence, backend.ParkRequest{Seq: 0, Kind: backend.WaitEvent, Event: "go", Until: time.Now().Add(time.Minute),
		Header: []byte(`{"t":"event","n":"go"}`)})
	require.NoError(t, err)
	require.True(t, pr.Ready)
	require.JSONEq(t, `1`, string(pr.Result))

	// A wait on an undeclared name takes a signal of that name while it waits.
	pr, err = f.be.Park(ctx, fence, backend.ParkRequest{Seq: 1, Kind: backend.WaitEvent, Event: "adhoc", Until: time.Now().Add(time.Minute),
		Header: []byte(`{"t":"event","n":"adhoc"}`)})
	require.NoError(t, err)
	require.False(t, pr.Ready)
	rep, err = f.be.Signal(ctx, id, "adhoc", []byte(`3`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalDelivered, rep.Code)
	require.Equal(t, pr.Gen, rep.Gen)
	rep, err = f.be.Signal(ctx, id, "adhoc", []byte(`3`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalDelivered, rep.Code, "the same signal again (a retry) re-asks for the resume")
	rep, err = f.be.Signal(ctx, id, "adhoc", []byte(`4`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalUnknown, rep.Code, "a second, different event for a consumed wait is refused")
	require.Equal(t, pr.Gen, rep.Gen, "and still asks for the resume of the delivered one")

	_, err = f.be.Finish(ctx, backend.Outcome{ID: id, State: backend.Failure, Error: "x"})
	require.NoError(t, err)
	rep, err = f.be.Signal(ctx, id, "go", []byte(`1`), nil, false)
	require.NoError(t, err)
	require.Equal(t, backend.SignalFinished, rep.Code)
	require.Equal(t, backend.Failure, rep.State)
}

func TestDurableCancelScript(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	const id = "cx"
	start(t, f, id, 0, id, id)
	fence := backend.Fence{Run: id, Root: id, Delivery: id}
	_, err := f.be.StartCall(ctx, fence, 0, []byte(`{"t":"call","n":"k","c":1}`), "k", "q", []backend.Child{{ID: id + ".c0", Task: true}}, time.Time{})
	require.NoError(t, err)
	_, err = f.be.Park(ctx, fence, backend.ParkRequest{Seq: 0, Kind: backend.WaitChildren, Children: 1})
	require.NoError(t, err)
	for range 2 { // repeatable
		rep, err := f.be.CancelRun(ctx, id, "cancelled: test", nil)
		require.NoError(t, err)
		require.Equal(t, []string{id + ".c0"}, rep.Children)
		require.Equal(t, 1, rep.Gen)
	}
	rec, err := f.be.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, backend.Revoked, rec.State)
	require.Equal(t, "cancelled: test", rec.Error)
}

// TestStartKeepsRecordedRetries: a delivery whose asynq retry count starts
// afresh (a recovery copy, a durable run's resume) continues the count the
// record holds.
func TestStartKeepsRecordedRetries(t *testing.T) {
	f := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := f.be.Start(ctx, backend.StartRequest{Meta: meta("r"), DeliveryID: "r"})
	require.NoError(t, err)
	require.Equal(t, 0, st.Retries)
	_, err = f.be.Finish(ctx, backend.Outcome{ID: "r", State: backend.Retry, Retries: 2, Error: "x", NextTry: time.Now()})
	require.NoError(t, err)
	st, err = f.be.Start(ctx, backend.StartRequest{Meta: meta("r"), DeliveryID: "r~r1", Retries: 0})
	require.NoError(t, err)
	require.Equal(t, backend.Started, st.State)
	require.Equal(t, 2, st.Retries, "the copy continues the recorded count")
	st, err = f.be.Start(ctx, backend.StartRequest{Meta: meta("r"), DeliveryID: "r", Retries: 3})
	require.NoError(t, err)
	require.Equal(t, 3, st.Retries, "asynq's count when it is the larger")
	rec, err := f.be.Get(ctx, "r")
	require.NoError(t, err)
	require.Equal(t, 3, rec.Retries)
}
