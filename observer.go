package baton

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// An Observer is told what clients and workers do: tasks enqueued and
// workflows submitted, every delivery of a task to a worker from its start
// to its outcome, retries, waits for a limit, workflows that end, and the
// LLM usage tasks report. Package metrics implements it with Prometheus,
// package tracing with OpenTelemetry; give them (or your own) to
// WorkerOptions.Observers and ClientOptions.Observers.
//
// Every implementation embeds BaseObserver, which does nothing for every
// event: override the methods you need. The interface gains methods as
// baton gains events, and BaseObserver keeps existing observers compiling
// (it is the only way to satisfy the interface's unexported method).
//
// Methods are called synchronously on the goroutine doing the work, from
// many goroutines at once: they must be safe for concurrent use and quick
// (hand slow work to a goroutine of your own). They cannot fail a task: they
// return no error, and a panic in one is recovered and logged. Event structs
// are passed by value and may gain fields.
//
// # Attempts
//
// TaskStarted and TaskFinished bracket one delivery of a task to a worker
// (an attempt), once each: TaskStarted when a valid message was received,
// before flow control, TaskFinished when the delivery is done, with the
// context TaskStarted returned and the attempt's Outcome. Between them come
// at most one TaskThrottled or RetryScheduled, and any number of
// WorkflowFinished (the attempt ended its workflow) and LLMUsed (reported by
// the handler through ObserveLLM).
//
// # Context
//
// The hooks that begin something (Enqueuing, Submitting, TaskStarted) return
// the context the work continues with, so an observer can put a span or a
// value in it; return ctx itself when there is nothing to add. The matching
// end (Enqueued, Submitted, TaskFinished) gets that context back.
type Observer interface {
	// Enqueuing is called when Client.Enqueue or EnqueueKind is about to
	// send a task (its id is known).
	Enqueuing(ctx context.Context, e EnqueueInfo) context.Context
	// Enqueued is called after it was sent, or failed with err.
	Enqueued(ctx context.Context, e EnqueueInfo, err error)
	// Submitting is called when Client.Submit begins, before the canvas is
	// checked.
	Submitting(ctx context.Context, e SubmitInfo) context.Context
	// Submitted is called when Submit returns, with its error. Tasks is set
	// when the canvas compiled.
	Submitted(ctx context.Context, e SubmitInfo, err error)

	// TaskStarted is called when a worker received a valid message of a
	// task, before flow control and the handler.
	TaskStarted(ctx context.Context, t TaskInfo) context.Context
	// TaskFinished is called once per TaskStarted, when the delivery is done.
	TaskFinished(ctx context.Context, t TaskInfo, e TaskEnd)
	// RetryScheduled is called when a failed attempt will be retried.
	RetryScheduled(ctx context.Context, t TaskInfo, r RetryInfo)
	// TaskThrottled is called when a delivery is sent back to wait for a
	// rate or concurrency limit (not a retry).
	TaskThrottled(ctx context.Context, t TaskInfo, th ThrottleInfo)
	// WorkflowFinished is called once per workflow, by the worker whose
	// attempt recorded its end.
	WorkflowFinished(ctx context.Context, e WorkflowEnd)
	// LLMUsed is called for every model request a task reports with
	// ObserveLLM.
	LLMUsed(ctx context.Context, u LLMUsage)

	observer()
}

// BaseObserver implements every Observer method as a no-op. Embed it in
// your observer and override what you need.
type BaseObserver struct{}

// Enqueuing implements Observer.
func (BaseObserver) Enqueuing(ctx context.Context, _ EnqueueInfo) context.Context { return ctx }

// Enqueued implements Observer.
func (BaseObserver) Enqueued(context.Context, EnqueueInfo, error) {}

// Submitting implements Observer.
func (BaseObserver) Submitting(ctx context.Context, _ SubmitInfo) context.Context { return ctx }

// Submitted implements Observer.
func (BaseObserver) Submitted(context.Context, SubmitInfo, error) {}

// TaskStarted implements Observer.
func (BaseObserver) TaskStarted(ctx context.Context, _ TaskInfo) context.Context { return ctx }

// TaskFinished implements Observer.
func (BaseObserver) TaskFinished(context.Context, TaskInfo, TaskEnd) {}

// RetryScheduled implements Observer.
func (BaseObserver) RetryScheduled(context.Context, TaskInfo, RetryInfo) {}

// TaskThrottled implements Observer.
func (BaseObserver) TaskThrottled(context.Context, TaskInfo, ThrottleInfo) {}

// WorkflowFinished implements Observer.
func (BaseObserver) WorkflowFinished(context.Context, WorkflowEnd) {}

// LLMUsed implements Observer.
func (BaseObserver) LLMUsed(context.Context, LLMUsage) {}

func (BaseObserver) observer() {}

// A Propagator carries context from where a task is enqueued to where it
// runs, in the task's message. An Observer that also implements Propagator
// is asked to Inject when a client or worker sends messages (the context is
// the one Enqueuing, Submitting or TaskStarted returned), and to Extract
// before TaskStarted on the worker. Package tracing carries the W3C trace
// context this way. Keys and values should be short: every message carries
// them.
type Propagator interface {
	Inject(ctx context.Context, carrier map[string]string)
	Extract(ctx context.Context, carrier map[string]string) context.Context
}

// Outcome is how an attempt, or a workflow, ended.
type Outcome string

// Outcomes. A workflow ends in success, failure or revoked.
const (
	// OutcomeSuccess: the handler succeeded and its result is recorded.
	OutcomeSuccess Outcome = "success"
	// OutcomeFailure: the task failed for good (a permanent error, retries
	// used up, an unknown kind).
	OutcomeFailure Outcome = "failure"
	// OutcomeRetry: the attempt failed and the task will run again after
	// its retry delay (see RetryScheduled).
	OutcomeRetry Outcome = "retry"
	// OutcomeRevoked: the task expired before it started, or its workflow
	// was cancelled.
	OutcomeRevoked Outcome = "revoked"
	// OutcomeThrottled: the delivery waits for a limit (see TaskThrottled);
	// it does not count as a retry.
	OutcomeThrottled Outcome = "throttled"
	// OutcomeReplaced: the handler replaced the task with a workflow
	// (Replace); the task ends when that workflow does.
	OutcomeReplaced Outcome = "replaced"
	// OutcomeSkipped: nothing ran: the task had ended already (a duplicate
	// delivery hands its stored outcome on) or a recovery copy replaced
	// this delivery.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeParked: a durable run parked to wait for its children, a timer
	// or an event (TaskEnd.Wait says which); it holds no slot meanwhile and
	// a later delivery resumes it.
	OutcomeParked Outcome = "parked"
	// OutcomeInterrupted: the worker shut down or Redis failed mid-way; the
	// delivery goes back to its queue without counting as a retry.
	OutcomeInterrupted Outcome = "interrupted"
)

// outcomeOf maps a terminal state to its outcome.
func outcomeOf(s State) Outcome {
	switch s {
	case Success:
		return OutcomeSuccess
	case Revoked:
		return OutcomeRevoked
	}
	return OutcomeFailure
}

// EnqueueInfo describes a task a client enqueues.
type EnqueueInfo struct {
	ID, Kind, Queue string
	// RunAt is when it may run (zero: at once).
	RunAt time.Time
}

// SubmitInfo describes a canvas a client submits.
type SubmitInfo struct {
	// ID is the workflow id.
	ID string
	// Kind is the canvas kind: chain, group, chord or task.
	Kind string
	// Tasks is the number of tasks of the canvas (0 in Submitting).
	Tasks int
}

// TaskEnd is how an attempt ended.
type TaskEnd struct {
	Outcome Outcome
	// Ran says the handler ran.
	Ran bool
	// Duration is how long the handler ran, up to when its outcome was
	// decided (for a success, recorded); 0 when it did not run.
	Duration time.Duration
	// Err is the handler's error, or what ended the task (failure,
	// revoked), or what interrupted it.
	Err error
	// Wait is what a parked durable run waits for: children, sleep, event
	// or retry (OutcomeParked only).
	Wait string
}

// RetryInfo is a retry scheduled after a failed attempt.
type RetryInfo struct {
	// Delay is the wait before the next attempt.
	Delay time.Duration
	// Err is the attempt's error.
	Err error
}

// ThrottleInfo is a wait for a flow-control limit.
type ThrottleInfo struct {
	// Limit is the limit's name.
	Limit string
	// Wait is how long until the task may run.
	Wait time.Duration
	// Err is the upstream refusal (RateLimited) that paused the limit, nil
	// when the limit itself was full.
	Err error
}

// WorkflowEnd is how a workflow ended.
type WorkflowEnd struct {
	ID string
	// Kind is the canvas kind: chain, group, chord or task.
	Kind string
	// Outcome is success, failure or revoked.
	Outcome Outcome
	// Error is the workflow's recorded error ("" on success).
	Error string
}

// LLMCache says whether a model request was answered from a cache.
type LLMCache string

// LLM cache results.
const (
	// LLMCacheHit: answered from the cache, no call made.
	LLMCacheHit LLMCache = "hit"
	// LLMCacheMiss: not in the cache; the model was called.
	LLMCacheMiss LLMCache = "miss"
)

// LLMUsage is one model request a task made (or answered from a cache).
type LLMUsage struct {
	Model                          string
	PromptTokens, CompletionTokens int
	// Cache is LLMCacheHit, LLMCacheMiss or "" (no cache looked at).
	Cache LLMCache
	// Duration is how long the call took (0 on a cache hit).
	Duration time.Duration
	// Err is the call's error.
	Err error
}

// ObserveLLM reports a model request of the running task to its worker's
// observers (the metrics observer counts tokens and cache look-ups). ctx is
// the handler's context, or one derived from it; outside a worker with
// observers it does nothing.
func ObserveLLM(ctx context.Context, u LLMUsage) {
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		a.obs.llmUsed(ctx, u)
	}
}

// observers is the set a client or worker calls. A nil *observers has none
// and costs a nil check.
type observers struct {
	list  []Observer
	props []Propagator
	log   *slog.Logger
}

func newObservers(list []Observer, log *slog.Logger) *observers {
	var set observers
	for _, o := range list {
		if o == nil {
			continue
		}
		set.list = append(set.list, o)
		if p, ok := o.(Propagator); ok {
			set.props = append(set.props, p)
		}
	}
	if len(set.list) == 0 {
		return nil
	}
	set.log = log
	return &set
}

// recovered logs an observer's panic instead of failing the task.
func (s *observers) recovered(event string) {
	if p := recover(); p != nil {
		s.log.Error("observer panicked; ignored", "event", event, "panic", fmt.Sprint(p))
	}
}

func (s *observers) enqueuing(ctx context.Context, e EnqueueInfo) context.Context {
	if s == nil {
		return ctx
	}
	for _, o := range s.list {
		ctx = s.begin(ctx, "Enqueuing", func(ctx context.Context) context.Context { return o.Enqueuing(ctx, e) })
	}
	return ctx
}

func (s *observers) enqueued(ctx context.Context, e EnqueueInfo, err error) {
	if s == nil {
		return
	}
	for _, o := range s.list {
		func() { defer s.recovered("Enqueued"); o.Enqueued(ctx, e, err) }()
	}
}

func (s *observers) submitting(ctx context.Context, e SubmitInfo) context.Context {
	for _, o := range s.list {
		ctx = s.begin(ctx, "Submitting", func(ctx context.Context) context.Context { return o.Submitting(ctx, e) })
	}
	return ctx
}

func (s *observers) submitted(ctx context.Context, e SubmitInfo, err error) {
	for _, o := range s.list {
		func() { defer s.recovered("Submitted"); o.Submitted(ctx, e, err) }()
	}
}

func (s *observers) taskStarted(ctx context.Context, t TaskInfo) context.Context {
	for _, o := range s.list {
		ctx = s.begin(ctx, "TaskStarted", func(ctx context.Context) context.Context { return o.TaskStarted(ctx, t) })
	}
	return ctx
}

func (s *observers) taskFinished(ctx context.Context, t TaskInfo, e TaskEnd) {
	for _, o := range s.list {
		func() { defer s.recovered("TaskFinished"); o.TaskFinished(ctx, t, e) }()
	}
}

func (s *observers) retryScheduled(ctx context.Context, t TaskInfo, r RetryInfo) {
	for _, o := range s.list {
		func() { defer s.recovered("RetryScheduled"); o.RetryScheduled(ctx, t, r) }()
	}
}

func (s *observers) taskThrottled(ctx context.Context, t TaskInfo, th ThrottleInfo) {
	for _, o := range s.list {
		func() { defer s.recovered("TaskThrottled"); o.TaskThrottled(ctx, t, th) }()
	}
}

func (s *observers) workflowFinished(ctx context.Context, e WorkflowEnd) {
	for _, o := range s.list {
		func() { defer s.recovered("WorkflowFinished"); o.WorkflowFinished(ctx, e) }()
	}
}

func (s *observers) llmUsed(ctx context.Context, u LLMUsage) {
	for _, o := range s.list {
		func() { defer s.recovered("LLMUsed"); o.LLMUsed(ctx, u) }()
	}
}

// begin calls a context-returning hook: a panic or a nil context keeps ctx.
func (s *observers) begin(ctx context.Context, event string, hook func(context.Context) context.Context) (out context.Context) {
	out = ctx
	defer s.recovered(event)
	if next := hook(ctx); next != nil {
		out = next
	}
	return out
}

// inject returns what the propagators carry for ctx (nil for nothing).
func (s *observers) inject(ctx context.Context) map[string]string {
	if s == nil || len(s.props) == 0 {
		return nil
	}
	carrier := map[string]string{}
	for _, p := range s.props {
		func() { defer s.recovered("Inject"); p.Inject(ctx, carrier) }()
	}
	if len(carrier) == 0 {
		return nil
	}
	return carrier
}

// extract gives the propagators a message's carrier.
func (s *observers) extract(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	for _, p := range s.props {
		ctx = s.begin(ctx, "Extract", func(ctx context.Context) context.Context { return p.Extract(ctx, carrier) })
	}
	return ctx
}

// attempt is one delivery as the observers see it, kept in the context of
// the delivery (only when there are observers).
type attempt struct {
	obs     *observers
	info    TaskInfo
	started time.Time // the handler's start
	end     TaskEnd
	decided bool
}

type attemptKey struct{}

// beginAttempt tells the observers a delivery of m started and returns the
// context the delivery continues with; the attempt is nil without
// observers.
func (w *Worker) beginAttempt(ctx context.Context, m *message, retried int) (context.Context, *attempt) {
	if w.obs == nil {
		return ctx, nil
	}
	a := &attempt{obs: w.obs, info: TaskInfo{ID: m.ID, Kind: m.Kind, Queue: m.Queue, WorkflowID: m.Workflow,
		ParentID: m.Parent, Retries: retried}}
	ctx = w.obs.extract(ctx, m.Trace)
	ctx = w.obs.taskStarted(ctx, a.info)
	return context.WithValue(ctx, attemptKey{}, a), a
}

// ran notes that the handler starts now, with its retry budget.
func (a *attempt) ran(start time.Time, maxRetries int) {
	if a == nil {
		return
	}
	a.started, a.end.Ran, a.info.MaxRetries = start, true, maxRetries
}

// decide sets the attempt's outcome; the first decision stands.
func (a *attempt) decide(o Outcome, err error) {
	if a.decided {
		return
	}
	a.decided = true
	a.end.Outcome, a.end.Err = o, err
	if a.end.Ran {
		a.end.Duration = time.Since(a.started)
	}
}

// finish tells the observers the delivery is done; *errp is what the
// delivery returns to asynq. An attempt nobody decided ended with nothing
// run (skipped) or was interrupted (an error).
func (a *attempt) finish(ctx context.Context, errp *error) {
	if a == nil {
		return
	}
	if !a.decided {
		if *errp == nil {
			a.decide(OutcomeSkipped, nil)
		} else {
			a.decide(OutcomeInterrupted, *errp)
		}
	}
	a.obs.taskFinished(ctx, a.info, a.end)
}

// attemptOf returns the running attempt of m in ctx, nil when there are no
// observers or ctx belongs to another task's delivery (a replaced task
// completed by its replacement's last step).
func (w *Worker) attemptOf(ctx context.Context, m *message) *attempt {
	if w.obs == nil {
		return nil
	}
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok && a.info.ID == m.ID {
		return a
	}
	return nil
}

// observeEnd decides the outcome of m's attempt.
func (w *Worker) observeEnd(ctx context.Context, m *message, o Outcome, err error) {
	if a := w.attemptOf(ctx, m); a != nil {
		a.decide(o, err)
	}
}

// observeParked decides that m's durable run parked, waiting for wait.
func (w *Worker) observeParked(ctx context.Context, m *message, wait string) {
	if a := w.attemptOf(ctx, m); a != nil {
		a.decide(OutcomeParked, nil)
		a.end.Wait = wait
	}
}

// observeRetry decides a retry and reports it.
func (w *Worker) observeRetry(ctx context.Context, m *message, delay time.Duration, err error) {
	if a := w.attemptOf(ctx, m); a != nil {
		a.decide(OutcomeRetry, err)
		w.obs.retryScheduled(ctx, a.info, RetryInfo{Delay: delay, Err: err})
	}
}

// observeThrottled decides a wait for limit and reports it.
func (w *Worker) observeThrottled(ctx context.Context, m *message, limit string, wait time.Duration, err error) {
	if a := w.attemptOf(ctx, m); a != nil {
		a.decide(OutcomeThrottled, err)
		w.obs.taskThrottled(ctx, a.info, ThrottleInfo{Limit: limit, Wait: wait, Err: err})
	}
}
