package baton

import "context"

type taskInfoKey struct{}

// TaskInfo describes the running task to its handler.
type TaskInfo struct {
	ID         string
	Kind       string
	Queue      string
	WorkflowID string
	// ParentID is the task whose result this one received in its workflow
	// ("" for a first step or a task enqueued on its own).
	ParentID string
	// Retries is how many attempts failed before this one (0 on the first).
	Retries int
	// MaxRetries is the task's effective retry budget.
	MaxRetries int
}

func withTaskInfo(ctx context.Context, m *message, retries, maxRetries int) context.Context {
	return WithInfo(ctx, TaskInfo{ID: m.ID, Kind: m.Kind, Queue: m.Queue, WorkflowID: m.Workflow,
		ParentID: m.Parent, Retries: retries, MaxRetries: maxRetries})
}

// WithInfo returns a copy of ctx that carries info, as the context a worker
// gives a handler does: InfoFrom returns it. It is for tests that call a
// handler directly (batontest.Run does).
func WithInfo(ctx context.Context, info TaskInfo) context.Context {
	return context.WithValue(ctx, taskInfoKey{}, info)
}

// InfoFrom returns the running task's info inside a handler.
func InfoFrom(ctx context.Context) (TaskInfo, bool) {
	ti, ok := ctx.Value(taskInfoKey{}).(TaskInfo)
	return ti, ok
}
