package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Durable runs: the per-run operation log and the calls that move a run
// through its states (the protocol is described in the root package's
// durable.go; the scripts are in durable_scripts.go).

// Waiting is the state of a durable run parked until something happens (its
// children finish, a timer, an event). Not terminal.
const Waiting State = "WAITING"

// Answers of StartDurable that are never stored.
const (
	// Stale: the delivery lost the race for the run (another resume of the
	// same wait claimed it, or the run moved on): drop it.
	Stale State = "STALE"
	// Parked: the run waits at a later generation than the delivery's (the
	// delivery parked it and was redelivered): make sure its wake-up exists.
	Parked State = "PARKED"
)

// RunKey is the hash holding a durable run's log and protocol fields.
func RunKey(id string) string { return prefix + "run:{" + Tag(id) + "}:" + id }

// RunWaitKey is the set of a run's children that have not finished.
func RunWaitKey(id string) string { return prefix + "runwait:{" + Tag(id) + "}:" + id }

// Fields of the run hash. Per operation s: o:s header (JSON, written
// once), s:s status (ok, err; absent while in flight), r:s result, e:s
// error, a:s failed attempts of a step and x:s the last one's error, ts:s/tf:s start and finish (unix
// ms), p:s children not finished, c:s:i outcome of child i. Checkpoints are
// k:s<seq> (inside a step) and k:b<seq> (before operation seq); ev:<name> a
// buffered event.
const (
	fRunMsg       = "msg"    // the run's message, stored at its first start
	fRunEvents    = "events" // declared event names, newline-separated
	fRunGen       = "gen"    // generation: bumped by every park
	fRunClaim     = "claim"  // root delivery id of the delivery that owns the run
	fRunDelivery  = "dlv"    // its actual asynq delivery id
	fRunWaitOp    = "wait_op"
	fRunWaitKind  = "wait_kind"
	fRunWaitUntil = "wait_until"
	fRunWaitEvent = "wait_ev"

	pOpHeader   = "o:"
	pOpStatus   = "s:"
	pOpResult   = "r:"
	pOpError    = "e:"
	pOpAttempts = "a:"
	pOpLastErr  = "x:" // error of a step's last failed attempt
	pOpStarted  = "ts:"
	pOpFinished = "tf:"
	pOpPending  = "p:"
	pOpChild    = "c:"
	pCheckpoint = "k:"
	pEvent      = "ev:"

	// Task record fields of durable runs and their children.
	fWaiting = "waiting" // what a WAITING run waits for, in words
	fWaiter  = "waiter"  // on a child: "<run>:<seq>"
)

// Operation statuses.
const (
	OpOK  = "ok"
	OpErr = "err"
)

// Wait kinds.
const (
	WaitChildren = "children"
	WaitSleep    = "sleep"
	WaitEvent    = "event"
	WaitRetry    = "retry"
)

// EventTimeout is the error text of an event wait that timed out.
const EventTimeout = "timeout"

// Errors of fenced calls: the delivery must stop its handler.
var (
	// ErrRunGone: the run is terminal (cancelled, or finished elsewhere).
	ErrRunGone = errors.New("backend: the durable run is terminal")
	// ErrRunLost: another delivery owns the run now.
	ErrRunLost = errors.New("backend: the durable run is owned by another delivery")
)

// Fence identifies the delivery that owns a run: its resume generation, its
// root delivery id and its asynq delivery id. Every write of a running
// handler is fenced by it.
type Fence struct {
	Run      string
	Gen      int
	Root     string
	Delivery string
}

func (f Fence) String() string { return strconv.Itoa(f.Gen) + "|" + f.Root + "|" + f.Delivery }

func (f Fence) args(seq string, now time.Time, ttl string) []any {
	return []any{seq, f.String(), "", ms(now), ttl}
}

// DurableStart is what a delivery of a durable run brings to its start.
type DurableStart struct {
	Gen    int    // the delivery's resume generation (0 for the first)
	Root   string // its root delivery id (recovery copies share it)
	Msg    []byte // the run's message, kept to build resumes from
	Events []string
}

// RunState is what StartDurable returns besides the Status.
type RunState struct {
	Gen int
	// Log is the run hash when the handler is to run.
	Log *RunLog
	// WakeReady and WakeAt, for Parked: what the run waits for is there, or
	// else it is due at WakeAt (zero: nothing timed; children will wake it).
	WakeReady bool
	WakeAt    time.Time
}

// StartDurable is Start for a delivery of a durable run.
func (b *Backend) StartDurable(ctx context.Context, req StartRequest, d DurableStart) (Status, error) {
	wfKey, check := TaskKey(req.ID), "0"
	if req.CheckCancel && req.WorkflowID != "" {
		wfKey, check = WorkflowKey(req.WorkflowID), "1"
	}
	args := []any{b.ttlMS, ms(time.Now()), req.Retries, check, DoneChannel(req.ID), req.DeliveryID,
		d.Root, d.Gen, string(d.Msg), strings.Join(d.Events, "\n")}
	args = append(args, req.Meta.fields()...)
	c := &call{script: durableStartScript, keys: []string{TaskKey(req.ID), wfKey, RunKey(req.ID)}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return Status{}, fmt.Errorf("backend: start durable run %s: %w", req.ID, err)
	}
	arr, _ := c.res.([]any)
	if len(arr) == 0 {
		return Status{}, fmt.Errorf("backend: start durable run %s: unexpected reply %T", req.ID, c.res)
	}
	switch State(str(arr[0])) {
	case Stale:
		return Status{State: Stale, Run: &RunState{Gen: atoi(at(arr, 4))}}, nil
	case Parked:
		rs := &RunState{Gen: atoi(at(arr, 3)), WakeReady: atoi(at(arr, 4)) == 1, WakeAt: fromMS(str(at(arr, 5)))}
		return Status{State: Parked, Run: rs}, nil
	case Started:
		st := Status{State: Started, NextTry: fromMS(str(at(arr, 3))), Retries: atoi(at(arr, 4))}
		st.Run = &RunState{Gen: atoi(at(arr, 5)), Log: ParseRunLog(pairs(at(arr, 6)))}
		return st, nil
	}
	return statusOf(c.res)
}

// RecordOp records the outcome of an operation that completed in the
// handler. When the operation was complete already it returns the stored
// outcome (existing true) and records nothing.
func (b *Backend) RecordOp(ctx context.Context, f Fence, seq int, header []byte, ok bool, value []byte, started time.Time) (*OpRecord, bool, error) {
	status := OpOK
	if !ok {
		status = OpErr
	}
	args := append(f.args(strconv.Itoa(seq), time.Now(), b.ttlMS), string(header), status, string(value), ms(started))
	arr, err := b.fenced(ctx, opRecordScript, f, []string{RunKey(f.Run), TaskKey(f.Run)}, args)
	if err != nil {
		return nil, false, err
	}
	if str(arr[0]) != "EXISTS" {
		return nil, false, nil
	}
	rec := &OpRecord{Seq: seq, Header: []byte(str(at(arr, 1))), Status: str(at(arr, 2))}
	rec.Result, rec.Error = []byte(str(at(arr, 3))), str(at(arr, 4))
	return rec, true, nil
}

// Child is a child of a run's operation, for StartCall.
type Child struct {
	ID   string
	Task bool // a task (gets a PENDING record); false for a workflow
}

// StartCall records an operation that starts children, before they are
// enqueued. It reports false when the operation was recorded before (a
// replay: the caller re-dispatches what did not start).
func (b *Backend) StartCall(ctx context.Context, f Fence, seq int, header []byte, kind, queue string, children []Child, runAt time.Time) (bool, error) {
	keys := []string{RunKey(f.Run), TaskKey(f.Run), RunWaitKey(f.Run)}
	args := append(f.args(strconv.Itoa(seq), time.Now(), b.ttlMS), string(header), kind, queue,
		f.Run+":"+strconv.Itoa(seq), b.ttlFor(runAt))
	for _, c := range children {
		if c.Task {
			keys = append(keys, TaskKey(c.ID))
		}
		args = append(args, c.ID)
	}
	arr, err := b.fenced(ctx, callStartScript, f, keys, args)
	if err != nil {
		return false, err
	}
	return str(arr[0]) == "OK", nil
}

// ParkRequest describes what an operation waits for.
type ParkRequest struct {
	Seq   int
	Kind  string    // WaitChildren, WaitSleep, WaitEvent, WaitRetry
	Until time.Time // the deadline of a sleep, event or retry
	Event string
	// Waiting is the task record's "waiting" text while parked.
	Waiting string
	// Last is the latest time what is awaited may happen (a deadline, a
	// child's ETA): the keys are kept until then plus the TTL.
	Last     time.Time
	Children int
	// Header is written unless present; Fields are written before the check.
	Header []byte
	Fields []string
}

// ParkReply is the park script's answer: Ready with the operation's outcome,
// or parked at generation Gen.
type ParkReply struct {
	Ready    bool
	Status   string
	Result   []byte
	Error    string
	Children []ChildOutcome
	Gen      int
}

// Park makes the run wait for p unless what it waits for is there.
func (b *Backend) Park(ctx context.Context, f Fence, p ParkRequest) (ParkReply, error) {
	now := time.Now()
	until := "0"
	if !p.Until.IsZero() {
		until = ms(p.Until)
	}
	last := p.Last
	if last.Before(p.Until) {
		last = p.Until
	}
	args := append(f.args(strconv.Itoa(p.Seq), now, b.ttlMS), p.Kind, until, p.Event, p.Waiting,
		DoneChannel(f.Run), ms(last), p.Children, string(p.Header))
	for _, v := range p.Fields {
		args = append(args, v)
	}
	arr, err := b.fenced(ctx, parkScript, f, []string{RunKey(f.Run), TaskKey(f.Run), RunWaitKey(f.Run)}, args)
	if err != nil {
		return ParkReply{}, err
	}
	if str(arr[0]) == "PARKED" {
		return ParkReply{Gen: atoi(at(arr, 1))}, nil
	}
	r := ParkReply{Ready: true, Status: str(at(arr, 1)), Result: []byte(str(at(arr, 2))), Error: str(at(arr, 3))}
	outs, _ := at(arr, 4).([]any)
	for _, o := range outs {
		r.Children = append(r.Children, parseChild(str(o)))
	}
	return r, nil
}

// NotifyChild tells run id that child (index idx of operation seq) ended in
// state with a result (SUCCESS) or an error text. When the run is parked on
// that operation and it is now complete, it returns the generation to resume
// (> 0) and the run's message.
func (b *Backend) NotifyChild(ctx context.Context, run string, seq int, child string, idx int, out ChildOutcome) (int, []byte, error) {
	args := []any{seq, child, idx, out.encode(), ms(time.Now()), b.ttlMS}
	c := &call{script: notifyScript, keys: []string{RunKey(run), TaskKey(run), RunWaitKey(run)}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return 0, nil, fmt.Errorf("backend: tell run %s that %s ended: %w", run, child, err)
	}
	arr, _ := c.res.([]any)
	if len(arr) == 3 && str(arr[0]) == "RESUME" {
		return atoi(arr[1]), []byte(str(arr[2])), nil
	}
	return 0, nil, nil
}

// Signal answers, for the root package's Client.Signal.
const (
	SignalNotStarted = "NOTSTARTED"
	SignalNotDurable = "NOTDURABLE"
	SignalFinished   = "FINISHED"
	SignalUnknown    = "UNKNOWN"
	SignalPending    = "PENDING"
	SignalBuffered   = "BUFFERED"
	SignalDelivered  = "DELIVERED"
)

// SignalReply is the signal script's answer. Gen > 0 (with Msg) asks the
// caller to enqueue a resume of the run at that generation.
type SignalReply struct {
	Code  string
	State State // FINISHED, NOTDURABLE: the task's state
	Gen   int
	Msg   []byte
}

// Signal delivers event name with payload to run id, or buffers it. known
// are the event names the caller knows for a run that has not started
// (nil: unknown), anyName accepts any name for such a run.
func (b *Backend) Signal(ctx context.Context, id, name string, payload []byte, known []string, anyName bool) (SignalReply, error) {
	flag := "0"
	if anyName {
		flag = "1"
	}
	args := []any{name, string(payload), ms(time.Now()), b.ttlMS, strings.Join(known, "\n"), flag}
	c := &call{script: signalScript, keys: []string{RunKey(id), TaskKey(id)}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return SignalReply{}, fmt.Errorf("backend: signal %s to %s: %w", name, id, err)
	}
	arr, _ := c.res.([]any)
	r := SignalReply{Code: str(at(arr, 0))}
	switch r.Code {
	case SignalFinished, SignalNotDurable:
		r.State = State(str(at(arr, 1)))
	default:
		r.Gen, r.Msg = atoi(at(arr, 1)), []byte(str(at(arr, 2)))
	}
	return r, nil
}

// Checkpoint stores value as the run's checkpoint at position pos ("s<seq>"
// inside step seq, "b<seq>" before operation seq).
func (b *Backend) Checkpoint(ctx context.Context, f Fence, pos string, value []byte) error {
	args := []any{pCheckpoint + pos, f.String(), "", b.ttlMS, string(value)}
	_, err := b.fenced(ctx, checkpointScript, f, []string{RunKey(f.Run), TaskKey(f.Run)}, args)
	return err
}

// CancelReply is what a cancelled run leaves to stop.
type CancelReply struct {
	// Before is the run's state before the cancel ("" when it has no record).
	Before   State
	Gen      int
	Msg      []byte
	Delivery string
	Children []string
}

// CancelRun records run id REVOKED with reason (unless it is terminal) and
// returns its unfinished children and current wait. meta fills in a record
// that does not exist yet (a run not started), nil for none.
func (b *Backend) CancelRun(ctx context.Context, id, reason string, meta *Meta) (CancelReply, error) {
	args := []any{reason, ms(time.Now()), b.ttlMS, DoneChannel(id)}
	if meta != nil {
		args = append(args, meta.fields()...)
	}
	c := &call{script: cancelRunScript, keys: []string{TaskKey(id), RunKey(id), RunWaitKey(id)}, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return CancelReply{}, fmt.Errorf("backend: cancel run %s: %w", id, err)
	}
	arr, _ := c.res.([]any)
	r := CancelReply{Before: State(str(at(arr, 0))), Gen: atoi(at(arr, 1)), Msg: []byte(str(at(arr, 2))), Delivery: str(at(arr, 3))}
	kids, _ := at(arr, 4).([]any)
	for _, k := range kids {
		r.Children = append(r.Children, str(k))
	}
	sort.Strings(r.Children)
	return r, nil
}

// IsRun reports whether id is a durable run that has started (its run hash
// holds its message).
func (b *Backend) IsRun(ctx context.Context, id string) (bool, error) {
	return b.rdb.HExists(ctx, RunKey(id), fRunMsg).Result()
}

// Run returns a durable run's log with its task state, or ErrNotFound.
func (b *Backend) Run(ctx context.Context, id string) (*RunLog, State, error) {
	pipe := b.rdb.Pipeline()
	h := pipe.HGetAll(ctx, RunKey(id))
	st := pipe.HGet(ctx, TaskKey(id), fState)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("backend: read run %s: %w", id, err)
	}
	if len(h.Val()) == 0 || h.Val()[fRunMsg] == "" {
		return nil, "", fmt.Errorf("%w: durable run %s (never started, expired, or not a durable task)", ErrNotFound, id)
	}
	return ParseRunLog(h.Val()), State(st.Val()), nil
}

// fenced runs a fenced script and turns its GONE and LOST answers into
// ErrRunGone and ErrRunLost.
func (b *Backend) fenced(ctx context.Context, s *redis.Script, f Fence, keys []string, args []any) ([]any, error) {
	c := &call{script: s, keys: keys, args: args}
	if err := b.pipe.do(ctx, c); err != nil {
		return nil, fmt.Errorf("backend: durable run %s: %w", f.Run, err)
	}
	arr, _ := c.res.([]any)
	if len(arr) == 0 {
		return nil, fmt.Errorf("backend: durable run %s: unexpected reply %T", f.Run, c.res)
	}
	switch str(arr[0]) {
	case "GONE":
		return nil, fmt.Errorf("%w (%s)", ErrRunGone, str(at(arr, 1)))
	case "LOST":
		return nil, fmt.Errorf("%w (state %s)", ErrRunLost, str(at(arr, 1)))
	}
	return arr, nil
}

// RunLog is a durable run's hash, parsed.
type RunLog struct {
	Msg     []byte
	Events  []string
	Gen     int
	Claim   string
	WaitOp  int // -1 when not waiting
	WaitFor string
	Until   time.Time
	Event   string
	Ops     map[int]*OpRecord
	// Checkpoints by position ("s<seq>", "b<seq>").
	Checkpoints map[string][]byte
	// Buffered events by name.
	Buffered map[string][]byte
	// Bytes counts recorded results, errors, checkpoints and events.
	Bytes int
}

// OpRecord is one operation of a run's log.
type OpRecord struct {
	Seq       int
	Header    []byte // the operation's kind, name and parameters (JSON)
	Status    string // OpOK, OpErr, or "" while in flight
	Result    []byte
	Error     string
	Attempts  int    // failed attempts of a step
	LastError string // the error of its last failed attempt
	Started   time.Time
	Finished  time.Time
	Pending   int // children not finished
	Children  map[int]ChildOutcome
}

// ChildOutcome is how a child of an operation ended.
type ChildOutcome struct {
	State   State
	Reason  string // the child's record reason (ReasonCancelled after a cancel)
	Payload string // the result (SUCCESS) or the error text
}

// encode writes "STATE:payload", or "STATE;reason:payload" with a reason.
func (o ChildOutcome) encode() string {
	if o.Reason != "" {
		return string(o.State) + ";" + o.Reason + ":" + o.Payload
	}
	return string(o.State) + ":" + o.Payload
}

func parseChild(s string) ChildOutcome {
	head, p, _ := strings.Cut(s, ":")
	st, reason, _ := strings.Cut(head, ";")
	return ChildOutcome{State: State(st), Reason: reason, Payload: p}
}

// ParseRunLog parses a run hash (HGETALL).
func ParseRunLog(h map[string]string) *RunLog {
	l := &RunLog{WaitOp: -1, Ops: map[int]*OpRecord{}, Checkpoints: map[string][]byte{}, Buffered: map[string][]byte{}}
	op := func(s string) *OpRecord {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil
		}
		o := l.Ops[n]
		if o == nil {
			o = &OpRecord{Seq: n}
			l.Ops[n] = o
		}
		return o
	}
	for k, v := range h {
		switch k {
		case fRunMsg:
			l.Msg = []byte(v)
			continue
		case fRunEvents:
			if v != "" {
				l.Events = strings.Split(v, "\n")
			}
			continue
		case fRunGen:
			l.Gen, _ = strconv.Atoi(v)
			continue
		case fRunClaim:
			l.Claim = v
			continue
		case fRunWaitOp:
			if n, err := strconv.Atoi(v); err == nil {
				l.WaitOp = n
			}
			continue
		case fRunWaitKind:
			l.WaitFor = v
			continue
		case fRunWaitUntil:
			l.Until = fromMS(v)
			continue
		case fRunWaitEvent:
			l.Event = v
			continue
		}
		pre, rest, ok := strings.Cut(k, ":")
		if !ok {
			continue
		}
		switch pre + ":" {
		case pCheckpoint:
			l.Checkpoints[rest] = []byte(v)
			l.Bytes += len(v)
		case pEvent:
			l.Buffered[rest] = []byte(v)
			l.Bytes += len(v)
		case pOpChild:
			seq, idx, _ := strings.Cut(rest, ":")
			o := op(seq)
			i, err := strconv.Atoi(idx)
			if o == nil || err != nil {
				continue
			}
			if o.Children == nil {
				o.Children = map[int]ChildOutcome{}
			}
			o.Children[i] = parseChild(v)
			l.Bytes += len(v)
		default:
			o := op(rest)
			if o == nil {
				continue
			}
			switch pre + ":" {
			case pOpHeader:
				o.Header = []byte(v)
			case pOpStatus:
				o.Status = v
			case pOpResult:
				o.Result = []byte(v)
				l.Bytes += len(v)
			case pOpError:
				o.Error = v
				l.Bytes += len(v)
			case pOpAttempts:
				o.Attempts, _ = strconv.Atoi(v)
			case pOpLastErr:
				o.LastError = v
			case pOpStarted:
				o.Started = fromMS(v)
			case pOpFinished:
				o.Finished = fromMS(v)
			case pOpPending:
				o.Pending, _ = strconv.Atoi(v)
			}
		}
	}
	for n, o := range l.Ops {
		if o.Header == nil { // fields of an operation whose header was never written
			delete(l.Ops, n)
		}
	}
	return l
}

// AttemptFields are the Park fields recording a step's failed attempt.
func AttemptFields(seq, attempts int, errText string) []string {
	s := strconv.Itoa(seq)
	return []string{pOpAttempts + s, strconv.Itoa(attempts), pOpLastErr + s, errText}
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case int64:
		return strconv.FormatInt(s, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func atoi(v any) int {
	n, _ := strconv.Atoi(str(v))
	return n
}

func at(arr []any, i int) any {
	if i < len(arr) {
		return arr[i]
	}
	return nil
}

// pairs turns a flat field, value array into a map.
func pairs(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		m[str(arr[i])] = str(arr[i+1])
	}
	return m
}
