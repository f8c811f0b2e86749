package batontest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// drainPoll is how often a drain looks at the queues.
const drainPoll = 5 * time.Millisecond

// Drain runs the Env's worker until nothing is left to do: no task pending
// or running on the queues it consumes, and none scheduled (Countdown, ETA)
// or waiting to retry whose time has come; with Options.FastForward, none
// scheduled or waiting at all, whatever its time. Tasks that fail are an
// outcome, not an error: read them with RequireRecord or a handle.
//
// It returns an error listing the tasks still to run when ctx ends first;
// a ctx without a deadline is bounded by Options.DrainTimeout. The worker
// stops when Drain returns. A task whose kind is not registered on the Env
// is failed by the worker ("unknown task kind"), as in production.
func (e *Env) Drain(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("batontest: drain: %w", errClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.opts.DrainTimeout)
		defer cancel()
	}
	d := &drainer{e: e, queues: map[string]bool{}, fixed: len(e.opts.Worker.Queues) > 0}
	if d.fixed {
		for q := range e.opts.Worker.Queues {
			d.queues[q] = true
		}
	}
	defer d.stopWorker()
	return d.run(ctx)
}

// DrainUntilIdle is Drain bounded by Options.DrainTimeout; it stops the
// test when the queues do not empty in time, with what is left on them.
func (e *Env) DrainUntilIdle(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), e.opts.DrainTimeout)
	defer cancel()
	if err := e.Drain(ctx); err != nil {
		tb.Fatal(err)
	}
}

// FastForward makes every task scheduled for later or waiting to retry,
// on every queue, due now (asynq's Inspector RunAllScheduledTasks and
// RunAllRetryTasks); the next drain runs them. It returns how many it moved.
func (e *Env) FastForward(ctx context.Context) (int, error) {
	queues, err := e.insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("batontest: fast-forward: %w", err)
	}
	moved := 0
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return moved, fmt.Errorf("batontest: fast-forward: %w", err)
		}
		n, err := e.runAll(q)
		moved += n
		if err != nil {
			return moved, fmt.Errorf("batontest: fast-forward queue %s: %w", q, err)
		}
	}
	return moved, nil
}

func (e *Env) runAll(q string) (int, error) {
	n, err := e.insp.RunAllScheduledTasks(q)
	if err != nil {
		return n, err
	}
	m, err := e.insp.RunAllRetryTasks(q)
	return n + m, err
}

// RunCanvas submits a canvas, drains the Env and returns the workflow with
// its final record. The error is the workflow's (a *baton.TaskError naming
// the step that failed, as Workflow.Wait returns it), or the drain's.
func (e *Env) RunCanvas(ctx context.Context, cv baton.Canvas) (*baton.Workflow, *baton.Record, error) {
	wf, err := e.client.Submit(ctx, cv, nil)
	if err != nil {
		return wf, nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.opts.DrainTimeout)
		defer cancel()
	}
	if err := e.Drain(ctx); err != nil {
		return wf, nil, err
	}
	rec, err := wf.Record(ctx)
	if err != nil {
		return wf, nil, err
	}
	if !rec.State.Terminal() {
		return wf, rec, fmt.Errorf("batontest: workflow %s is %s after the drain: a step waits for its time (Countdown, ETA or a retry delay); Options.FastForward runs it at once", wf.ID, rec.State)
	}
	rec, err = wf.Wait(ctx)
	return wf, rec, err
}

// drainer is one drain: the worker it started and the queues it consumes.
type drainer struct {
	e      *Env
	w      *baton.Worker
	queues map[string]bool
	fixed  bool // Options.Worker.Queues: consume those and no other
}

// queueState is what one look at a queue saw.
type queueState struct {
	busy      bool // a task pending, running, or due
	processed int  // asynq's count of finished attempts
}

func (d *drainer) run(ctx context.Context) error {
	var last map[string]queueState // the previous look, when it saw no work
	for {
		states, err := d.look()
		if err != nil {
			return fmt.Errorf("batontest: drain: read the queues: %w", err)
		}
		if err := d.ensureWorker(states); err != nil {
			return err
		}
		idle := !slices.ContainsFunc(slices.Collect(maps.Values(states)), func(s queueState) bool { return s.busy })
		// Two looks in a row that see no work, with no attempt finished in
		// between: a task that finished between the reads of two queues
		// may have handed its next step to one already read.
		if idle && last != nil && maps.Equal(last, states) {
			return nil
		}
		last = nil
		if idle {
			last = states
		}
		select {
		case <-ctx.Done():
			return d.notIdle(ctx)
		case <-time.After(drainPoll):
		}
	}
}

// look reads every queue the drain consumes (and, unless its queues are
// fixed, every queue asynq knows), moving scheduled tasks and retries to
// pending first when fast-forwarding.
func (d *drainer) look() (map[string]queueState, error) {
	known, err := d.e.insp.Queues()
	if err != nil {
		return nil, err
	}
	names := known
	if d.fixed {
		names = slices.DeleteFunc(known, func(q string) bool { return !d.queues[q] })
	}
	states := map[string]queueState{}
	for q := range d.queues {
		states[q] = queueState{} // consumed, but asynq has no task of it yet
	}
	now := time.Now()
	for _, q := range names {
		info, err := d.e.insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		s := queueState{processed: info.ProcessedTotal, busy: info.Pending+info.Active > 0}
		switch {
		case d.e.opts.FastForward && info.Scheduled+info.Retry > 0:
			if _, err := d.e.runAll(q); err != nil {
				return nil, fmt.Errorf("fast-forward queue %s: %w", q, err)
			}
			s.busy = true
		case !s.busy:
			if s.busy, err = d.due(q, info, now); err != nil {
				return nil, err
			}
		}
		states[q] = s
	}
	return states, nil
}

// due reports whether a scheduled task or a retry of q has come due.
func (d *drainer) due(q string, info *asynq.QueueInfo, now time.Time) (bool, error) {
	lists := []struct {
		n    int
		list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}{{info.Scheduled, d.e.insp.ListScheduledTasks}, {info.Retry, d.e.insp.ListRetryTasks}}
	for _, l := range lists {
		if l.n == 0 {
			continue
		}
		first, err := l.list(q, asynq.PageSize(1)) // the earliest
		if err != nil {
			return false, fmt.Errorf("queue %s: %w", q, err)
		}
		if len(first) > 0 && !first[0].NextProcessAt.After(now) {
			return true, nil
		}
	}
	return false, nil
}

// ensureWorker starts the worker when there is work and none runs, and
// starts it again with more queues when work lands on a queue it does not
// consume (unless the queues are fixed).
func (d *drainer) ensureWorker(states map[string]queueState) error {
	grow := false
	work := false
	for q, s := range states {
		if !s.busy {
			continue
		}
		work = true
		if !d.queues[q] && !d.fixed {
			d.queues[q] = true
			grow = true
		}
	}
	if (d.w != nil && !grow) || (d.w == nil && !work) {
		return nil
	}
	d.stopWorker()
	if !d.fixed {
		d.queues[baton.QueueDefault] = true
		for _, def := range d.e.defs {
			d.queues[def.Options().Queue] = true
		}
	}
	o := *d.e.opts.Worker
	if !d.fixed {
		o.Queues = map[string]int{}
		for q := range d.queues {
			o.Queues[q] = 1
		}
	}
	w, err := baton.NewWorker(d.e.rdb, &o)
	if err != nil {
		return fmt.Errorf("batontest: drain: %w", err)
	}
	if err := w.Register(d.e.defs...); err != nil {
		w.Shutdown()
		return fmt.Errorf("batontest: drain: %w", err)
	}
	if err := w.Start(); err != nil {
		w.Shutdown()
		return fmt.Errorf("batontest: drain: %w", err)
	}
	d.w = w
	return nil
}

func (d *drainer) stopWorker() {
	if d.w != nil {
		d.w.Shutdown()
		d.w = nil
	}
}

// notIdle is the error of a drain that ran out of time: what is left.
func (d *drainer) notIdle(ctx context.Context) error {
	names := slices.Sorted(maps.Keys(d.queues))
	left, err := d.e.queued(names, pendingStates)
	if err != nil {
		return fmt.Errorf("batontest: drain: %w (and the queues could not be listed: %v)", ctx.Err(), err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "batontest: drain: %v with %d task(s) left on the queues the worker consumes (%s):", ctx.Err(), len(left), strings.Join(names, ", "))
	now := time.Now()
	for _, t := range left {
		b.WriteString("\n  ")
		b.WriteString(t.describe(now))
	}
	if !d.e.opts.FastForward && slices.ContainsFunc(left, func(t QueuedTask) bool { return t.State == "scheduled" || t.State == "retry" }) {
		b.WriteString("\nscheduled tasks and retries run at their time; Options.FastForward runs them at once")
	}
	return errors.New(b.String())
}
