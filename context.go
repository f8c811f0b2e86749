package baton

import "context"

type taskInfoKey struct{}

// TaskInfo describes the running task to its handler.
type TaskInfo struct {
	ID         string
	Kind       string
	Queue      string
	WorkflowID string
}

func withTaskInfo(ctx context.Context, m *message) context.Context {
	return context.WithValue(ctx, taskInfoKey{}, TaskInfo{ID: m.ID, Kind: m.Kind, Queue: m.Queue, WorkflowID: m.Workflow})
}

// InfoFrom returns the running task's info inside a handler.
func InfoFrom(ctx context.Context) (TaskInfo, bool) {
	ti, ok := ctx.Value(taskInfoKey{}).(TaskInfo)
	return ti, ok
}
