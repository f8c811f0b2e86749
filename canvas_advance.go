package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

// Carrying out what a plan says follows a step (chain.Action), shared by
// Submit (a workflow's start) and the worker (a step's end). Every part is
// idempotent, so a redelivered step can carry it out again: callbacks and
// steps have fixed ids, joins are per index, terminal records are kept.

// workflowEnd is how a workflow ended, as its record holds it.
type workflowEnd struct {
	ID     string
	State  State
	Result json.RawMessage
	Error  string
	// Reason is the record's reason (backend.ReasonCancelled after a cancel).
	Reason string
	// Written is true when this call recorded the end (false when an
	// earlier one had).
	Written bool
}

func endOf(id string, st backend.Status) workflowEnd {
	return workflowEnd{ID: id, State: st.State, Result: st.Result, Error: st.Error, Reason: st.Reason, Written: st.Written}
}

// handOnError is a result the plan cannot hand on (the next step's static
// args cannot take it): the workflow fails at node.
type handOnError struct {
	node int
	err  error
}

func (e *handOnError) Error() string { return e.err.Error() }
func (e *handOnError) Unwrap() error { return e.err }

// advance carries out act: callbacks first, then the next steps, then group
// joins (a complete group moves the workflow on in turn), then the end of
// the workflow, whose record it returns (nil when the workflow goes on).
// With redelivered, steps that already left PENDING are not enqueued again.
func (c *Client) advance(ctx context.Context, plan *chain.Plan, planJSON []byte, act chain.Action, defaults func(string) TaskOptions, redelivered bool) (*workflowEnd, error) {
	var end *workflowEnd
	todo := []chain.Action{act}
	for len(todo) > 0 {
		a := todo[0]
		todo = todo[1:]
		if err := c.runCallbacks(ctx, a.Callbacks, defaults); err != nil {
			return nil, err
		}
		ds := a.Dispatch
		if redelivered && len(ds) > 0 {
			var err error
			if ds, err = undispatched(ctx, c.be, ds); err != nil {
				return nil, err
			}
		}
		if err := c.dispatch(ctx, plan, planJSON, ds, defaults); err != nil {
			return nil, err
		}
		for _, j := range a.Joins {
			results, err := c.be.ChordJoin(ctx, plan.Workflow, plan.GroupID(j.Group), j.Index, j.Size, j.Result)
			if err != nil {
				return nil, err
			}
			if results == nil {
				continue // other members still running
			}
			list, err := json.Marshal(results)
			if err != nil {
				return nil, err
			}
			next, err := plan.Complete(j.Group, list, j.Last)
			if err != nil {
				return nil, &handOnError{node: j.Group, err: err}
			}
			todo = append(todo, next)
		}
		if a.Done {
			st, err := c.be.Finish(ctx, backend.Outcome{ID: plan.Workflow, State: Success, Result: a.Result})
			if err != nil {
				return nil, err
			}
			e := endOf(plan.Workflow, st)
			end = &e
		}
	}
	return end, nil
}

// runCallbacks enqueues link and on_error callbacks, each under its fixed
// id, so that a repeat after any crash neither loses nor repeats one.
func (c *Client) runCallbacks(ctx context.Context, cbs []chain.Callback, defaults func(string) TaskOptions) error {
	for _, cb := range cbs {
		if err := c.enqueueFixed(ctx, cb.Sig, cb.ID, cb.Args, defaults); err != nil {
			return fmt.Errorf("baton: %s callback %s: %w", cb.Event, cb.ID, err)
		}
	}
	return nil
}

// enqueueFixed enqueues sig with args under the fixed id. The PENDING record
// goes first (a no-op when a record exists), then the task is enqueued
// whatever the record says: asynq refuses an id it still holds, and a worker
// never runs a task whose record is terminal, so enqueuing again is harmless
// while skipping it after a crash between the two writes would lose the task.
func (c *Client) enqueueFixed(ctx context.Context, sig *Signature, id string, args json.RawMessage, defaults func(string) TaskOptions) error {
	var eo EnqueueOpts
	if len(sig.Options) > 0 {
		if err := json.Unmarshal(sig.Options, &eo); err != nil {
			return fmt.Errorf("options of %q: %w", sig.Kind, err)
		}
	}
	eo.ID = id
	m, err := c.buildMessage(sig.Kind, args, defaults(sig.Kind), &eo, time.Now())
	if err != nil {
		return err
	}
	if err := c.be.MarkPending(ctx, m.meta()); err != nil {
		return err
	}
	return c.send(ctx, []*message{m})
}

// advance is the worker's advance: a result that cannot be handed on fails
// the workflow, and the workflow's end is reported.
func (w *Worker) advance(ctx context.Context, plan *chain.Plan, planJSON []byte, m *message, act chain.Action, redelivered bool) error {
	end, err := w.client.advance(ctx, plan, planJSON, act, w.defaultsFor, redelivered)
	var he *handOnError
	if errors.As(err, &he) {
		return w.failWorkflowAt(ctx, plan, he.node, m.ID, m.Kind, Failure, he.Error(), false)
	}
	if errors.Is(err, ErrPayloadTooLarge) {
		// The result is too large to hand on: no retry can fix that.
		return w.failWorkflowAt(ctx, plan, m.Node, m.ID, m.Kind, Failure, err.Error(), false)
	}
	if err != nil {
		return &errInfra{err}
	}
	if end != nil {
		return w.workflowEnded(ctx, plan, *end)
	}
	return nil
}

// workflowEnded counts a workflow's end once and tells whoever awaits it
// (every time: what an awaiter does with the news is idempotent, so a
// redelivered last step that reports the end again is harmless, and one that
// crashed before reporting it is covered).
func (w *Worker) workflowEnded(ctx context.Context, plan *chain.Plan, end workflowEnd) error {
	if end.Written && w.obs != nil {
		w.obs.workflowFinished(ctx, WorkflowEnd{ID: plan.Workflow, Kind: plan.Kind(), Outcome: outcomeOf(end.State), Error: end.Error})
	}
	if len(plan.Awaiter) == 0 {
		return nil
	}
	return w.notifyAwaiter(ctx, plan.Awaiter, end)
}
