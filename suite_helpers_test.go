package baton_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// Helpers shared by the foundation suite (lifecycle, wait, bad input,
// exactly-once tests). They wait on observable state, never on sleeps.

const waitLimit = 15 * time.Second

// waitRecord polls id's record until cond holds and returns that record.
func waitRecord(t *testing.T, b *bundle, id, msg string, cond func(*baton.Record) bool) *baton.Record {
	t.Helper()
	var last *baton.Record
	redistest.WaitFor(t, waitLimit, msg, func() bool {
		r, err := b.client.Get(context.Background(), id)
		if err != nil {
			return false
		}
		last = r
		return cond(r)
	})
	return last
}

// waitState polls id's record until it is in state st.
func waitState(t *testing.T, b *bundle, id string, st baton.State) *baton.Record {
	t.Helper()
	return waitRecord(t, b, id, "task "+id+" reaches "+string(st), func(r *baton.Record) bool { return r.State == st })
}

// waitAsynqGone waits until asynq holds no copy of task id in queue: every
// delivery of it was processed and acknowledged.
func waitAsynqGone(t *testing.T, b *bundle, queue, id string) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	redistest.WaitFor(t, waitLimit, "asynq task "+id+" in "+queue+" processed", func() bool {
		_, err := insp.GetTaskInfo(queue, id)
		return errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
	})
}

// requireTaskError asserts err is a *baton.TaskError in state st whose
// message contains each of contains.
func requireTaskError(t *testing.T, err error, st baton.State, contains ...string) *baton.TaskError {
	t.Helper()
	require.Error(t, err)
	var te *baton.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, st, te.State, "error: %v", err)
	for _, c := range contains {
		require.Contains(t, te.Message, c)
	}
	return te
}

// runLog records handler runs per task id, in order.
type runLog struct {
	mu   sync.Mutex
	runs map[string][]run
}

type run struct {
	queue string
	start time.Time
	end   time.Time // when the handler returned
}

func newRunLog() *runLog { return &runLog{runs: map[string][]run{}} }

// begin notes the start of a run and returns its index.
func (l *runLog) begin(ctx context.Context) (string, int) {
	info, _ := baton.InfoFrom(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[info.ID] = append(l.runs[info.ID], run{queue: info.Queue, start: time.Now()})
	return info.ID, len(l.runs[info.ID]) - 1
}

// end notes when run i of id returned (call it last thing in the handler).
func (l *runLog) end(id string, i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[id][i].end = time.Now()
}

func (l *runLog) get(id string) []run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]run(nil), l.runs[id]...)
}

func (l *runLog) count(id string) int { return len(l.get(id)) }

// requireWithin asserts that d is in [lo, hi].
func requireWithin(t *testing.T, d, lo, hi time.Duration, what string) {
	t.Helper()
	require.GreaterOrEqual(t, d, lo, "%s: %v below %v", what, d, lo)
	require.LessOrEqual(t, d, hi, "%s: %v above %v", what, d, hi)
}

// msTrunc is the resolution of the backend's timestamps.
func msTrunc(tm time.Time) time.Time { return time.UnixMilli(tm.UnixMilli()) }
