package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batonhq/baton/backend"
)

// Durable tasks: handlers that may be re-run from the top, whose operations
// (Step, Call, Map, CallCanvas, Sleep, WaitEvent) are recorded in a per-run
// log and replayed from it. This comment is the protocol; the code follows
// it, and a change to one is a change to the other.
//
// # Keys (all in the run's hash slot: the tag of the run id)
//
//	task record  baton:task:{tag}:<run>     state, waiting, retries ... (backend/record.go)
//	run hash     baton:run:{tag}:<run>      gen, claim, dlv, msg, events, wait_*,
//	                                        per operation s: o:s header, s:s status,
//	                                        r:s result, e:s error, a:s/x:s attempts,
//	                                        ts:s/tf:s times, p:s children left,
//	                                        c:s:i child outcome; k:* checkpoints;
//	                                        ev:<name> a buffered event
//	pending set  baton:runwait:{tag}:<run>  children not finished, all operations
//	children     <run>.c<s> (Call), <run>.c<s>.<i> (Map), workflow <run>.w<s> (CallCanvas)
//	resumes      asynq ids <run>~<gen> (wake now) and <run>~<gen>t (timer)
//
// Every key has a TTL: the result TTL, refreshed on each write, and at
// least until a park's deadline (or a child's ETA) plus the TTL while parked.
//
// # Deliveries, generations, claims
//
// A delivery of a run is an asynq task carrying the run's message with rg,
// the generation it resumes (0 for the first delivery). Its root delivery id
// is its asynq id without recovery suffixes (recover.go's "~rN"), so a
// recovery copy of a delivery counts as that delivery. The run hash holds
// gen (bumped by every park), claim (the root id of the delivery that owns
// the run) and dlv (the asynq id of the last delivery that claimed or
// replayed it). Every write a running handler makes is fenced: it happens
// only while the task is STARTED, gen == rg, claim == the delivery's root
// and dlv == its id (so a recovery copy that started fences out the
// delivery it copied, should that one still be alive); otherwise the script
// answers GONE (terminal) or LOST (another delivery owns the run) and the
// handler stops (runtime.Goexit) writing nothing more.
//
// # States of a run (task record state) and who moves it
//
//	(none)/PENDING --start, rg=0--------------------------> STARTED  claim := root, dlv := id
//	STARTED --park script (awaited thing not there)-------> WAITING  gen := gen+1, wait_* set
//	WAITING --start of a resume with rg == gen------------> STARTED  claim, dlv := root, id; a due
//	                                                                  sleep completes, a due
//	                                                                  event wait times out
//	STARTED --handler returns an error (retry left)-------> RETRY    (finish script)
//	RETRY   --start, rg == gen and claim == root----------> STARTED
//	STARTED --handler returns / fails for good / op abort-> SUCCESS | FAILURE (finish script)
//	any non-terminal --Client.Cancel (cancelRun script)---> REVOKED
//
// Start (durableStartScript) of a delivery D with generation rg:
//   - superseded, terminal, replaced, cancelled workflow: as for every task;
//   - WAITING, gen == rg: claim (above) and run the handler (replay);
//   - WAITING, gen > rg: D parked the run and was delivered again (a crash
//     before its ack): answer PARKED and D makes sure the wake-up of the
//     current wait exists (enqueue <run>~<gen> if what it waits for is
//     there, or <run>~<gen>t at the deadline), then is dropped. Enqueuing is
//     idempotent: while the run is WAITING at gen no delivery of gen has
//     claimed it, so asynq still holds any earlier copy (a duplicate id is
//     refused) or there is none;
//   - STARTED or RETRY, gen == rg, claim == root: a redelivery of the owner
//     after a crash, its recovery copy, or its retry: dlv := id, run the
//     handler again (replay);
//   - otherwise (the other resume of the same wait, a timer that lost the
//     race, a duplicate message): STALE, drop it.
//
// # Operations (seq s = the handler's s-th operation)
//
// Recorded and complete: check the kind and name against the header (a
// mismatch fails the run for good: non-determinism, naming both) and return
// the stored outcome. Otherwise:
//   - Step: run fn inline. Success or a final error: opRecordScript records
//     it (one round trip). A retryable error with attempts left: parkScript
//     records the attempt (a:s, x:s) and parks until the retry time.
//   - Call / Map / CallCanvas: callStartScript records the header, p:s and
//     the children in the pending set and PENDING records naming their
//     waiter; then the children are enqueued under their fixed ids (a
//     canvas is submitted with a durable awaiter note); then parkScript. On
//     a replay of an operation started but not complete, children whose
//     record is missing or PENDING are enqueued again (asynq refuses an id
//     it holds; a canvas submitted again resumes the stored one).
//   - Sleep: parkScript records {until} and parks (the deadline is stored,
//     never recomputed on a replay).
//   - WaitEvent: parkScript records {name, until}; a buffered event is
//     consumed into the operation (READY), else it parks with a timer.
//
// parkScript: if the operation is complete (status set by a child or a
// signal), a buffered event is there, or the deadline passed → READY, the
// handler goes on inline. Else → WAITING, gen+1, wait_op/kind/until/ev set.
// Then the worker: enqueue <run>~<gen>t at the deadline (if any), then ack
// the delivery. The handler goroutine has exited (runtime.Goexit): a parked
// run holds no worker slot and no goroutine.
//
// Child ended (every terminal path of a child: success, failure, revoked,
// expired, and the start of a redelivery that finds it terminal; a canvas's
// end through its awaiter note): notifyScript removes it from the pending
// set, stores its outcome in c:s:i and decrements p:s; at 0 the operation is
// complete. If the run is WAITING on s and s is complete it answers RESUME
// and the notifier enqueues <run>~<gen>.
//
// Signal: signalScript. Run WAITING on this event: payload into r:s, op
// complete, RESUME (the client enqueues <run>~<gen>). Else, if the name is
// declared (TaskOptions.Events): buffered in ev:<name>, one at a time.
//
// # What a crash between two writes leaves, and who repairs it
//
//   - after start, before anything: the delivery is redelivered (asynq
//     lease, or a recovery copy with the same root) and replays.
//   - a Step ran, its record not written: the replay runs it again (the
//     only operation that can repeat is the one in flight).
//   - callStartScript written, children not (all) enqueued: the replay
//     enqueues those whose record is missing or PENDING.
//   - parkScript written, timer resume not enqueued or delivery not acked:
//     the delivery comes back with rg < gen: PARKED → wake-up ensured.
//   - a child's terminal record written, notify not run (or its resume not
//     enqueued): the child's delivery comes back, finds its record terminal
//     and notifies again; notify is idempotent and answers RESUME again
//     while the run is still WAITING.
//   - signal recorded, resume not enqueued: the wait's timer resume claims
//     the run at the deadline and finds the event delivered; a Signal
//     retried with the same payload re-enqueues the resume.
//   - the run's final record written, its waiter not notified: as a child.
//   - Client.Cancel cut short: the run is REVOKED first; calling Cancel
//     again revokes the children and deletes the timer again.
//   - Redis restarts (AOF): every write above is a single script, so Redis
//     holds a state from this list, and the same repairs apply.

// Defaults of durable runs.
const (
	// MaxOperationsDefault is how many operations one run may record.
	MaxOperationsDefault = 10_000
	// MaxRecordedBytesDefault is how many bytes of results, errors, events
	// and checkpoints one run may record.
	MaxRecordedBytesDefault = 64 << 20
	// StepMaxRetriesDefault is how many times a failing Step is retried.
	StepMaxRetriesDefault = 3
)

// Errors of durable runs and Signal.
var (
	// ErrEventTimeout is wrapped by WaitEvent's error when no event came
	// before the timeout.
	ErrEventTimeout = errors.New("baton: event wait timed out")
	// ErrUnknownEvent is returned by Signal for an event name the run
	// neither declares (TaskOptions.Events) nor waits for.
	ErrUnknownEvent = errors.New("baton: unknown event")
	// ErrEventPending is returned by Signal when an event of that name was
	// sent before and not yet consumed by a WaitEvent.
	ErrEventPending = errors.New("baton: an event of that name is already pending")
	// ErrRunFinished is returned by Signal for a run that has ended.
	ErrRunFinished = errors.New("baton: the run has finished")
)

// DurableFunc is a durable task's handler. It may be run again from the top
// any number of times: everything it does through dc's operations is
// recorded and returns the recorded outcome on a re-run.
type DurableFunc[A, R any] func(dc *Durable, args A) (R, error)

// NewDurable defines a durable task: a Task like any other (enqueue it, put
// it in a canvas, Call it from another durable task), whose handler receives
// a *Durable and may be re-run from the top. Its operations (Step, Call,
// Map, CallCanvas, Sleep, SleepUntil, WaitEvent) are recorded in the run's
// log in Redis and return their recorded outcome when the handler runs
// again, so a run killed after its 8th of 10 operations resumes at the 9th.
// While it waits for children, a timer or an event it is parked: it holds
// no worker slot and no goroutine.
//
// The handler must be deterministic in its operations: on a re-run it must
// call the same operations, with the same names, in the same order, given
// the same recorded outcomes (branch on recorded values, never on the clock,
// randomness or external reads made outside a Step). A run whose code calls
// a different operation than the one recorded at that position fails for
// good, naming both. Operations must be called from the handler's own
// goroutine, one at a time (Map is the parallel primitive).
//
// A nil fn defines the task for producers (enqueue, Signal's event names).
func NewDurable[A, R any](kind string, fn DurableFunc[A, R], opts *TaskOptions) *Task[A, R] {
	var handler TaskFunc[A, R]
	if fn != nil {
		handler = func(ctx context.Context, args A) (R, error) {
			dc, ok := ctx.Value(durableKey{}).(*Durable)
			if !ok {
				var zero R
				return zero, Permanent(fmt.Errorf("durable task %q was run outside a baton worker: run it with Worker.Register", kind))
			}
			dc.ctx = ctx
			res, err := fn(dc, args)
			dc.run.returned.Store(true)
			return res, err
		}
	}
	t := NewTask(kind, handler, opts)
	t.durable, t.opts.durable = true, true
	return t
}

type durableKey struct{}

// Durable is a durable run's context, given to its handler. Its methods and
// the operations that take it must be called from the handler's goroutine.
type Durable struct {
	ctx  context.Context
	run  *durableRun
	next int  // the next operation's sequence number
	step int  // the Step running now, -1 outside a step
	busy bool // an operation is in progress
	ckpt map[string][]byte
}

// Context is the context of the current attempt: cancelled on shutdown,
// cancel and timeout. Pass it to I/O in Steps.
func (dc *Durable) Context() context.Context { return dc.ctx }

// RunID is the run's id (its task id).
func (dc *Durable) RunID() string { return dc.run.m.ID }

// Checkpoint saves v (JSON) as the run's progress at the current position:
// inside a Step, the step's (its next attempt reads it with Restore; it is
// dropped once the step's result is recorded); outside a step, the code's
// between the last operation and the next (kept for the run's life, so a
// re-run restores the last state). Use it for a long local loop that cannot
// be cut into steps. It costs one Redis round trip.
func (dc *Durable) Checkpoint(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("baton: checkpoint of run %s: encode %T: %w", dc.RunID(), v, err)
	}
	pos := dc.position()
	r := dc.run
	r.checkBytes(len(raw))
	if err := r.w.be.Checkpoint(r.rctx, r.fence, pos, raw); err != nil {
		if errors.Is(err, backend.ErrRunGone) || errors.Is(err, backend.ErrRunLost) {
			r.stop(err)
		}
		return fmt.Errorf("baton: checkpoint of run %s: %w", dc.RunID(), err)
	}
	dc.ckpt[pos] = raw
	return nil
}

// Restore decodes the checkpoint of the current position (see Checkpoint)
// into v and reports whether there was one.
func (dc *Durable) Restore(v any) (bool, error) {
	raw, ok := dc.ckpt[dc.position()]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("baton: restore checkpoint of run %s into %T: %w", dc.RunID(), v, err)
	}
	return true, nil
}

func (dc *Durable) position() string {
	if dc.step >= 0 {
		return fmt.Sprintf("s%d", dc.step)
	}
	return fmt.Sprintf("b%d", dc.next)
}

// StepOpts configure a Step's retries. A nil *StepOpts keeps the defaults.
type StepOpts struct {
	// MaxRetries is how many times a failed step is retried before its error
	// is recorded for good. Defaults to 3; -1 means no retries.
	MaxRetries int
	// RetryDelay is the wait before each retry (the run is parked
	// meanwhile). Defaults to Backoff(1s, 1m).
	RetryDelay *RetryPolicy
}

func (o *StepOpts) resolve() (int, *RetryPolicy) {
	var s StepOpts
	if o != nil {
		s = *o
	}
	switch {
	case s.MaxRetries == 0:
		s.MaxRetries = StepMaxRetriesDefault
	case s.MaxRetries < 0:
		s.MaxRetries = 0
	}
	if s.RetryDelay == nil {
		s.RetryDelay = Backoff(time.Second, time.Minute)
	}
	return s.MaxRetries, s.RetryDelay
}

// Result is one item of Map's results: its value, or its error (a
// *TaskError).
type Result[R any] struct {
	Value R
	Err   error
}

// StepError is the recorded failure of a Step: the same value on the run
// that saw it fail and on every re-run (the error's text is what is kept).
type StepError struct {
	Name     string
	Message  string
	Attempts int
}

func (e *StepError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("step %q failed after %d attempts: %s", e.Name, e.Attempts, e.Message)
	}
	return fmt.Sprintf("step %q failed: %s", e.Name, e.Message)
}

// eventTimeout is WaitEvent's error when the timeout passed.
type eventTimeout struct {
	name  string
	until time.Time
}

func (e *eventTimeout) Error() string {
	return fmt.Sprintf("baton: no event %q before %s", e.name, e.until.UTC().Format(time.RFC3339))
}

func (e *eventTimeout) Unwrap() error { return ErrEventTimeout }

// errMemoized marks a *TaskError returned by Call, Map or CallCanvas.
var errMemoized = errors.New("baton: recorded failure of a durable operation")

// recordedFailure reports whether err is (or wraps) the recorded failure of
// a durable operation: returning it from the handler fails the run at once,
// since a retry would replay the same failure.
func recordedFailure(err error) bool {
	var se *StepError
	return errors.As(err, &se) || errors.Is(err, ErrEventTimeout) || errors.Is(err, errMemoized)
}

// Operation is one recorded operation of a durable run (Client.Operations).
type Operation struct {
	Seq  int    `json:"seq"`
	Type string `json:"type"` // step, call, map, canvas, sleep, event
	Name string `json:"name"` // the step's name, the child kind, the event name
	// State is done, failed, running (started, not finished: children
	// running, or a step whose attempt is in flight), retrying (a step
	// waiting for its next attempt) or waiting (the run is parked on it).
	State    string    `json:"state"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Until is the deadline of a sleep or an event wait, or the time of a
	// step's next attempt.
	Until    time.Time       `json:"until,omitzero"`
	Attempts int             `json:"attempts,omitempty"`
	Children []string        `json:"children,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// durableRun is one delivery of a durable run as the worker runs it.
type durableRun struct {
	w     *Worker
	m     *message
	fence backend.Fence
	log   *backend.RunLog

	maxOps   int
	maxBytes int
	bytes    int // recorded by this run so far (loaded + written)

	returned atomic.Bool // the handler returned (did not exit through Goexit)

	mu     sync.Mutex
	closed bool   // the delivery is over: the handler goroutine must not write
	end    runEnd // why the handler goroutine exited early

	rctx context.Context // for protocol I/O: not cancelled with the attempt
}

// validateDurable checks the durable and heartbeat options.
func (o TaskOptions) validateDurable() error {
	var errs []error
	if o.HeartbeatTimeout < 0 {
		errs = append(errs, fmt.Errorf("HeartbeatTimeout %v is negative: use 0 for none", o.HeartbeatTimeout))
	} else if o.HeartbeatTimeout > 0 && o.HeartbeatTimeout < time.Second {
		errs = append(errs, fmt.Errorf("HeartbeatTimeout %v is under 1s: the fleet checks heartbeats every %v; use 1s or more", o.HeartbeatTimeout, heartbeatInterval))
	}
	if o.MaxOperations < 0 {
		errs = append(errs, fmt.Errorf("MaxOperations %d is negative: use 0 for the default (%d)", o.MaxOperations, MaxOperationsDefault))
	}
	if o.MaxRecordedBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxRecordedBytes %d is negative: use 0 for the default (%d)", o.MaxRecordedBytes, MaxRecordedBytesDefault))
	}
	seen := map[string]bool{}
	for _, e := range o.Events {
		if err := validEventName(e); err != nil {
			errs = append(errs, fmt.Errorf("Events: %w", err))
		} else if seen[e] {
			errs = append(errs, fmt.Errorf("Events: %q is listed twice", e))
		}
		seen[e] = true
	}
	return errors.Join(errs...)
}

// validEventName checks an event name (WaitEvent, Signal, TaskOptions.Events).
func validEventName(name string) error {
	if name == "" {
		return errors.New("baton: event name is empty: name the event (\"approve\")")
	}
	if len(name) > 200 {
		return fmt.Errorf("baton: event name %q... is %d bytes: keep it under 200", name[:20], len(name))
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("baton: event name %q has a control character: use letters, digits and punctuation", name)
		}
	}
	return nil
}

// runEnd is why a durable handler's goroutine exited before returning.
type runEnd struct {
	parked  bool
	wake    time.Time // the parked run's timer, zero for none
	waitFor string    // what it waits for (backend.Wait*)
	gen     int       // the generation it parked at
	abort   error     // fails the run for good (non-determinism, limits)
	infra   error     // Redis trouble: the delivery is retried
	lost    error     // the run is terminal or owned by another delivery
	stopped error     // the attempt's context ended during an operation
}
