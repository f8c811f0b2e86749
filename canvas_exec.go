package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

// The worker's half of the canvas: after a step ends for good, move the
// workflow on. Every action here is idempotent, because a step can be
// delivered again after any crash: joins are per index, next steps have
// deterministic ids and are skipped once they left PENDING, and terminal
// records are never overwritten.

type planCache struct {
	mu sync.Mutex
	m  map[string]cachedPlan
}

type cachedPlan struct {
	plan *chain.Plan
	raw  []byte
}

// plan returns the plan of m's workflow: from this worker's cache, from the
// message (small plans travel inline), or from Redis.
func (w *Worker) plan(ctx context.Context, m *message) (*chain.Plan, []byte, error) {
	w.plans.mu.Lock()
	c, ok := w.plans.m[m.Workflow]
	w.plans.mu.Unlock()
	if ok {
		return c.plan, c.raw, nil
	}
	var (
		p   *chain.Plan
		raw []byte
		err error
	)
	if len(m.Plan) > 0 {
		raw = m.Plan
		p, err = decodePlan(m.Workflow, raw)
	} else {
		p, raw, err = loadPlan(ctx, w.rdb, m.Workflow)
	}
	if err != nil {
		return nil, nil, err
	}
	w.plans.mu.Lock()
	if w.plans.m == nil || len(w.plans.m) > 4096 {
		w.plans.m = map[string]cachedPlan{}
	}
	w.plans.m[m.Workflow] = cachedPlan{plan: p, raw: raw}
	w.plans.mu.Unlock()
	return p, raw, nil
}

// afterSuccess hands a finished step's result on through its workflow.
// redelivered is true when the success was recorded by an earlier delivery.
func (w *Worker) afterSuccess(ctx context.Context, m *message, result json.RawMessage, redelivered bool) error {
	if err := w.childEnded(ctx, m, backend.ChildOutcome{State: Success, Payload: string(result)}); err != nil {
		return err
	}
	if m.Workflow == "" {
		return nil
	}
	plan, planJSON, err := w.plan(ctx, m)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			w.log.Error("workflow plan is gone; cannot hand on", "task", m.ID, "workflow", m.Workflow)
			return nil
		}
		return &errInfra{err}
	}
	act, err := plan.Complete(m.Node, result, m.ID)
	if err != nil {
		// The next step cannot be built from this result (static args not
		// an array or object): the workflow fails here, nothing after runs.
		return w.failWorkflowAt(ctx, plan, m.Node, m.ID, m.Kind, Failure, err.Error(), false)
	}
	return w.advance(ctx, plan, planJSON, m, act, redelivered)
}

// undispatched keeps the steps whose record is missing or PENDING. One still
// queued is enqueued again harmlessly (asynq refuses a duplicate id).
func undispatched(ctx context.Context, be *backend.Backend, ds []chain.Dispatch) ([]chain.Dispatch, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.TaskID
	}
	recs, err := be.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []chain.Dispatch
	for i, d := range ds {
		if recs[i] == nil || recs[i].State == Pending {
			out = append(out, d)
		}
	}
	return out, nil
}

func (w *Worker) defaultsFor(kind string) TaskOptions {
	if d := w.def(kind); d != nil {
		return d.Options()
	}
	return w.client.defaultsFor(kind)
}

// afterFailure propagates a step's final failure (or revocation), st as
// recorded: later steps fail naming it, the workflow fails naming the step,
// the error callbacks of the step and of the canvases around it run, and
// compensations of completed steps run in reverse. A step revoked by a
// cancel (st.Reason) revokes the workflow instead, and runs neither.
func (w *Worker) afterFailure(ctx context.Context, m *message, st backend.Status) error {
	state, errText := st.State, st.Error
	if err := w.childEnded(ctx, m, backend.ChildOutcome{State: st.State, Reason: st.Reason, Payload: st.Error}); err != nil {
		return err
	}
	if m.Workflow == "" {
		return nil
	}
	plan, _, err := w.plan(ctx, m)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return &errInfra{err}
	}
	if sig := plan.Nodes[m.Node].Sig; state == Failure && sig != nil && sig.ContinueOnFailure {
		if sig.OnError != nil {
			info, _ := json.Marshal(chain.ErrorInfo{ID: m.ID, Kind: m.Kind, Error: errText, Workflow: plan.Workflow})
			if err := w.enqueueCallback(ctx, sig.OnError, m.ID+".err", info); err != nil {
				return &errInfra{err}
			}
		}
		f := chain.Failed{Failed: true, ID: m.ID, Kind: m.Kind, Error: errText}
		if len(m.Args) <= 4<<10 {
			f.Args = m.Args
		}
		failed, _ := json.Marshal(f)
		return w.afterSuccess(ctx, m, failed, true)
	}
	return w.failWorkflowAt(ctx, plan, m.Node, m.ID, m.Kind, state, errText, st.Reason == backend.ReasonCancelled)
}

// failWorkflowAt ends the workflow at node, whose task ended in state
// (FAILURE, or REVOKED when it expired or was cancelled). The steps it
// skips end FAILURE naming the failed parent, as in Celery (REVOKED after a
// revocation). cancelled says the node was revoked by a cancel, as recorded
// (never read from errText): the workflow is then revoked, not failed.
func (w *Worker) failWorkflowAt(ctx context.Context, plan *chain.Plan, node int, taskID, kind string, state State, errText string, cancelled bool) error {
	reason, skipped := fmt.Sprintf("parent %s failed: %s", taskID, errText), Failure
	if state == Revoked {
		reason, skipped = fmt.Sprintf("parent %s was revoked: %s", taskID, errText), Revoked
	}
	wfState, wfErr, wfReason := Failure, fmt.Sprintf("%s %s (%s) failed: %s", plan.Position(node), taskID, kind, errText), ""
	if cancelled {
		reason, wfState, wfErr, wfReason = errText, Revoked, errText, backend.ReasonCancelled
	}
	// Callbacks and compensations are enqueued before the failure is
	// recorded, so whoever sees the workflow fail can find them.
	if !cancelled {
		if err := w.errorCallbacks(ctx, plan, node, taskID, kind, errText); err != nil {
			return &errInfra{err}
		}
		if err := w.compensate(ctx, plan); err != nil {
			return &errInfra{err}
		}
	}
	outs := []backend.Outcome{}
	for _, n := range plan.Downstream(node) {
		outs = append(outs, backend.Outcome{ID: plan.Nodes[n].TaskID, State: skipped, Error: reason, Reason: wfReason})
	}
	// The steps first, then the workflow, in one atomic call: whoever sees
	// the workflow fail sees no step after the failure still PENDING.
	outs = append(outs, backend.Outcome{ID: plan.Workflow, State: wfState, Error: wfErr, Reason: wfReason})
	sts, err := w.be.FinishInOrder(ctx, outs...)
	if err != nil {
		return &errInfra{err}
	}
	// this call recorded it, or a repeat found the first record
	return w.workflowEnded(ctx, plan, endOf(plan.Workflow, sts[len(sts)-1]))
}

// errorCallbacks runs, once each, the error callbacks a failure at node
// triggers (chain.Plan.Failed).
func (w *Worker) errorCallbacks(ctx context.Context, plan *chain.Plan, node int, taskID, kind, errText string) error {
	info, _ := json.Marshal(chain.ErrorInfo{ID: taskID, Kind: kind, Error: errText, Workflow: plan.Workflow})
	cbs, err := plan.Failed(node, info)
	if err != nil {
		// Submit checks every callback's args; only a plan stored by an
		// older version can get here. Retrying would not help.
		w.log.Error("error callbacks cannot be built; skipped", "workflow", plan.Workflow, "task", taskID, "err", err)
		return nil
	}
	return w.client.runCallbacks(ctx, cbs, w.defaultsFor)
}

// enqueueCallback runs a callback signature once under a fixed id.
func (w *Worker) enqueueCallback(ctx context.Context, sig *Signature, id string, input json.RawMessage) error {
	args, err := sig.Input(input)
	if err != nil {
		return err
	}
	return w.client.enqueueFixed(ctx, sig, id, args, w.defaultsFor)
}

// compensate submits, once, a chain of the compensations of every step that
// succeeded, latest first. Each receives its step's result like a chained
// step (unless immutable) and runs as a durable task with its own retries.
func (w *Worker) compensate(ctx context.Context, plan *chain.Plan) error {
	var nodes []int
	for _, n := range plan.Tasks() {
		if plan.Nodes[n].Sig.Compensate != nil {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = plan.Nodes[n].TaskID
	}
	recs, err := w.be.GetMany(ctx, ids)
	if err != nil {
		return err
	}
	var steps []Canvas
	for i := len(nodes) - 1; i >= 0; i-- {
		if recs[i] == nil || recs[i].State != Success {
			continue
		}
		comp := *plan.Nodes[nodes[i]].Sig.Compensate
		args, err := comp.Input(recs[i].Result)
		if err != nil {
			return err
		}
		comp.Args, comp.Immutable = args, true
		steps = append(steps, &comp)
	}
	if len(steps) == 0 {
		return nil
	}
	compID := plan.Workflow + "_compensation"
	if _, err := w.client.Submit(ctx, Chain(steps...), &SubmitOpts{ID: compID}); err != nil {
		return err
	}
	return w.rdb.HSet(ctx, backend.WorkflowKey(plan.Workflow), "compensation", compID).Err()
}

// cancelled reports whether the task's workflow was cancelled.
func (w *Worker) cancelled(m *message) bool {
	if m.Workflow == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	v, err := w.rdb.HGet(ctx, backend.WorkflowKey(m.Workflow), "cancelled").Result()
	return err == nil && v == "1"
}
