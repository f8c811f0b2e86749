package baton

import (
	"context"
	"encoding/json"
)

// afterSuccess hands a finished step's result on through its workflow.
func (w *Worker) afterSuccess(ctx context.Context, m *message, result json.RawMessage) error {
	if m.Workflow == "" {
		return nil
	}
	return nil
}

// afterFailure propagates a final failure through the task's workflow.
func (w *Worker) afterFailure(ctx context.Context, m *message, state State, errText string) error {
	if m.Workflow == "" {
		return nil
	}
	return nil
}

// cancelled reports whether the task's workflow was cancelled.
func (w *Worker) cancelled(m *message) bool { return false }
