package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/batonhq/baton/backend"
)

// The operations of a durable run (see the protocol in durable.go). Each
// takes the run's next sequence number, returns the recorded outcome when
// there is one, and otherwise performs itself and records its outcome.

// Operation types, as recorded in headers and shown by Client.Operations.
const (
	opStep   = "step"
	opCall   = "call"
	opMap    = "map"
	opCanvas = "canvas"
	opSleep  = "sleep"
	opEvent  = "event"
)

// opHeader is what an operation records about itself when it starts: what
// the determinism check compares, and its fixed parameters.
type opHeader struct {
	T string `json:"t"`           // type
	N string `json:"n"`           // name: the step's, the child kind, the event's
	C int    `json:"c,omitempty"` // children (call, map, canvas)
	U int64  `json:"u,omitempty"` // deadline (sleep, event), unix ms
}

func (h opHeader) encode() []byte {
	b, _ := json.Marshal(h) // strings and ints only
	return b
}

func (h opHeader) String() string {
	switch h.T {
	case opMap:
		return fmt.Sprintf("map %q of %d", h.N, h.C)
	case opSleep:
		return "sleep"
	}
	return fmt.Sprintf("%s %q", h.T, h.N)
}

func parseHeader(raw []byte) opHeader {
	var h opHeader
	_ = json.Unmarshal(raw, &h)
	return h
}

// enter begins operation want: it takes the next sequence number and
// returns the operation recorded there (nil when none). A recorded
// operation of another type or name fails the run for good; so does a new
// operation over the run's limits.
func (dc *Durable) enter(want opHeader) (int, *backend.OpRecord) {
	if dc.busy {
		panic(fmt.Sprintf("baton: durable run %s: %s called while another operation is in progress (from inside a Step, or from another goroutine): call operations one at a time from the handler's goroutine; Map runs tasks in parallel", dc.RunID(), want))
	}
	r := dc.run
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed { // an abandoned handler (timed out, shut down) stops here
		runtime.Goexit()
	}
	dc.busy = true
	seq := dc.next
	dc.next++
	if rec := r.log.Ops[seq]; rec != nil {
		got := parseHeader(rec.Header)
		if got.T != want.T || got.N != want.N || (want.T == opMap && got.C != want.C) {
			r.fail(fmt.Errorf("non-determinism at operation %d: recorded %s, now %s: the code changed under a running task, or it branches on something not recorded (wrap reads of the clock, randomness and I/O in a Step)", seq, got, want))
		}
		return seq, rec
	}
	if seq >= r.maxOps {
		r.fail(fmt.Errorf("durable run %s: operation %d (%s) is over the limit of %d operations per run (TaskOptions.MaxOperations): raise it, or split the work into child runs with Call", dc.RunID(), seq, want, r.maxOps))
	}
	r.checkBytes(0)
	return seq, nil
}

func (dc *Durable) leave() { dc.busy = false }

// checkBytes fails the run when recording n more bytes would put it over
// its limit.
func (r *durableRun) checkBytes(n int) {
	if r.bytes+n > r.maxBytes {
		r.fail(fmt.Errorf("durable run %s: %d bytes of results, events and checkpoints recorded, over the limit of %d (TaskOptions.MaxRecordedBytes): return references to large data (a URL or key) instead of the data", r.m.ID, r.bytes+n, r.maxBytes))
	}
}

// fail ends the handler goroutine; the worker fails the run for good.
func (r *durableRun) fail(err error) {
	r.mu.Lock()
	r.end.abort = err
	r.mu.Unlock()
	runtime.Goexit()
}

// exit ends the handler goroutine after a protocol call failed: the run was
// taken over or ended (nothing more is recorded), or Redis failed (the
// delivery is retried and replays; protocol I/O runs on a context the
// attempt's end does not cancel, so any other error is Redis's).
func (r *durableRun) exit(err error) {
	r.mu.Lock()
	if errors.Is(err, backend.ErrRunGone) || errors.Is(err, backend.ErrRunLost) {
		r.end.lost = err
	} else {
		r.end.infra = err
	}
	r.mu.Unlock()
	runtime.Goexit()
}

// stop ends the handler goroutine when the run was taken over or ended.
func (r *durableRun) stop(err error) { r.exit(err) }

// interrupt ends the handler goroutine when the attempt's context ended
// during an operation: nothing is recorded for it.
func (r *durableRun) interrupt(err error) {
	r.mu.Lock()
	r.end.stopped = err
	r.mu.Unlock()
	runtime.Goexit()
}

// openLocked locks r unless the delivery is over, in which case the
// (abandoned) handler goroutine ends.
func (r *durableRun) openLocked() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		runtime.Goexit()
	}
}

// record writes the outcome of an operation that completed in the handler.
// It returns the stored outcome when another delivery recorded one first.
func (dc *Durable) record(seq int, h opHeader, ok bool, value []byte, started time.Time) *backend.OpRecord {
	r := dc.run
	r.checkBytes(len(value))
	r.openLocked()
	got, existed, err := r.w.be.RecordOp(r.rctx, r.fence, seq, h.encode(), ok, value, started)
	r.mu.Unlock()
	if err != nil {
		r.exit(err)
	}
	if existed {
		return got
	}
	r.bytes += len(value)
	delete(dc.ckpt, "s"+strconv.Itoa(seq))
	return nil
}

// park makes the run wait for p. It returns only when what p waits for is
// there; otherwise the run is parked and the handler goroutine ends.
func (dc *Durable) park(p backend.ParkRequest) backend.ParkReply {
	r := dc.run
	r.openLocked()
	rep, err := r.w.be.Park(r.rctx, r.fence, p)
	if err == nil && !rep.Ready {
		r.end.parked, r.end.gen, r.end.waitFor = true, rep.Gen, p.Kind
		if p.Kind != backend.WaitChildren {
			r.end.wake = p.Until
		}
		r.mu.Unlock()
		runtime.Goexit()
	}
	r.mu.Unlock()
	if err != nil {
		r.exit(err)
	}
	for _, c := range rep.Children {
		r.bytes += len(c.Payload)
	}
	r.bytes += len(rep.Result) + len(rep.Error)
	return rep
}

// RunStep runs fn once for the run (a step) and records its result; on a re-run of the
// handler the recorded result (or error) is returned and fn is not called.
// A failing fn is retried per opts (3 retries, backoff from 1s, by default;
// Permanent errors are not retried), the run parked between attempts, and
// without running any earlier operation again. Its final error is recorded
// as a *StepError. If the worker dies while fn runs, fn runs again: make its
// side effects idempotent (the step is the only thing a re-run repeats).
// The name identifies the step in the log and the determinism check.
func RunStep[T any](dc *Durable, name string, fn func(ctx context.Context) (T, error), opts *StepOpts) (T, error) {
	var zero T
	if name == "" {
		return zero, errors.New("baton: RunStep needs a name (it identifies the step in the run's log)")
	}
	h := opHeader{T: opStep, N: name}
	seq, rec := dc.enter(h)
	defer dc.leave()
	attempts := 0
	if rec != nil {
		if rec.Status != "" {
			return stepOutcome[T](name, rec.Status, rec.Result, rec.Error, rec.Attempts+1)
		}
		attempts = rec.Attempts
	}
	maxRetries, policy := opts.resolve()
	for {
		started := time.Now()
		dc.step = seq
		v, err := fn(dc.ctx)
		dc.step = -1
		if err == nil {
			raw, merr := json.Marshal(v)
			if merr == nil {
				if got := dc.record(seq, h, true, raw, started); got != nil {
					return stepOutcome[T](name, got.Status, got.Result, got.Error, attempts+1)
				}
				return v, nil
			}
			err = Permanent(fmt.Errorf("encode result %T: %w", v, merr))
		}
		if cerr := dc.ctx.Err(); cerr != nil {
			dc.run.interrupt(cerr) // not the step's failure: shutdown, cancel or timeout
		}
		attempts++
		msg := err.Error()
		if IsPermanent(err) || attempts > maxRetries {
			if got := dc.record(seq, h, false, []byte(msg), started); got != nil {
				return stepOutcome[T](name, got.Status, got.Result, got.Error, attempts)
			}
			return zero, &StepError{Name: name, Message: msg, Attempts: attempts}
		}
		delay, ok := RetryAfterDelay(err)
		if !ok {
			delay = policy.DelayFor(attempts - 1)
		}
		at := time.Now().Add(delay)
		dc.park(backend.ParkRequest{Seq: seq, Kind: backend.WaitRetry, Until: at, Header: h.encode(),
			Waiting: fmt.Sprintf("retry %d of step %q at %s", attempts, name, stamp(at)),
			Fields:  backend.AttemptFields(seq, attempts, msg)})
		// READY: the retry is due already; run it now.
	}
}

func stepOutcome[T any](name, status string, result []byte, errText string, attempts int) (T, error) {
	var v T
	if status != backend.OpOK {
		return v, &StepError{Name: name, Message: errText, Attempts: attempts}
	}
	if err := json.Unmarshal(result, &v); err != nil {
		return v, Permanent(fmt.Errorf("baton: step %q: recorded result does not decode into %T: %w", name, v, err))
	}
	return v, nil
}

// Call runs task t as a child of the run and waits for its result, without
// holding a worker slot or a goroutine meanwhile: the run is parked and
// resumed when the child ends. The child's id is fixed ("<run>.c<n>"), so a
// re-run never starts it twice; its result (or failure, a *TaskError) is
// recorded and returned again on a re-run. t may be any task, a durable one
// included. opts override t's defaults except the id.
func Call[A, R any](dc *Durable, t *Task[A, R], args A, opts *EnqueueOpts) (R, error) {
	var zero R
	raw, err := json.Marshal(args)
	if err != nil {
		return zero, fmt.Errorf("baton: call %s: encode args %T: %w", t.kind, args, err)
	}
	ids, outs, err := dc.callTasks(opCall, t.kind, t.opts, []json.RawMessage{raw}, opts)
	if err != nil {
		return zero, err
	}
	return childResult[R](ids[0], t.kind, outs[0])
}

// Map runs t once per item of args, all at once, as children of the run and
// waits for all of them (parked meanwhile, as Call). The results are in the
// order of args, each with its value or its error (a *TaskError): one
// failed item does not fail the others. Map's own error is for the call as
// a whole (args that cannot be encoded, invalid opts).
func Map[A, R any](dc *Durable, t *Task[A, R], args []A, opts *EnqueueOpts) ([]Result[R], error) {
	raws := make([]json.RawMessage, len(args))
	for i, a := range args {
		raw, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("baton: map %s: encode args[%d] %T: %w", t.kind, i, a, err)
		}
		raws[i] = raw
	}
	ids, outs, err := dc.callTasks(opMap, t.kind, t.opts, raws, opts)
	if err != nil {
		return nil, err
	}
	res := make([]Result[R], len(outs))
	for i, o := range outs {
		res[i].Value, res[i].Err = childResult[R](ids[i], t.kind, o)
	}
	return res, nil
}

// callTasks is Call and Map: it starts the children (once) and waits for
// them, returning their ids and outcomes in order.
func (dc *Durable) callTasks(typ, kind string, def TaskOptions, args []json.RawMessage, opts *EnqueueOpts) ([]string, []backend.ChildOutcome, error) {
	if opts != nil && opts.ID != "" {
		return nil, nil, fmt.Errorf("%w: %s %s: EnqueueOpts.ID is assigned by the run (<run>.c<n>); leave it empty", ErrInvalidOptions, typ, kind)
	}
	r := dc.run
	c := r.w.client
	seq := dc.next
	base := r.m.ID + ".c" + strconv.Itoa(seq)
	now := time.Now()
	msgs := make([]*message, len(args))
	ids := make([]string, len(args))
	children := make([]backend.Child, len(args))
	var last time.Time
	for i, a := range args {
		ids[i] = base
		if typ == opMap {
			ids[i] = base + "." + strconv.Itoa(i)
		}
		var eo EnqueueOpts
		if opts != nil {
			eo = *opts
		}
		eo.ID = ids[i]
		m, err := c.buildMessage(kind, a, def, &eo, now)
		if err != nil {
			return nil, nil, err
		}
		m.W = &waiterRef{Run: r.m.ID, Seq: seq, Index: i}
		if _, err := c.encode(m); err != nil {
			return nil, nil, err
		}
		msgs[i], children[i] = m, backend.Child{ID: ids[i], Task: true}
		if at := time.UnixMilli(m.RunAtMS); m.RunAtMS > 0 && at.After(last) {
			last = at
		}
	}
	h := opHeader{T: typ, N: kind, C: len(args)}
	seq, rec := dc.enter(h)
	defer dc.leave()
	if rec != nil && rec.Status != "" {
		return ids, outcomes(rec.Children, len(ids)), nil
	}
	r.openLocked()
	queue := QueueDefault
	if len(msgs) > 0 {
		queue = msgs[0].Queue
	}
	created := false
	var err error
	if rec == nil {
		created, err = r.w.be.StartCall(r.rctx, r.fence, seq, h.encode(), kind, queue, children, last)
	}
	r.mu.Unlock()
	if err != nil {
		r.exit(err)
	}
	if !created { // a re-run: enqueue the children that did not start
		if msgs, err = r.w.client.undispatchedMsgs(r.rctx, msgs); err != nil {
			r.exit(err)
		}
	}
	if err := c.sendAll(r.rctx, msgs); err != nil {
		r.exit(err)
	}
	waiting := "child " + ids[0]
	if len(ids) != 1 {
		waiting = fmt.Sprintf("%d children (%s ...)", len(ids), base)
	}
	rep := dc.park(backend.ParkRequest{Seq: seq, Kind: backend.WaitChildren, Waiting: waiting, Last: last, Children: len(ids)})
	return ids, rep.Children, nil
}

// undispatchedMsgs keeps the messages whose task record is missing or
// PENDING (not started): those a crash may have kept from being enqueued.
func (c *Client) undispatchedMsgs(ctx context.Context, msgs []*message) ([]*message, error) {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	recs, err := c.be.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []*message
	for i, m := range msgs {
		if recs[i] == nil || recs[i].State == Pending {
			out = append(out, m)
		}
	}
	return out, nil
}

func outcomes(m map[int]backend.ChildOutcome, n int) []backend.ChildOutcome {
	out := make([]backend.ChildOutcome, n)
	for i := range out {
		out[i] = m[i]
	}
	return out
}

// childResult decodes a child's outcome: its result, or its *TaskError.
func childResult[R any](id, kind string, o backend.ChildOutcome) (R, error) {
	var v R
	if o.State != Success {
		return v, childError(id, kind, o)
	}
	if o.Payload == "" {
		return v, nil
	}
	if err := json.Unmarshal([]byte(o.Payload), &v); err != nil {
		return v, Permanent(fmt.Errorf("baton: result of %s (%s) does not decode into %T: %w", id, kind, v, err))
	}
	return v, nil
}

func childError(id, kind string, o backend.ChildOutcome) *TaskError {
	te := &TaskError{ID: id, Kind: kind, State: o.State, Message: o.Payload, cause: errMemoized}
	if o.State == Revoked {
		te.cause = errors.Join(ErrRevoked, errMemoized)
		if o.Reason == backend.ReasonCancelled {
			te.cause = errors.Join(ErrRevoked, ErrCancelled, errMemoized)
		}
	}
	return te
}

// CallCanvas runs a canvas (chain, group, chord, or one signature) as a
// workflow of the run, with the fixed id "<run>.w<n>", and waits for its
// end, parked meanwhile. Its final result is decoded into out (a pointer, or
// nil); its failure is returned as a *TaskError naming the workflow. name
// identifies the operation in the run's log.
func CallCanvas(dc *Durable, name string, cv Canvas, out any) error {
	if name == "" {
		return errors.New("baton: CallCanvas needs a name (it identifies the operation in the run's log)")
	}
	r := dc.run
	seq := dc.next
	wfID := r.m.ID + ".w" + strconv.Itoa(seq)
	note, err := newAwaiter(awaitDurable, waiterRef{Run: r.m.ID, Seq: seq})
	if err != nil {
		return fmt.Errorf("baton: canvas %q: %w", name, err)
	}
	h := opHeader{T: opCanvas, N: name, C: 1}
	seq, rec := dc.enter(h)
	defer dc.leave()
	var o backend.ChildOutcome
	if rec != nil && rec.Status != "" {
		o = rec.Children[0]
	} else {
		if rec == nil {
			r.openLocked()
			_, err := r.w.be.StartCall(r.rctx, r.fence, seq, h.encode(), opCanvas, "", []backend.Child{{ID: wfID}}, time.Time{})
			r.mu.Unlock()
			if err != nil {
				r.exit(err)
			}
		}
		wf, err := r.w.client.Submit(r.rctx, cv, &SubmitOpts{ID: wfID, awaiter: note})
		switch {
		case errors.Is(err, ErrInvalidCanvas) || errors.Is(err, ErrInvalidOptions) || errors.Is(err, ErrPayloadTooLarge):
			// It will never run: it ends here, failed, recorded like any end.
			end := workflowEnd{ID: wfID, State: Failure, Error: err.Error()}
			if err := r.w.workflowEndedFor(r.rctx, r.m.ID, seq, end); err != nil {
				r.exit(err)
			}
		case err != nil:
			r.exit(err)
		case wf.end != nil: // ended as it started (an empty group)
			if err := r.w.workflowEndedFor(r.rctx, r.m.ID, seq, *wf.end); err != nil {
				r.exit(err)
			}
		}
		rep := dc.park(backend.ParkRequest{Seq: seq, Kind: backend.WaitChildren, Waiting: "workflow " + wfID, Children: 1})
		o = rep.Children[0]
	}
	if o.State != Success {
		return childError(wfID, opCanvas, o)
	}
	if out == nil || o.Payload == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(o.Payload), out); err != nil {
		return Permanent(fmt.Errorf("baton: result of workflow %s does not decode into %T: %w", wfID, out, err))
	}
	return nil
}

// Sleep parks the run for d: no worker slot and no goroutine are held, and
// a worker crash does not restart the wait (the deadline is recorded, never
// recomputed). It resumes within about a second of the deadline.
func Sleep(dc *Durable, d time.Duration) error { return SleepUntil(dc, time.Now().Add(d)) }

// SleepUntil parks the run until t (see Sleep).
func SleepUntil(dc *Durable, t time.Time) error {
	h := opHeader{T: opSleep, N: opSleep}
	seq, rec := dc.enter(h)
	defer dc.leave()
	if rec != nil && rec.Status != "" {
		return nil
	}
	until := t
	if rec != nil {
		until = time.UnixMilli(parseHeader(rec.Header).U)
	}
	h.U = until.UnixMilli()
	dc.park(backend.ParkRequest{Seq: seq, Kind: backend.WaitSleep, Until: until, Header: h.encode(),
		Waiting: "timer until " + stamp(until)})
	return nil
}

// WaitEvent parks the run until Client.Signal delivers event name (its
// payload decoded into T), or until timeout passes: then the error wraps
// ErrEventTimeout and the code decides what to do. An event signalled
// before the wait began is kept (if the task declares the name in
// TaskOptions.Events) and consumed here. The outcome is recorded: a re-run
// gets the same payload or the same timeout.
func WaitEvent[T any](dc *Durable, name string, timeout time.Duration) (T, error) {
	var zero T
	if err := validEventName(name); err != nil {
		return zero, err
	}
	if timeout <= 0 {
		return zero, fmt.Errorf("baton: WaitEvent %q: timeout %v must be positive (it bounds how long the run stays parked)", name, timeout)
	}
	h := opHeader{T: opEvent, N: name}
	seq, rec := dc.enter(h)
	defer dc.leave()
	until := time.Now().Add(timeout)
	status, payload := "", ""
	if rec != nil {
		until = time.UnixMilli(parseHeader(rec.Header).U)
		status, payload = rec.Status, string(rec.Result)
	}
	if status == "" {
		h.U = until.UnixMilli()
		rep := dc.park(backend.ParkRequest{Seq: seq, Kind: backend.WaitEvent, Until: until, Event: name, Header: h.encode(),
			Waiting: fmt.Sprintf("event %s (until %s)", name, stamp(until))})
		status, payload = rep.Status, string(rep.Result)
	}
	if status != backend.OpOK {
		return zero, &eventTimeout{name: name, until: until}
	}
	var v T
	if err := json.Unmarshal([]byte(payload), &v); err != nil {
		return zero, Permanent(fmt.Errorf("baton: event %q: payload %s does not decode into %T: %w", name, clip(payload, 200), v, err))
	}
	return v, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
