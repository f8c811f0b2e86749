// Package backend is baton's Redis result backend: per-task state records,
// results and errors, chord joins, workflow records, and waiting for a result
// without polling (Redis pub/sub with a state re-check on every subscribe).
//
// Records move PENDING → STARTED → (RETRY → STARTED)* → SUCCESS | FAILURE |
// REVOKED. Terminal states are never overwritten: every write is a Lua script
// that checks the current state first. Every key has a TTL (Options.ResultTTL).
//
// It also holds the state of flow-control limits (limits.go): GCRA
// arrival times and reservations of rate limits, leased slots and waiters
// of concurrency limits, and the definitions workers enforce.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/internal/defaults"
)

// ResultTTLDefault is how long records are kept when Options.ResultTTL is unset.
const ResultTTLDefault = defaults.ResultTTL

// ErrNotFound is returned for an id the backend has no record of.
var ErrNotFound = errors.New("baton: task not found")

// Options configure a Backend.
type Options struct {
	// ResultTTL is how long a record is kept after its last write. Defaults to
	// ResultTTLDefault (24h). Zero means "use the default"; a negative value
	// is rejected (records cannot expire immediately).
	ResultTTL time.Duration
}

// Backend reads and writes task records in Redis.
type Backend struct {
	rdb   redis.UniversalClient
	ttl   time.Duration
	ttlMS string
	pipe  *pipeliner
	hub   *hub

	closeOnce sync.Once

	wakeMu   sync.Mutex
	lastWake map[string]time.Time
	wakeDue  map[string]bool
}

// New returns a Backend on rdb. Close it to stop its background goroutines;
// rdb stays open (the caller owns it).
func New(rdb redis.UniversalClient, opts Options) (*Backend, error) {
	if opts.ResultTTL < 0 {
		return nil, fmt.Errorf("backend: ResultTTL %v is negative: records cannot expire immediately; use a positive duration such as 24h", opts.ResultTTL)
	}
	if opts.ResultTTL == 0 {
		opts.ResultTTL = ResultTTLDefault
	}
	if opts.ResultTTL < defaults.MinResultTTL {
		return nil, fmt.Errorf("backend: ResultTTL %v is under %v: results would vanish before anyone reads them; use e.g. 24h", opts.ResultTTL, defaults.MinResultTTL)
	}
	b := &Backend{
		rdb:   rdb,
		ttl:   opts.ResultTTL,
		ttlMS: strconv.FormatInt(opts.ResultTTL.Milliseconds(), 10),
	}
	b.pipe = newPipeliner(rdb)
	b.hub = newHub(b)
	return b, nil
}

// Close stops the backend's goroutines; calls after it fail with an error
// saying so. The Redis client is not closed. Close is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.hub.close()
		b.pipe.close()
	})
	return nil
}

// Redis returns the client the backend writes to.
func (b *Backend) Redis() redis.UniversalClient { return b.rdb }

// TTL is how long records are kept.
func (b *Backend) TTL() time.Duration { return b.ttl }

// Meta describes a task at enqueue time.
type Meta struct {
	ID         string
	Kind       string
	Queue      string
	ParentID   string
	WorkflowID string
	EnqueuedAt time.Time
	// RunAt is when the task is due (Countdown/ETA); its record is kept
	// until RunAt + ResultTTL so a long countdown does not outlive it.
	RunAt time.Time
}

func (b *Backend) ttlFor(runAt time.Time) string {
	if d := time.Until(runAt); d > 0 {
		return strconv.FormatInt((d + b.ttl).Milliseconds(), 10)
	}
	return b.ttlMS
}

func (m Meta) fields() []any {
	f := []any{fKind, m.Kind, fQueue, m.Queue, fEnqueued, ms(m.EnqueuedAt)}
	if m.ParentID != "" {
		f = append(f, fParent, m.ParentID)
	}
	if m.WorkflowID != "" {
		f = append(f, fWorkflow, m.WorkflowID)
	}
	return f
}

// MarkPending records tasks as PENDING, in one round trip. A task that has a
// record already (a duplicate submission, or a worker that got there first)
// keeps it.
func (b *Backend) MarkPending(ctx context.Context, metas ...Meta) error {
	p, err := b.StartPending(ctx, metas...)
	if err != nil {
		return err
	}
	_, err = p.Wait(ctx)
	return err
}

// PendingWrite is a MarkPending in flight, so a producer can enqueue the task
// while its record is written.
type PendingWrite struct {
	b     *Backend
	calls []*call
}

// StartPending begins MarkPending without waiting for it.
func (b *Backend) StartPending(ctx context.Context, metas ...Meta) (*PendingWrite, error) {
	calls := make([]*call, len(metas))
	for i, m := range metas {
		args := append([]any{b.ttlFor(m.RunAt)}, m.fields()...)
		calls[i] = &call{script: pendingScript, keys: []string{TaskKey(m.ID)}, args: args}
	}
	if err := b.pipe.submit(ctx, calls...); err != nil {
		return nil, fmt.Errorf("backend: record pending: %w", err)
	}
	return &PendingWrite{b: b, calls: calls}, nil
}

// Wait returns, per task, whether this write created its record.
func (p *PendingWrite) Wait(ctx context.Context) ([]bool, error) {
	if err := p.b.pipe.wait(ctx, p.calls...); err != nil {
		return nil, fmt.Errorf("backend: record pending: %w", err)
	}
	out := make([]bool, len(p.calls))
	for i, c := range p.calls {
		arr, _ := c.res.([]any)
		if len(arr) > 0 {
			n, _ := arr[0].(int64)
			out[i] = n == 1
		}
	}
	return out, nil
}

// ExistingKind is, after Wait, the kind of task i's record when that record
// existed already ("" when Wait created it, or the record has no kind).
func (p *PendingWrite) ExistingKind(i int) string {
	arr, _ := p.calls[i].res.([]any)
	if len(arr) < 2 {
		return ""
	}
	k, _ := arr[1].(string)
	return k
}

// Delete removes task records (used to undo a PENDING record whose enqueue
// failed), in one round trip. Records of different workflows live in
// different hash slots, so each gets its own DEL: a multi-key DEL across
// slots is refused by Redis Cluster (CROSSSLOT).
func (b *Backend) Delete(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	for _, id := range ids {
		pipe.Del(ctx, TaskKey(id))
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Status is a record's state and outcome as returned by Start and Finish.
type Status struct {
	State  State
	Result json.RawMessage
	Error  string
	// NextTry is when a retry was due, as recorded with RETRY (Start only).
	NextTry time.Time
	// Written is true when Finish wrote the outcome; false when the record
	// was terminal already and was kept (Result, Error and Reason are then
	// its).
	Written bool
	// Replaced is the id of the workflow that replaced the task (Start's
	// answer Replaced only).
	Replaced string
	// Reason is the record's reason field (ReasonCancelled or "").
	Reason string
	// Retries is the task's retry count for a start: the larger of the
	// record's and the delivery's (Start and StartDurable only).
	Retries int
	// Run is a durable run's state (StartDurable only).
	Run *RunState
}

// StartRequest asks to move a task to STARTED.
type StartRequest struct {
	Meta
	Retries int
	// CheckCancel makes the start fail with REVOKED when the task's workflow
	// (Meta.WorkflowID) was cancelled.
	CheckCancel bool
	// DeliveryID is the asynq task id of this delivery; a delivery that
	// Supersede replaced gets state Superseded.
	DeliveryID string
}

// Superseded is Start's answer for a delivery replaced by a recovery copy:
// not a state that is ever stored.
const Superseded State = "SUPERSEDED"

// Supersede marks delivery (an orphaned asynq task id) of task id as
// replaced by a recovery copy. It reports false when it was marked before.
func (b *Backend) Supersede(ctx context.Context, id, delivery string) (bool, error) {
	c := &call{script: supersedeScript, keys: []string{TaskKey(id)}, args: []any{delivery, b.ttlMS}}
	if err := b.pipe.do(ctx, c); err != nil {
		return false, fmt.Errorf("backend: supersede %s: %w", id, err)
	}
	n, _ := c.res.(int64)
	return n == 1, nil
}

// Replaced is Start's answer for a task that replaced itself with a
// workflow (MarkReplaced): its handler ran and must not run again; the task
// ends when the workflow does. Not a state that is ever stored.
const Replaced State = "REPLACED"

// MarkReplaced records that workflow replacement replaces running task id.
// A terminal task is left as it is.
func (b *Backend) MarkReplaced(ctx context.Context, id, replacement string) error {
	c := &call{script: replacedScript, keys: []string{TaskKey(id)}, args: []any{replacement, b.ttlMS}}
	if err := b.pipe.do(ctx, c); err != nil {
		return fmt.Errorf("backend: record the replacement of %s: %w", id, err)
	}
	return nil
}

// Superseded reports whether delivery of task id was replaced.
func (b *Backend) Superseded(ctx context.Context, id, delivery string) (bool, error) {
	return b.rdb.HExists(ctx, TaskKey(id), "sup:"+delivery).Result()
}

// Start moves a task to STARTED and returns STARTED, or returns the terminal
// status the task already has (SUCCESS recorded by an earlier delivery,
// REVOKED by a cancel): the caller then must not run the handler.
func (b *Backend) Start(ctx context.Context, req StartRequest) (Status, error) {
	wfKey, check := TaskKey(req.ID), "0"
	if req.CheckCancel && req.WorkflowID != "" {
		wfKey, check = WorkflowKey(req.WorkflowID), "1"
	}
	args := []any{b.ttlMS, ms(time.Now()), req.Retries, check, DoneChannel(req.ID), req.DeliveryID}
	args = append(args, req.Meta.fields()...)
	c := &call{script: startScript, keys: []string{TaskKey(req.ID), wfKey}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return Status{}, fmt.Errorf("backend: start %s: %w", req.ID, err)
	}
	return statusOf(c.res)
}

// Outcome is what a finished attempt records.
type Outcome struct {
	ID      string
	State   State // RETRY, SUCCESS, FAILURE or REVOKED
	Result  json.RawMessage
	Error   string
	Retries int
	// NextTry is when a RETRY runs again.
	NextTry time.Time
	// Payload is kept with a FAILURE so it can be inspected.
	Payload json.RawMessage
	// Reason is recorded with a terminal state: ReasonCancelled for a
	// revocation by a cancel.
	Reason string
	// Meta fills in a record a PENDING write has not reached yet.
	Meta *Meta
}

// Finish records an attempt's outcome and publishes it to waiters. A record
// that is terminal already is left as it is and returned: a late RETRY never
// overwrites SUCCESS.
func (b *Backend) Finish(ctx context.Context, o Outcome) (Status, error) {
	c := b.finishCall(o)
	if err := b.pipe.do(ctx, c); err != nil {
		return Status{}, fmt.Errorf("backend: record %s %s: %w", o.ID, o.State, err)
	}
	st, err := statusOf(c.res)
	return o.fill(st), err
}

// fill completes a written status with what was written.
func (o Outcome) fill(st Status) Status {
	if st.Written {
		st.Result, st.Error, st.Reason = o.Result, o.Error, o.Reason
	}
	return st
}

// FinishInOrder records outcomes of records that share a hash slot (the
// tasks of one workflow and the workflow itself) atomically, in the order
// given, in one round trip. It returns each record's status afterwards.
func (b *Backend) FinishInOrder(ctx context.Context, os ...Outcome) ([]Status, error) {
	return b.finishSeq(ctx, false, os)
}

// FinishChain is FinishInOrder that stops at the first record found
// terminal: the outcomes after it are not written, and the returned slice
// ends with that record's status. It records a step and its workflow only if
// the step was not finished by another delivery.
func (b *Backend) FinishChain(ctx context.Context, os ...Outcome) ([]Status, error) {
	if len(os) == 1 {
		st, err := b.Finish(ctx, os[0])
		if err != nil {
			return nil, err
		}
		return []Status{st}, nil
	}
	return b.finishSeq(ctx, true, os)
}

func (b *Backend) finishSeq(ctx context.Context, stop bool, os []Outcome) ([]Status, error) {
	if len(os) == 0 {
		return nil, nil
	}
	keys := make([]string, len(os))
	args := []any{"0"}
	if stop {
		args[0] = "1"
	}
	for i, o := range os {
		single := b.finishCall(o)
		keys[i] = single.keys[0]
		// single.args: ttl, state, channel, fields...
		args = append(args, single.args[0], single.args[1], single.args[2], len(single.args)-3)
		args = append(args, single.args[3:]...)
	}
	c := &call{script: finishSeqScript, keys: keys, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return nil, fmt.Errorf("backend: record outcomes: %w", err)
	}
	arr, _ := c.res.([]any)
	out := make([]Status, len(arr))
	for i, v := range arr {
		st, err := statusOf(v)
		if err != nil {
			return nil, err
		}
		out[i] = os[i].fill(st)
	}
	return out, nil
}

func (b *Backend) finishCall(o Outcome) *call {
	now := ms(time.Now())
	ttl := b.ttlMS
	if o.State == Retry {
		ttl = b.ttlFor(o.NextTry) // a long retry delay must not outlive the record
	}
	args := []any{ttl, string(o.State), DoneChannel(o.ID), fRetries, o.Retries}
	switch o.State {
	case Retry:
		args = append(args, fError, o.Error, fNextTry, ms(o.NextTry))
	case Success:
		args = append(args, fResult, string(o.Result), fFinished, now, fError, "")
	default:
		args = append(args, fError, o.Error, fFinished, now)
		if len(o.Payload) > 0 {
			args = append(args, fPayload, string(o.Payload))
		}
		if o.Reason != "" {
			args = append(args, fReason, o.Reason)
		}
	}
	if o.Meta != nil {
		args = append(args, o.Meta.fields()...)
	}
	return &call{script: finishScript, keys: []string{TaskKey(o.ID)}, args: args}
}

func statusOf(v any) (Status, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 3 {
		return Status{}, fmt.Errorf("backend: unexpected script reply %T", v)
	}
	s := Status{State: State(fmt.Sprint(arr[0])), Error: fmt.Sprint(arr[2])}
	if len(arr) > 3 {
		s.NextTry = fromMS(fmt.Sprint(arr[3]))
	}
	if len(arr) > 4 {
		s.Written = fmt.Sprint(arr[4]) == "w"
	}
	if len(arr) > 5 {
		s.Reason = fmt.Sprint(arr[5])
	}
	if len(arr) > 6 {
		s.Replaced = fmt.Sprint(arr[6])
	}
	if len(arr) > 7 {
		s.Retries, _ = strconv.Atoi(fmt.Sprint(arr[7]))
	}
	if r := fmt.Sprint(arr[1]); r != "" {
		s.Result = json.RawMessage(r)
	}
	return s, nil
}

// Get returns the record of a task, or ErrNotFound.
func (b *Backend) Get(ctx context.Context, id string) (*Record, error) {
	h, err := b.rdb.HGetAll(ctx, TaskKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("backend: get %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: %s (never enqueued, or its record expired)", ErrNotFound, id)
	}
	return recordFromHash(id, h), nil
}

// GetMany returns the records of ids in order, in one round trip; a missing
// record is nil.
func (b *Backend) GetMany(ctx context.Context, ids []string) ([]*Record, error) {
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, TaskKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("backend: get records: %w", err)
	}
	out := make([]*Record, len(ids))
	for i, c := range cmds {
		if h := c.Val(); len(h) > 0 {
			out[i] = recordFromHash(ids[i], h)
		}
	}
	return out, nil
}

// ChordJoin stores header result idx of an n-task chord. It returns the n
// results in header order once all are in (to this and to every later call),
// else nil.
func (b *Backend) ChordJoin(ctx context.Context, wfID, chordID string, idx, n int, result json.RawMessage) ([]json.RawMessage, error) {
	c := &call{script: chordJoinScript, keys: []string{ChordKey(wfID, chordID)}, args: []any{b.ttlMS, idx, string(result), n}}
	if err := b.pipe.do(ctx, c); err != nil {
		return nil, fmt.Errorf("backend: chord %s join %d: %w", chordID, idx, err)
	}
	arr, _ := c.res.([]any)
	if len(arr) == 0 {
		return nil, nil
	}
	out := make([]json.RawMessage, len(arr))
	for i, v := range arr {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("backend: chord %s: result %d missing after join", chordID, i)
		}
		out[i] = json.RawMessage(s)
	}
	return out, nil
}

// WakeChannel is where producers announce new work (the message is the
// queue); idle workers listen on it instead of polling.
const WakeChannel = prefix + "wake"

// wakeEvery is the most often one client wakes the workers of one queue.
const wakeEvery = time.Millisecond

// Wake tells idle workers of queue that a task is waiting. It does not wait
// for Redis, and sends at most one wake-up per queue per millisecond: a call
// inside that window is covered by one trailing wake-up at its end, so every
// enqueue is followed by a wake-up within a millisecond.
func (b *Backend) Wake(queue string) {
	now := time.Now()
	b.wakeMu.Lock()
	if b.lastWake == nil {
		b.lastWake, b.wakeDue = map[string]time.Time{}, map[string]bool{}
	}
	last := b.lastWake[queue]
	if now.Sub(last) >= wakeEvery {
		b.lastWake[queue] = now
		b.wakeMu.Unlock()
		b.pipe.fireAndForget("publish", WakeChannel, queue)
		return
	}
	if b.wakeDue[queue] {
		b.wakeMu.Unlock()
		return
	}
	b.wakeDue[queue] = true
	b.wakeMu.Unlock()
	time.AfterFunc(last.Add(wakeEvery).Sub(now), func() {
		b.wakeMu.Lock()
		b.wakeDue[queue] = false
		b.lastWake[queue] = time.Now()
		b.wakeMu.Unlock()
		b.pipe.fireAndForget("publish", WakeChannel, queue)
	})
}
