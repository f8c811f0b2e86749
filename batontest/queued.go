package batontest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// QueuedTask is a task the Env's queues hold: enqueued and not run yet,
// running, waiting for its time or a retry, or failed for good (asynq
// keeps those, "archived"). A task that succeeded is gone from the queues:
// its record (RequireRecord, Client.Get) is what remains.
type QueuedTask struct {
	baton.TaskMessage
	Queue string
	// State is asynq's state of the task: "pending", "active",
	// "scheduled", "retry", "archived" or "completed".
	State string
	// NextRunAt is when a scheduled task or a retry is due (to the second).
	NextRunAt time.Time
	// Retried is how many attempts failed; LastError the last one's error.
	Retried   int
	LastError string
}

// describe is the task on one line, for failure messages.
func (t QueuedTask) describe(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-9s kind=%s id=%s args=%s", t.Queue, t.State, t.Kind, t.ID, clip(string(t.Args), 200))
	if t.State == "scheduled" || t.State == "retry" {
		fmt.Fprintf(&b, " due=%s", dueIn(t.NextRunAt, now))
	}
	if t.Retried > 0 {
		fmt.Fprintf(&b, " retried=%d", t.Retried)
	}
	if t.LastError != "" {
		fmt.Fprintf(&b, " last_error=%q", clip(t.LastError, 200))
	}
	return b.String()
}

func dueIn(at, now time.Time) string {
	if d := at.Sub(now); d > 0 {
		return "in " + d.Round(time.Second).String()
	}
	return "now"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// The states of a task still to run, and all states asynq keeps.
var (
	pendingStates = []asynq.TaskState{asynq.TaskStatePending, asynq.TaskStateActive, asynq.TaskStateScheduled, asynq.TaskStateRetry}
	allStates     = append(slices.Clone(pendingStates), asynq.TaskStateArchived, asynq.TaskStateCompleted)
)

// Queued lists every task the Env's queues hold, by queue and state, in
// queue order within each.
func (e *Env) Queued(ctx context.Context) ([]QueuedTask, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	queues, err := e.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("batontest: list queues: %w", err)
	}
	slices.Sort(queues)
	return e.queued(queues, allStates)
}

// queued lists the tasks of queues in states.
func (e *Env) queued(queues []string, states []asynq.TaskState) ([]QueuedTask, error) {
	known, err := e.insp.Queues()
	if err != nil {
		return nil, err
	}
	var out []QueuedTask
	for _, q := range queues {
		if !slices.Contains(known, q) {
			continue
		}
		for _, st := range states {
			infos, err := e.listAll(q, st)
			if err != nil {
				return nil, fmt.Errorf("batontest: list %s tasks of queue %s: %w", st, q, err)
			}
			for _, ti := range infos {
				out = append(out, queuedTask(ti))
			}
		}
	}
	return out, nil
}

// listAll pages through one state of a queue.
func (e *Env) listAll(q string, st asynq.TaskState) ([]*asynq.TaskInfo, error) {
	list := map[asynq.TaskState]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		asynq.TaskStatePending:   e.insp.ListPendingTasks,
		asynq.TaskStateActive:    e.insp.ListActiveTasks,
		asynq.TaskStateScheduled: e.insp.ListScheduledTasks,
		asynq.TaskStateRetry:     e.insp.ListRetryTasks,
		asynq.TaskStateArchived:  e.insp.ListArchivedTasks,
		asynq.TaskStateCompleted: e.insp.ListCompletedTasks,
	}[st]
	const size = 500
	var all []*asynq.TaskInfo
	for page := 1; ; page++ {
		infos, err := list(q, asynq.PageSize(size), asynq.Page(page))
		if err != nil {
			return nil, err
		}
		all = append(all, infos...)
		if len(infos) < size {
			return all, nil
		}
	}
}

// queuedTask describes ti; a payload that is not a baton message (another
// program's task) keeps asynq's id and type.
func queuedTask(ti *asynq.TaskInfo) QueuedTask {
	t := QueuedTask{Queue: ti.Queue, State: ti.State.String(), Retried: ti.Retried, LastError: ti.LastErr}
	if ti.State == asynq.TaskStateScheduled || ti.State == asynq.TaskStateRetry {
		t.NextRunAt = ti.NextProcessAt
	}
	if m, err := baton.DecodeTaskMessage(ti.Payload); err == nil {
		t.TaskMessage = *m
	} else {
		t.TaskMessage = baton.TaskMessage{ID: ti.ID, Kind: ti.Type}
	}
	return t
}
