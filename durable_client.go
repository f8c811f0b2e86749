package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton/backend"
)

// The client's half of durable runs: signals, the operation list, cancel.

// Signal delivers event name with payload (any JSON value; nil for none) to
// durable run runID. A run parked in WaitEvent on that name resumes with
// it. Otherwise, if the run's task declares the name (TaskOptions.Events),
// the event is kept until the run waits for it. Errors: ErrNotFound for an
// unknown run, ErrRunFinished for a run that has ended, ErrUnknownEvent for
// a name the run neither declares nor waits for, ErrEventPending when an
// event of that name is already kept and not consumed. A Signal repeated
// with the same payload after an error (was it delivered?) is harmless.
func (c *Client) Signal(ctx context.Context, runID, name string, payload any) error {
	if err := validEventName(name); err != nil {
		return err
	}
	raw, err := toRaw(payload)
	if err != nil {
		return fmt.Errorf("baton: signal %s to %s: %w", name, runID, err)
	}
	if raw == nil {
		raw = json.RawMessage("null")
	}
	rep, err := c.be.Signal(ctx, runID, name, raw, nil, false)
	if err != nil {
		return c.redisErr("signal "+runID, err)
	}
	if rep.Code == backend.SignalNotStarted {
		if rep, err = c.signalUnstarted(ctx, runID, name, raw); err != nil {
			return err
		}
	}
	if rep.Gen > 0 {
		if err := c.resumeStored(ctx, rep.Msg, rep.Gen); err != nil {
			return c.redisErr("signal "+runID, err)
		}
		// The wait's timer only mattered until the resume was enqueued.
		if m, err := decodeMessage(rep.Msg); err == nil {
			_ = asynq.NewInspectorFromRedisClient(c.rdb).DeleteTask(m.Queue, resumeID(runID, rep.Gen, true))
		}
	}
	switch rep.Code {
	case backend.SignalDelivered, backend.SignalBuffered:
		return nil
	case backend.SignalFinished:
		return fmt.Errorf("%w: %s ended %s; event %q not delivered", ErrRunFinished, runID, rep.State, name)
	case backend.SignalNotDurable:
		return fmt.Errorf("%w: %s is a %s task, not a durable run: only durable runs take events", ErrNotFound, runID, rep.State)
	case backend.SignalPending:
		return fmt.Errorf("%w: run %s has an undelivered %q event already; it is consumed by the run's next WaitEvent(%q)", ErrEventPending, runID, name, name)
	}
	return fmt.Errorf("%w: run %s does not wait for %q and its task does not declare it (TaskOptions.Events): check the name", ErrUnknownEvent, runID, name)
}

// signalUnstarted signals a run that has not started: its record or queue
// entry says whether it exists and which kind it is, and the events this
// client knows for that kind decide (any name when the kind is unknown to
// it: the run's declaration is only known once it starts).
func (c *Client) signalUnstarted(ctx context.Context, runID, name string, raw []byte) (backend.SignalReply, error) {
	r, err := c.Get(ctx, runID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return backend.SignalReply{}, fmt.Errorf("%w: durable run %s (never enqueued, or expired)", ErrNotFound, runID)
		}
		return backend.SignalReply{}, err
	}
	if r.State.Terminal() {
		return backend.SignalReply{Code: backend.SignalFinished, State: r.State}, nil
	}
	c.mu.RLock()
	def, known := c.defs[r.Kind]
	c.mu.RUnlock()
	if known && !def.durable {
		return backend.SignalReply{Code: backend.SignalNotDurable, State: r.State}, nil
	}
	if known && len(def.Events) == 0 {
		return backend.SignalReply{Code: backend.SignalUnknown}, nil
	}
	rep, err := c.be.Signal(ctx, runID, name, raw, def.Events, !known)
	if err != nil {
		return rep, c.redisErr("signal "+runID, err)
	}
	return rep, nil
}

// Operations lists the recorded operations of durable run runID in order:
// type, name, state, times, attempts, children, and result or error.
// ErrNotFound when the run never started (or is not durable, or expired).
func (c *Client) Operations(ctx context.Context, runID string) ([]Operation, error) {
	l, state, err := c.be.Run(ctx, runID)
	if err != nil {
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return nil, c.redisErr("operations of "+runID, err)
	}
	seqs := make([]int, 0, len(l.Ops))
	for s := range l.Ops {
		seqs = append(seqs, s)
	}
	sort.Ints(seqs)
	out := make([]Operation, 0, len(seqs))
	for _, s := range seqs {
		out = append(out, describeOp(runID, l, state, l.Ops[s]))
	}
	return out, nil
}

func describeOp(runID string, l *backend.RunLog, state State, rec *backend.OpRecord) Operation {
	h := parseHeader(rec.Header)
	op := Operation{Seq: rec.Seq, Type: h.T, Name: h.N, Started: rec.Started, Finished: rec.Finished, Attempts: rec.Attempts}
	if h.U > 0 {
		op.Until = time.UnixMilli(h.U)
	}
	waitingHere := state == Waiting && l.WaitOp == rec.Seq
	switch {
	case rec.Status == backend.OpOK:
		op.State = "done"
	case rec.Status == backend.OpErr:
		op.State = "failed"
	case waitingHere && l.WaitFor == backend.WaitRetry:
		op.State, op.Until = "retrying", l.Until
	case waitingHere:
		op.State = "waiting"
	default:
		op.State = "running"
	}
	if rec.Status == "" && rec.LastError != "" {
		op.Error = rec.LastError
	}
	switch h.T {
	case opStep, opEvent:
		switch rec.Status {
		case backend.OpOK:
			op.Result = json.RawMessage(rec.Result)
		case backend.OpErr:
			op.Error = rec.Error
			if h.T == opEvent {
				op.Error = (&eventTimeout{name: h.N, until: op.Until}).Error()
			}
		}
	case opCall, opMap, opCanvas:
		base := runID + ".c" + strconv.Itoa(rec.Seq)
		for i := range h.C {
			switch h.T {
			case opMap:
				op.Children = append(op.Children, base+"."+strconv.Itoa(i))
			case opCanvas:
				op.Children = append(op.Children, runID+".w"+strconv.Itoa(rec.Seq))
			default:
				op.Children = append(op.Children, base)
			}
		}
		describeChildren(&op, h, rec)
	}
	return op
}

// describeChildren sets the result and error of a call, map or canvas from
// its children's outcomes: a call's result or error; for a map the list of
// results (null for a failed item) and which failed.
func describeChildren(op *Operation, h opHeader, rec *backend.OpRecord) {
	if h.T != opMap {
		if o, ok := rec.Children[0]; ok {
			if o.State == Success {
				op.Result = json.RawMessage(o.Payload)
			} else {
				op.Error = fmt.Sprintf("%s %s: %s", op.Children[0], o.State, o.Payload)
			}
		}
		return
	}
	if rec.Status == "" {
		return
	}
	list := make([]json.RawMessage, h.C)
	var failed []string
	for i := range list {
		o := rec.Children[i]
		list[i] = json.RawMessage("null")
		if o.State == Success && o.Payload != "" {
			list[i] = json.RawMessage(o.Payload)
		} else if o.State != Success {
			failed = append(failed, fmt.Sprintf("[%d] %s: %s", i, o.State, o.Payload))
		}
	}
	op.Result, _ = json.Marshal(list)
	if len(failed) > 0 {
		op.Error = fmt.Sprintf("%d of %d failed: %s", len(failed), h.C, strings.Join(failed, "; "))
	}
}

// cancelDurable cancels id when it is a durable run, started or not, and
// reports whether it was one. A run that has not started is recorded
// REVOKED, so it never does (when this client knows its kind is durable).
func (c *Client) cancelDurable(ctx context.Context, id string) (bool, error) {
	if ok, err := c.cancelIfRun(ctx, id); ok || err != nil {
		return ok, err
	}
	r, err := c.Get(ctx, id)
	if err != nil || r.State.Terminal() {
		return false, nil
	}
	c.mu.RLock()
	def, known := c.defs[r.Kind]
	c.mu.RUnlock()
	if !known || !def.durable {
		return false, nil
	}
	// (Should it have started meanwhile, its log is cancelled all the same.)
	return true, c.cancelRun(ctx, id, &backend.Meta{ID: id, Kind: r.Kind, Queue: r.Queue, EnqueuedAt: r.EnqueuedAt})
}

// cancelIfRun cancels id when it is a durable run that has started, and
// reports whether it was one.
func (c *Client) cancelIfRun(ctx context.Context, id string) (bool, error) {
	ok, err := c.be.IsRun(ctx, id)
	if err != nil {
		return false, c.redisErr("cancel "+id, err)
	}
	if !ok {
		return false, nil
	}
	return true, c.cancelRun(ctx, id, nil)
}

// cancelRunsOf cancels the children and waits of the durable runs among a
// cancelled workflow's steps (their records are REVOKED already).
func (c *Client) cancelRunsOf(ctx context.Context, recs []*Record) error {
	for _, r := range recs {
		if r == nil || (r.State.Terminal() && r.State != Revoked) {
			continue
		}
		if _, err := c.cancelIfRun(ctx, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// cancelRun is the cancel of durable run id, all of it: the run is recorded
// REVOKED (cancel recorded as data, as a workflow's is; meta fills in the
// record of a run not started yet), its unfinished children are revoked
// (child runs and canvases cancelled in turn), its pending resumes are
// deleted from the queue (best effort: they would be dropped anyway) and a
// running attempt has its context cancelled. Repeating it finishes a cancel
// that was cut short.
func (c *Client) cancelRun(ctx context.Context, id string, meta *backend.Meta) error {
	reason := "cancelled: durable run " + id + " cancelled"
	rep, err := c.be.CancelRun(ctx, id, reason, meta)
	if err != nil {
		return c.redisErr("cancel "+id, err)
	}
	var tasks []string
	for _, ch := range rep.Children {
		if strings.HasPrefix(ch, id+".w") {
			if err := c.Cancel(ctx, ch); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			continue
		}
		tasks = append(tasks, ch)
	}
	if len(tasks) > 0 {
		recs, err := c.be.GetMany(ctx, tasks)
		if err != nil {
			return c.redisErr("cancel "+id, err)
		}
		outs := make([]backend.Outcome, len(tasks))
		for i, t := range tasks {
			outs[i] = backend.Outcome{ID: t, State: Revoked, Error: reason, Reason: backend.ReasonCancelled}
		}
		if _, err := c.be.FinishInOrder(ctx, outs...); err != nil {
			return c.redisErr("cancel "+id, err)
		}
		for i, t := range tasks {
			if recs[i] != nil && recs[i].State == Started {
				_ = c.cancelRunning(ctx, t)
			}
			if _, err := c.cancelIfRun(ctx, t); err != nil { // a child run: its children too
				return err
			}
		}
	}
	if m, err := decodeMessage(rep.Msg); err == nil {
		insp := asynq.NewInspectorFromRedisClient(c.rdb)
		for _, timer := range []bool{true, false} {
			_ = insp.DeleteTask(m.Queue, resumeID(id, rep.Gen, timer))
		}
	}
	if rep.Before == Started && rep.Delivery != "" {
		_ = c.cancelRunning(ctx, rep.Delivery)
	}
	return nil
}
