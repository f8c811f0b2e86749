package baton

import (
	"context"
	"encoding/json"
)

// Awaited workflows. Whoever submits a workflow from inside the worker may
// leave a note in its plan saying who waits for its end (an awaiter). The
// worker that records the end — success, failure or revocation — hands it
// to the awaiter's kind. The note is stored with the plan in the same write
// (so a workflow is never without it), and the end is handed over every time
// a delivery records or finds it: after a crash between recording the end
// and handing it over, the redelivered last step hands it over again. What an
// awaiter does with the end must therefore be idempotent (recording a
// terminal state is: it is never overwritten).
//
// Replace uses it: the replaced task ends as its replacement did. A durable
// run that Calls a canvas uses it with a kind of its own (awaitDurable).

// awaiter is the note, stored as JSON in chain.Plan.Awaiter.
type awaiter struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// Awaiter kinds.
const awaitReplace = "replace" // Data is a replaceWait

// newAwaiter encodes the note for a workflow awaited by kind.
func newAwaiter(kind string, data any) (json.RawMessage, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(awaiter{Kind: kind, Data: raw})
}

// notifyAwaiter hands a workflow's end to the awaiter noted in its plan.
func (w *Worker) notifyAwaiter(ctx context.Context, note json.RawMessage, end workflowEnd) error {
	var a awaiter
	if err := json.Unmarshal(note, &a); err != nil {
		w.log.Error("workflow awaiter note is corrupt; nobody is told of its end", "workflow", end.ID, "err", err)
		return nil
	}
	switch a.Kind {
	case awaitReplace:
		return w.replacementEnded(ctx, a.Data, end)
	case awaitDurable:
		return w.canvasEnded(ctx, a.Data, end)
	}
	w.log.Error("workflow awaited by an unknown kind (a newer baton?); nobody is told of its end", "workflow", end.ID, "kind", a.Kind)
	return nil
}
