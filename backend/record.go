package backend

import (
	"encoding/json"
	"strconv"
	"time"
)

// Record is everything the backend keeps about one task.
type Record struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind,omitempty"`
	Queue      string          `json:"queue,omitempty"`
	State      State           `json:"state"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
	Retries    int             `json:"retries"`
	Executions int             `json:"executions"` // handler starts, redeliveries included
	EnqueuedAt time.Time       `json:"enqueued_at,omitzero"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	NextTryAt  time.Time       `json:"next_try_at,omitzero"`
	ParentID   string          `json:"parent_id,omitempty"`
	WorkflowID string          `json:"workflow_id,omitempty"`
	// Payload is the task's arguments, kept when it fails for good so the
	// failure can be inspected and replayed.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Replaced is the id of the workflow the task replaced itself with
	// (baton.Replace); the task ends when that workflow does.
	Replaced string `json:"replaced,omitempty"`
	// Throttled is the limit the task waits for, and ThrottledUntil when it
	// may run, while it waits (cleared when it starts). Throttles counts its
	// waits; none of them counts as a retry.
	Throttled      string    `json:"throttled,omitempty"`
	ThrottledUntil time.Time `json:"throttled_until,omitzero"`
	Throttles      int       `json:"throttles,omitempty"`
	// Reason says why a record ended as it did, as data: ReasonCancelled for
	// a task or workflow revoked by a cancel; "" otherwise.
	Reason string `json:"reason,omitempty"`
	// Waiting says what a WAITING durable run waits for: "child <id>",
	// "3 children", "timer until <time>", "event approve (until <time>)".
	Waiting string `json:"waiting,omitempty"`
	// Waiter is the durable run operation that awaits this task, as
	// "<run id>:<operation>" (set on the children of Call and Map).
	Waiter string `json:"waiter,omitempty"`
	// HeartbeatAt and HeartbeatDetails are the last heartbeat written by
	// the task (baton.Heartbeat).
	HeartbeatAt      time.Time       `json:"heartbeat_at,omitzero"`
	HeartbeatDetails json.RawMessage `json:"heartbeat_details,omitempty"`
}

// Duration is the time from start to finish, zero while running.
func (r *Record) Duration() time.Duration {
	if r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
		return 0
	}
	return r.FinishedAt.Sub(r.StartedAt)
}

// Field names in the task hash.
const (
	fState      = "state"
	fKind       = "kind"
	fQueue      = "queue"
	fResult     = "result"
	fError      = "error"
	fRetries    = "retries"
	fExecutions = "executions"
	fEnqueued   = "enqueued"
	fStarted    = "started"
	fFinished   = "finished"
	fNextTry    = "next_try"
	fParent     = "parent"
	fWorkflow   = "workflow"
	fPayload    = "payload"
	fReplaced   = "replaced"
	fReason     = "reason" // ReasonCancelled, or absent
)

func ms(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func recordFromHash(id string, h map[string]string) *Record {
	r := &Record{
		ID:          id,
		Kind:        h[fKind],
		Queue:       h[fQueue],
		State:       State(h[fState]),
		Error:       h[fError],
		EnqueuedAt:  fromMS(h[fEnqueued]),
		StartedAt:   fromMS(h[fStarted]),
		FinishedAt:  fromMS(h[fFinished]),
		NextTryAt:   fromMS(h[fNextTry]),
		ParentID:    h[fParent],
		WorkflowID:  h[fWorkflow],
		Replaced:    h[fReplaced],
		Reason:      h[fReason],
		Waiting:     h[fWaiting],
		Waiter:      h[fWaiter],
		HeartbeatAt: fromMS(h[fHeartbeatAt]),
	}
	if v := h[fHeartbeatDetails]; v != "" {
		r.HeartbeatDetails = json.RawMessage(v)
	}
	r.Retries, _ = strconv.Atoi(h[fRetries])
	r.Executions, _ = strconv.Atoi(h[fExecutions])
	r.Throttled, r.ThrottledUntil = h[fThrottled], fromMS(h[fThrottledUntil])
	r.Throttles, _ = strconv.Atoi(h[fThrottles])
	if v := h[fResult]; v != "" {
		r.Result = json.RawMessage(v)
	}
	if v := h[fPayload]; v != "" {
		r.Payload = json.RawMessage(v)
	}
	return r
}
