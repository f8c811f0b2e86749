package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Replace ends the running task by replacing it with a canvas, as Celery's
// Task.replace does. The handler returns it as its error:
//
//	return nil, baton.Replace(baton.Chain(Fetch.S(args, nil), Parse.Sig(nil)))
//
// The worker submits the canvas as a workflow of its own, with the id
// "<task id>.r" (Workflow and Client.Workflow open it), and the task stays
// STARTED, its record naming the replacement (Record.Replaced), until that
// workflow ends. The task then ends as the replacement did: SUCCESS with its
// final result, which goes on to the rest of the task's own workflow and to
// the task's link callback; FAILURE naming the replacement's error (its
// on_error callbacks run, and its workflow fails); REVOKED when the
// replacement was cancelled.
//
// The replacement starts at most once: its id is fixed, a redelivered task
// whose replacement was recorded does not run its handler again, and one
// redelivered before that (a crash mid-replace) submits the same id again,
// which finishes starting the stored replacement instead of starting
// another. A canvas that Submit rejects fails the task at once.
func Replace(c Canvas) error { return &replaceError{canvas: c} }

// replaceError carries Replace's canvas from the handler to the worker.
type replaceError struct{ canvas Canvas }

func (e *replaceError) Error() string {
	return "baton: the task replaced itself with a canvas (baton.Replace), which only a worker can run"
}

// replaceSuffix makes a replacement's workflow id from the task id: in the
// task's hash slot, and itself replaceable ("wf.3.r.2.r").
const replaceSuffix = ".r"

// replaceWait is what a replacement's awaiter note holds: the replaced
// task's delivery as the worker saw it.
type replaceWait struct {
	Msg     *message `json:"msg"`
	Retries int      `json:"retries"`
	StartMS int64    `json:"start"`
}

// replace submits the task's replacement and records it on the task; the
// task's delivery is then done (acknowledged) while the task stays STARTED.
func (w *Worker) replace(ctx context.Context, log *slog.Logger, m *message, retried int, cv Canvas, start time.Time) error {
	subID := m.ID + replaceSuffix
	msg := *m
	msg.Plan = nil // the replaced task's plan is found again from its workflow
	note, err := newAwaiter(awaitReplace, replaceWait{Msg: &msg, Retries: retried, StartMS: start.UnixMilli()})
	if err != nil {
		return w.fail(ctx, log, m, retried, Failure, "", "replace: encode the task for its replacement: "+err.Error(), true)
	}
	wf, err := w.client.Submit(ctx, cv, &SubmitOpts{ID: subID, awaiter: note})
	if err != nil {
		if errors.Is(err, ErrInvalidCanvas) || errors.Is(err, ErrInvalidOptions) || errors.Is(err, ErrPayloadTooLarge) {
			log.Warn("replacement canvas refused; the task fails", "err", err)
			return w.fail(ctx, log, m, retried, Failure, "", fmt.Sprintf("replace: %v", err), true)
		}
		// Redis trouble: the delivery is retried, and submitting the same
		// id again resumes what was stored.
		log.Warn("could not submit the replacement; will retry", "replacement", subID, "err", err)
		return &errInfra{err}
	}
	if err := w.be.MarkReplaced(ctx, m.ID, subID); err != nil {
		return &errInfra{err}
	}
	log.Info("task replaced by a workflow", "replacement", subID)
	w.observeEnd(ctx, m, OutcomeReplaced, nil)
	if wf.end != nil { // it ended as it started: nothing will report its end
		return w.notifyAwaiter(ctx, note, *wf.end)
	}
	return nil
}

// replacementEnded ends a replaced task as its replacement ended, and moves
// the task's own workflow on. Idempotent: recording a terminal state twice
// keeps the first, and the hand-on has fixed ids.
func (w *Worker) replacementEnded(ctx context.Context, data json.RawMessage, end workflowEnd) error {
	var rw replaceWait
	if err := json.Unmarshal(data, &rw); err != nil || rw.Msg == nil {
		w.log.Error("replacement note is corrupt; the replaced task is not completed", "workflow", end.ID, "err", err)
		return nil
	}
	m := rw.Msg
	log := w.log.With("task", m.ID, "kind", m.Kind, "replacement", end.ID)
	if m.Workflow != "" {
		log = log.With("workflow", m.Workflow)
	}
	switch end.State {
	case Success:
		return w.succeed(ctx, log, m, rw.Retries, end.Result, time.UnixMilli(rw.StartMS))
	case Revoked:
		return w.fail(ctx, log, m, rw.Retries, Revoked, end.Reason, end.Error, false)
	}
	msg := fmt.Sprintf("replaced by workflow %s, which failed: %s", end.ID, end.Error)
	return w.fail(ctx, log, m, rw.Retries, Failure, "", msg, false)
}
