package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

// Canvas building blocks, re-exported from package chain.
type (
	// Canvas is a Signature, *chain.Chain, *chain.Group or *chain.Chord.
	Canvas = chain.Canvas
	// Signature is one task of a canvas.
	Signature = chain.Signature
)

// Chain runs steps one after another, each fed the previous step's result.
func Chain(steps ...Canvas) *chain.Chain { return chain.NewChain(steps...) }

// Group runs members in parallel; its result is the ordered list of theirs.
func Group(members ...Canvas) *chain.Group { return chain.NewGroup(members...) }

// Chord runs body once after every header task succeeded, with the ordered
// list of their results.
func Chord(header *chain.Group, body Canvas) *chain.Chord { return chain.NewChord(header, body) }

// S is a signature of the task with static args: in a chain, the previous
// result is added beside them in the field "input" (see chain.Signature).
func (t *Task[A, R]) S(args A, opts *EnqueueOpts) *Signature {
	raw, err := json.Marshal(args)
	if err != nil {
		panic(fmt.Sprintf("baton: %s.S: encode args %T: %v", t.kind, args, err))
	}
	return &Signature{Kind: t.kind, Args: raw, Options: encodeOpts(opts)}
}

// Sig is a signature with no static args: in a chain the previous result is
// the whole payload, so it must decode into A.
func (t *Task[A, R]) Sig(opts *EnqueueOpts) *Signature {
	return &Signature{Kind: t.kind, Options: encodeOpts(opts)}
}

// SI is an immutable signature: it ignores the previous step's result.
func (t *Task[A, R]) SI(args A, opts *EnqueueOpts) *Signature {
	s := t.S(args, opts)
	s.Immutable = true
	return s
}

func encodeOpts(o *EnqueueOpts) json.RawMessage {
	if o == nil {
		return nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		panic(fmt.Sprintf("baton: encode options: %v", err))
	}
	return b
}

// SubmitOpts configure Submit.
type SubmitOpts struct {
	// ID is the workflow id: 1 to 200 ASCII letters, digits, '-', '_' and
	// ':' (backend.IDRule; its steps get "<ID>.<n>"). Defaults to a new
	// random id. Submitting an id that exists returns the existing workflow.
	ID string
	// RequireKnownKinds rejects tasks whose kind the client was not told
	// about with Declare.
	RequireKnownKinds bool
	// Input is fed to the first step(s) as if it were a previous result
	// (Celery's sig.apply_async(args)): a step with no static args gets it
	// as its payload, one with a JSON array of static args gets it
	// prepended, one with a JSON object gets it in "input". Immutable steps
	// ignore it. Nil feeds nothing. Submitting an existing id again keeps
	// the input it was first submitted with.
	Input json.RawMessage

	// awaiter is who waits for the workflow's end (a task it replaces);
	// such internal workflows have ids of the form "<task id>.r".
	awaiter json.RawMessage
}

// Workflow is a handle on a submitted canvas.
type Workflow struct {
	ID   string
	Plan *chain.Plan
	c    *Client
	// end is set when the workflow ended as it was submitted (its root is an
	// empty group, say).
	end *workflowEnd
}

// Submit validates a canvas, assigns every task its id, records them all
// PENDING and enqueues the first steps. Nothing is enqueued when the canvas
// is invalid; errors name the JSON path of the problem. Submitting an id
// again is idempotent and completes a submission that an error cut short:
// when Submit fails after the workflow was stored it returns the workflow
// with the error, so the caller can retry with SubmitOpts{ID: wf.ID}.
func (c *Client) Submit(ctx context.Context, cv Canvas, opts *SubmitOpts) (*Workflow, error) {
	if c.obs == nil {
		return c.submit(ctx, cv, opts)
	}
	var o SubmitOpts
	if opts != nil {
		o = *opts
	}
	if o.ID == "" {
		o.ID = uuid.NewString()
	}
	info := SubmitInfo{ID: o.ID, Kind: canvasKind(cv)}
	ctx = c.obs.submitting(ctx, info)
	wf, err := c.submit(ctx, cv, &o)
	if wf != nil && wf.Plan != nil {
		info.Tasks = len(wf.Plan.Tasks())
	}
	c.obs.submitted(ctx, info, err)
	return wf, err
}

// canvasKind is the kind of cv's root, as chain.Plan.Kind names it.
func canvasKind(cv Canvas) string {
	switch cv.(type) {
	case *Signature:
		return chain.TypeTask
	case *chain.Chain:
		return chain.TypeChain
	case *chain.Group:
		return chain.TypeGroup
	case *chain.Chord:
		return chain.TypeChord
	}
	return ""
}

func (c *Client) submit(ctx context.Context, cv Canvas, opts *SubmitOpts) (*Workflow, error) {
	var o SubmitOpts
	if opts != nil {
		o = *opts
	}
	if o.ID == "" {
		o.ID = uuid.NewString()
	}
	// Ids baton derives itself (a replacement "<task id>.r") are not held
	// to the rule for callers' ids.
	if err := validCallerID("workflow id", o.ID); err != nil && o.awaiter == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	// Shape and depth first: a canvas nested thousands deep stops here,
	// before anything walks it building JSON paths.
	if err := chain.Validate(cv); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	if n := countTasks(cv); n > c.maxTasks {
		return nil, fmt.Errorf("%w: the canvas has %d tasks, over the limit of %d (ClientOptions.MaxCanvasTasks; baton: BATON_MAX_CANVAS_TASKS or --max-canvas-tasks): split it into several workflows or raise the limit",
			ErrInvalidCanvas, n, c.maxTasks)
	}
	if err := chain.Walk(cv, func(path string, s *Signature) error {
		if o.RequireKnownKinds {
			c.mu.RLock()
			_, ok := c.defs[s.Kind]
			c.mu.RUnlock()
			if !ok {
				return fmt.Errorf("%s.task: unknown task kind %q (known: %s)", path, s.Kind, strings.Join(c.kinds(), ", "))
			}
		}
		if len(s.Options) > 0 {
			var eo EnqueueOpts
			if err := json.Unmarshal(s.Options, &eo); err != nil {
				return fmt.Errorf("%s.options: %w", path, err)
			}
			if eo.ID != "" {
				return fmt.Errorf("%s.options.id: task ids in a canvas are assigned by baton (\"<workflow>.<n>\"); set the workflow id instead", path)
			}
			if err := eo.validate(); err != nil {
				return fmt.Errorf("%s.options: %w", path, err)
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	if len(o.Input) > 0 && !json.Valid(o.Input) {
		return nil, fmt.Errorf("%w: SubmitOpts.Input is not valid JSON: pass a JSON value (a number, string, array, object), or nil for none", ErrInvalidCanvas)
	}
	plan, err := chain.Compile(o.ID, cv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	plan.Input, plan.Awaiter = o.Input, o.awaiter
	first, err := plan.Start(0, plan.Input, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	var bare []chain.Dispatch // the first steps, when they get no input
	if plan.Input == nil {
		bare = first.Dispatch
	}
	if err := plan.CheckInputs(bare); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return nil, fmt.Errorf("baton: encode plan: %w", err)
	}
	if err := c.checkSizes(plan, planJSON); err != nil {
		return nil, err
	}
	now := time.Now()
	created, err := c.saveWorkflow(ctx, plan, planJSON, now)
	if err != nil {
		return nil, c.redisErr("submit workflow", err)
	}
	wf := &Workflow{ID: o.ID, Plan: plan, c: c}
	if !created {
		// Submitted before, maybe only in part (a Redis error midway): the
		// stored plan wins, and whatever of its start was not dispatched is.
		stored, raw, err := loadPlan(ctx, c.rdb, o.ID)
		if err != nil {
			return nil, err
		}
		wf.Plan, plan, planJSON = stored, stored, raw
		if first, err = plan.Start(0, plan.Input, ""); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
		}
	}
	metas := []backend.Meta{{ID: o.ID, Kind: plan.Kind(), WorkflowID: o.ID, EnqueuedAt: now}}
	for _, n := range plan.Tasks() {
		node := plan.Nodes[n]
		metas = append(metas, backend.Meta{ID: node.TaskID, Kind: node.Sig.Kind, WorkflowID: o.ID, EnqueuedAt: now,
			Queue: c.queueFor(node.Sig)})
	}
	// The PENDING records and the first steps go out together: a record
	// written after its task started is a no-op (PENDING never overwrites).
	pw, err := c.be.StartPending(ctx, metas...)
	if err != nil {
		return wf, c.redisErr("submit workflow", err)
	}
	if !created {
		if _, err := pw.Wait(ctx); err != nil {
			return wf, c.redisErr("submit workflow", err)
		}
		if first.Dispatch, err = undispatched(ctx, c.be, first.Dispatch); err != nil {
			return wf, c.redisErr("submit workflow", err)
		}
	}
	// The first steps, or whatever an empty group at the start completes.
	end, derr := c.advance(ctx, plan, planJSON, first, c.defaultsFor, false)
	wf.end = end
	if _, err := pw.Wait(ctx); err != nil && derr == nil {
		derr = c.redisErr("submit workflow", err)
	}
	if derr != nil {
		// wf is returned with the error: Submit again with SubmitOpts{ID:
		// wf.ID} to finish dispatching (it is idempotent).
		return wf, derr
	}
	return wf, nil
}

func (c *Client) kinds() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.defs))
	for k := range c.defs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *Client) queueFor(s *Signature) string {
	if len(s.Options) > 0 {
		var eo EnqueueOpts
		if json.Unmarshal(s.Options, &eo) == nil && eo.Queue != "" {
			return eo.Queue
		}
	}
	return c.defaultsFor(s.Kind).Queue
}

// saveWorkflow stores the plan once, in one round trip; it reports false
// when the workflow existed already. The recent-workflows index is pruned
// of expired ids now and then, not on every submit.
func (c *Client) saveWorkflow(ctx context.Context, plan *chain.Plan, planJSON []byte, now time.Time) (bool, error) {
	key := backend.WorkflowKey(plan.Workflow)
	ttl := c.be.TTL()
	pipe := c.rdb.Pipeline()
	created := pipe.HSetNX(ctx, key, "plan", planJSON)
	pipe.HSetNX(ctx, key, "created", now.UnixMilli())
	pipe.HSetNX(ctx, key, "kind", plan.Kind())
	pipe.HSetNX(ctx, key, "tasks", len(plan.Tasks()))
	pipe.Expire(ctx, key, ttl)
	pipe.ZAdd(ctx, backend.WorkflowIndexKey, redis.Z{Score: float64(now.UnixMilli()), Member: plan.Workflow})
	pipe.Expire(ctx, backend.WorkflowIndexKey, ttl)
	if c.submits.Add(1)%64 == 1 {
		pipe.ZRemRangeByScore(ctx, backend.WorkflowIndexKey, "-inf", fmt.Sprint(now.Add(-ttl).UnixMilli()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, err
	}
	return created.Val(), nil
}

// countTasks counts the tasks of a valid canvas (callbacks aside: they
// run only on failure, outside the plan).
func countTasks(cv Canvas) int {
	switch n := cv.(type) {
	case *Signature:
		return 1
	case *chain.Chain:
		return countAll(n.Steps)
	case *chain.Group:
		return countAll(n.Members)
	case *chain.Chord:
		return countTasks(n.Header) + countTasks(n.Body)
	}
	return 0
}

func countAll(cs []Canvas) int {
	t := 0
	for _, c := range cs {
		t += countTasks(c)
	}
	return t
}

// canvasTooLarge is a canvas refused for its size: both an invalid canvas
// and a payload too large.
type canvasTooLarge struct{ msg string }

func (e *canvasTooLarge) Error() string { return "baton: invalid canvas: payload too large: " + e.msg }

func (e *canvasTooLarge) Is(target error) bool {
	return target == ErrInvalidCanvas || target == ErrPayloadTooLarge
}

// checkSizes refuses, before anything is written, a plan over
// MaxCanvasBytes and a step whose message (with its static args) is over
// MaxPayloadBytes: a later step's payload only grows with its input.
func (c *Client) checkSizes(plan *chain.Plan, planJSON []byte) error {
	if len(planJSON) > c.maxCanvasSize {
		return &canvasTooLarge{fmt.Sprintf("the canvas's plan encodes to %d bytes, over the limit of %d bytes (ClientOptions.MaxCanvasBytes; baton: BATON_MAX_CANVAS_BYTES or --max-canvas-bytes): pass large data by reference, split the canvas or raise the limit",
			len(planJSON), c.maxCanvasSize)}
	}
	tasks := plan.Tasks()
	ds := make([]chain.Dispatch, len(tasks))
	for i, n := range tasks {
		ds[i] = chain.Dispatch{Node: n, TaskID: plan.Nodes[n].TaskID, Sig: plan.Nodes[n].Sig, Args: plan.Nodes[n].Sig.Args}
	}
	msgs, err := c.stepMessages(plan, planJSON, ds, c.defaultsFor, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCanvas, err)
	}
	for i, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("baton: encode step %s: %w", m.ID, err)
		}
		if len(b) > c.maxSize {
			return &canvasTooLarge{fmt.Sprintf("step %s (%s, task %q) encodes to %d bytes, over the %d-byte limit (%s): pass large data by reference (a URL or key) instead",
				m.ID, plan.Position(ds[i].Node), m.Kind, len(b), c.maxSize, c.sizeSetting)}
		}
	}
	return nil
}

// inlinePlanMax: plans up to this size travel in every step's message, so
// workers need no read to hand a result on.
const inlinePlanMax = 4 << 10

// dispatch enqueues the given steps of a plan.
func (c *Client) dispatch(ctx context.Context, plan *chain.Plan, planJSON []byte, ds []chain.Dispatch, defaults func(string) TaskOptions) error {
	if len(ds) == 0 {
		return nil
	}
	msgs, err := c.stepMessages(plan, planJSON, ds, defaults, time.Now())
	if err != nil {
		return err
	}
	return c.sendAll(ctx, msgs)
}

// stepMessages builds the messages of the given steps of a plan.
func (c *Client) stepMessages(plan *chain.Plan, planJSON []byte, ds []chain.Dispatch, defaults func(string) TaskOptions, now time.Time) ([]*message, error) {
	msgs := make([]*message, len(ds))
	for i, d := range ds {
		var eo EnqueueOpts
		if len(d.Sig.Options) > 0 {
			if err := json.Unmarshal(d.Sig.Options, &eo); err != nil {
				return nil, fmt.Errorf("baton: step %s options: %w", d.TaskID, err)
			}
		}
		eo.ID = d.TaskID
		m, err := c.buildMessage(d.Sig.Kind, d.Args, defaults(d.Sig.Kind), &eo, now)
		if err != nil {
			return nil, err
		}
		m.Workflow, m.Node, m.Parent = plan.Workflow, d.Node, d.Parent
		if len(planJSON) <= inlinePlanMax {
			m.Plan = planJSON
		}
		msgs[i] = m
	}
	return msgs, nil
}

// sendAll sends messages, eight at a time for large fan-outs. The first
// error stops the others and is the one returned.
func (c *Client) sendAll(ctx context.Context, msgs []*message) error {
	c.carry(ctx, msgs)
	const par = 8
	if len(msgs) <= par {
		return c.send(ctx, msgs)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	started := 0
	for ; started < len(msgs) && gctx.Err() == nil; started++ {
		m := msgs[started : started+1]
		g.Go(func() error { return c.send(gctx, m) })
	}
	err := g.Wait()
	if err == nil && started < len(msgs) {
		err = ctx.Err() // the caller's context ended before every message was sent
	}
	return err
}

// Workflow returns a handle on a submitted workflow.
func (c *Client) Workflow(ctx context.Context, id string) (*Workflow, error) {
	plan, _, err := loadPlan(ctx, c.rdb, id)
	if err != nil {
		return nil, err
	}
	return &Workflow{ID: id, Plan: plan, c: c}, nil
}

func loadPlan(ctx context.Context, rdb redis.UniversalClient, id string) (*chain.Plan, []byte, error) {
	raw, err := rdb.HGet(ctx, backend.WorkflowKey(id), "plan").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("%w: workflow %s (never submitted, or expired)", ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("baton: load workflow %s: %w", id, err)
	}
	p, err := decodePlan(id, raw)
	return p, raw, err
}

// errCorruptPlan is wrapped by the error of a plan that does not decode or
// is not well formed.
var errCorruptPlan = errors.New("plan is corrupt")

// decodePlan decodes and verifies the plan of workflow id.
func decodePlan(id string, raw []byte) (*chain.Plan, error) {
	var p chain.Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("baton: workflow %s: %w: %w", id, errCorruptPlan, err)
	}
	if err := p.Verify(); err != nil {
		return nil, fmt.Errorf("baton: workflow %s: %w: %w", id, errCorruptPlan, err)
	}
	if p.Workflow != id {
		return nil, fmt.Errorf("baton: workflow %s: %w: it is the plan of workflow %s, not %s", id, errCorruptPlan, p.Workflow, id)
	}
	return &p, nil
}

// Wait blocks until the workflow ends; the record's Result is the final
// result. The error is a *TaskError naming the step that failed.
func (w *Workflow) Wait(ctx context.Context) (*Record, error) {
	r, err := w.c.be.WaitKnown(ctx, w.ID)
	return w.c.waitResult(w.ID, r, err)
}

// Get waits for the workflow and decodes its final result into out.
func (w *Workflow) Get(ctx context.Context, out any) error {
	r, err := w.Wait(ctx)
	if err != nil {
		return err
	}
	if out == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("baton: decode result of workflow %s into %T: %w", w.ID, out, err)
	}
	return nil
}

// Step is one task of a workflow with its current record.
type Step struct {
	Node     int
	Position string
	Record   *Record // nil when the record expired
}

// Steps returns every task of the workflow in plan order with its state.
func (w *Workflow) Steps(ctx context.Context) ([]Step, error) {
	nodes := w.Plan.Tasks()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = w.Plan.Nodes[n].TaskID
	}
	recs, err := w.c.be.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]Step, len(nodes))
	for i, n := range nodes {
		out[i] = Step{Node: n, Position: w.Plan.Position(n), Record: recs[i]}
	}
	return out, nil
}

// Compensation returns the id of the compensation workflow started when
// this one failed, or "" when none ran.
func (w *Workflow) Compensation(ctx context.Context) (string, error) {
	v, err := w.c.rdb.HGet(ctx, backend.WorkflowKey(w.ID), "compensation").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// Record returns the workflow's own record (state, final result, error).
func (w *Workflow) Record(ctx context.Context) (*Record, error) { return w.c.Get(ctx, w.ID) }

// Cancel cancels a workflow: steps not started never start (REVOKED), running
// steps have their context cancelled (best effort), waiters get an error
// wrapping ErrCancelled. Given the id of a durable run (or with durable runs
// among the steps) it cancels the run, its children and its waits too.
func (c *Client) Cancel(ctx context.Context, wfID string) error {
	if isRun, err := c.cancelDurable(ctx, wfID); isRun || err != nil {
		return err // a durable run: cancelled with its children and waits
	}
	plan, _, err := loadPlan(ctx, c.rdb, wfID)
	if err != nil {
		return err
	}
	reason := "cancelled: workflow " + wfID + " cancelled"
	if err := c.rdb.HSet(ctx, backend.WorkflowKey(wfID), "cancelled", "1", "cancel_reason", reason).Err(); err != nil {
		return c.redisErr("cancel "+wfID, err)
	}
	nodes := plan.Tasks()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = plan.Nodes[n].TaskID
	}
	recs, err := c.be.GetMany(ctx, ids)
	if err != nil {
		return c.redisErr("cancel "+wfID, err)
	}
	var outs []backend.Outcome
	for i, id := range ids {
		outs = append(outs, backend.Outcome{ID: id, State: Revoked, Error: reason, Reason: backend.ReasonCancelled})
		if recs[i] != nil && (recs[i].State == Started) {
			_ = c.cancelRunning(ctx, id)
		}
	}
	outs = append(outs, backend.Outcome{ID: wfID, State: Revoked, Error: reason, Reason: backend.ReasonCancelled})
	if _, err := c.be.FinishInOrder(ctx, outs...); err != nil {
		return c.redisErr("cancel "+wfID, err)
	}
	if err := c.cancelRunsOf(ctx, recs); err != nil {
		return err
	}
	return c.cancelReplacements(ctx, recs)
}

// cancelReplacements cancels the workflows that steps replaced themselves
// with (baton.Replace): they belong to the cancelled workflow.
func (c *Client) cancelReplacements(ctx context.Context, recs []*Record) error {
	for _, r := range recs {
		if r == nil || r.Replaced == "" {
			continue
		}
		if err := c.Cancel(ctx, r.Replaced); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// cancelRunning asks the worker running a task to cancel its context.
func (c *Client) cancelRunning(ctx context.Context, id string) error {
	return asynq.NewInspectorFromRedisClient(c.rdb).CancelProcessing(id)
}
