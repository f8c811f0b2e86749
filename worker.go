package baton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
	"github.com/batonhq/baton/internal/defaults"
)

// Worker defaults.
const (
	ConcurrencyDefault           = defaults.Concurrency
	ShutdownTimeoutDefault       = defaults.ShutdownTimeout
	WorkerMaxPayloadBytesDefault = defaults.WorkerMaxPayloadBytes
)

// WorkerOptions configure a Worker. The zero value is valid.
type WorkerOptions struct {
	// Concurrency is how many tasks run at once. Defaults to 10.
	Concurrency int
	// Queues to consume, with weights: {"default": 6, "llm": 3, "low": 1}
	// serves default 60% of the time when all have work. Defaults to
	// exactly that, the queues of `baton worker`: the fetch task runs on
	// default, the analyze task on llm.
	Queues map[string]int
	// StrictPriority serves a queue only when every heavier queue is empty.
	StrictPriority bool
	// ShutdownTimeout is how long Shutdown lets running tasks finish before
	// returning them to their queue. Defaults to 30s.
	ShutdownTimeout time.Duration
	// ResultTTL is how long records are kept. Defaults to 24h.
	ResultTTL time.Duration
	// Logger receives structured logs. Defaults to slog.Default().
	Logger *slog.Logger
	// RecoverInterval is how often the fleet looks for tasks orphaned by a
	// killed worker and re-enqueues them (see recover.go). Defaults to 3s;
	// a negative value turns it off (asynq's own 60–90 s recovery remains).
	RecoverInterval time.Duration
	// MaxPayloadBytes caps the messages the worker enqueues: the next steps
	// of workflows, whose payload is the previous step's result, and
	// callbacks. A next step over it fails its workflow at that step.
	// Defaults to WorkerMaxPayloadBytesDefault (512 MiB, Redis's own
	// default bulk limit, proto-max-bulk-len).
	MaxPayloadBytes int
	// PollInterval is the longest an idle worker waits before looking for
	// new tasks. Defaults to 1s. baton producers wake idle workers the
	// moment they enqueue (see wake.go), so this only bounds the delay for
	// tasks enqueued by other means.
	PollInterval time.Duration
	// LimitLease is how long a concurrency-limit slot outlives the last
	// renewal by its worker (renewed every third of it): a SIGKILLed
	// worker's slots are free again at most this long after the kill.
	// Defaults to LimitLeaseDefault (15s); at least 300ms.
	LimitLease time.Duration
	// MaxOperations and MaxRecordedBytes are the limits of durable runs
	// whose task does not set its own (TaskOptions). Default to
	// MaxOperationsDefault (10,000) and MaxRecordedBytesDefault (64 MiB).
	MaxOperations    int
	MaxRecordedBytes int
	// Observers are told of every delivery, retry, wait for a limit,
	// workflow end and LLM usage (see Observer), and of what the worker's
	// own client enqueues and submits. Package metrics and package tracing
	// implement Observer. Defaults to none, which costs nothing.
	Observers []Observer
}

// Worker runs registered tasks from Redis queues. Start as many as you like,
// in as many processes and machines as reach the same Redis.
type Worker struct {
	rdb    redis.UniversalClient
	client *Client
	be     *backend.Backend
	log    *slog.Logger
	opts   WorkerOptions

	mu   sync.RWMutex
	defs map[string]Definition

	plans planCache
	waker *waker

	stopRecover context.CancelFunc
	recoverDone chan struct{}
	heartbeats  stoppable // the heartbeat pass (heartbeat.go)
	srv         *asynq.Server
	stopping    atomic.Bool
	started     atomic.Bool

	// limits are the flow-control limits per kind, built at Start; a kind
	// without limits has no entry (and costs no Redis call).
	limits     map[string]*kindLimits
	stopLimits context.CancelFunc
	limitsDone chan struct{}
	timers     wakeTimers

	obs *observers // nil: none
}

// NewWorker returns a Worker on rdb, which the caller keeps ownership of.
func NewWorker(rdb redis.UniversalClient, opts *WorkerOptions) (*Worker, error) {
	var o WorkerOptions
	if opts != nil {
		o = *opts
	}
	if o.Concurrency < 0 {
		return nil, fmt.Errorf("baton: Concurrency %d is negative: use 0 for the default (%d)", o.Concurrency, ConcurrencyDefault)
	}
	if o.Concurrency == 0 {
		o.Concurrency = ConcurrencyDefault
	}
	if len(o.Queues) == 0 {
		o.Queues = defaults.Queues()
	}
	if err := defaults.CheckQueues(o.Queues); err != nil {
		return nil, fmt.Errorf("baton: WorkerOptions.Queues: %w", err)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.RecoverInterval == 0 {
		o.RecoverInterval = RecoverIntervalDefault
	}
	if o.MaxOperations < 0 || o.MaxRecordedBytes < 0 {
		return nil, fmt.Errorf("baton: MaxOperations %d / MaxRecordedBytes %d: limits of durable runs cannot be negative; use 0 for the defaults", o.MaxOperations, o.MaxRecordedBytes)
	}
	if o.LimitLease == 0 {
		o.LimitLease = LimitLeaseDefault
	}
	if o.LimitLease < 300*time.Millisecond {
		return nil, fmt.Errorf("baton: LimitLease %v is under 300ms: slots would expire between renewals; use 0 for the default (%v)", o.LimitLease, LimitLeaseDefault)
	}
	if err := orDefault("MaxPayloadBytes", &o.MaxPayloadBytes, WorkerMaxPayloadBytesDefault); err != nil {
		return nil, err
	}
	client, err := NewClient(rdb, &ClientOptions{ResultTTL: o.ResultTTL, MaxPayloadBytes: o.MaxPayloadBytes})
	if err != nil {
		return nil, err
	}
	client.sizeSetting = "WorkerOptions.MaxPayloadBytes"
	client.obs = newObservers(o.Observers, o.Logger)
	return &Worker{
		rdb:    rdb,
		client: client,
		be:     client.be,
		log:    o.Logger,
		opts:   o,
		defs:   map[string]Definition{},
		obs:    client.obs,
	}, nil
}

// Register adds task definitions. Register before Start.
func (w *Worker) Register(defs ...Definition) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range defs {
		if !d.hasHandler() {
			return fmt.Errorf("baton: register %q: the task was defined without a handler", d.Kind())
		}
		if _, dup := w.defs[d.Kind()]; dup {
			return fmt.Errorf("baton: register %q: kind registered twice", d.Kind())
		}
		w.defs[d.Kind()] = d
	}
	w.client.Declare(defs...)
	return nil
}

// Kinds lists the registered kinds, sorted.
func (w *Worker) Kinds() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]string, 0, len(w.defs))
	for k := range w.defs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Client is the worker's own client (for enqueuing from inside tasks).
func (w *Worker) Client() *Client { return w.client }

func (w *Worker) def(kind string) Definition {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.defs[kind]
}

// Start begins consuming queues in background goroutines.
func (w *Worker) Start() error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("baton: worker already started")
	}
	w.mu.RLock()
	w.limits = buildLimits(w.defs)
	w.mu.RUnlock()
	if len(w.limits) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		w.stopLimits = cancel
		w.limitsDone = make(chan struct{})
		go func() { defer close(w.limitsDone); w.publishLoop(ctx) }()
	}
	aqRedis, poll := w.rdb, w.opts.PollInterval
	if wk := newWaker(w.rdb, w.opts.Queues, w.opts.PollInterval); wk != nil {
		w.waker = wk
		wk.start()
		aqRedis, poll = wk.rdb, wakePollInterval
	}
	w.srv = asynq.NewServerFromRedisClient(aqRedis, asynq.Config{
		Concurrency:              w.opts.Concurrency,
		Queues:                   w.opts.Queues,
		StrictPriority:           w.opts.StrictPriority,
		ShutdownTimeout:          w.opts.ShutdownTimeout,
		TaskCheckInterval:        poll,
		DelayedTaskCheckInterval: 250 * time.Millisecond,
		RetryDelayFunc:           retryDelay,
		IsFailure:                isFailure,
		Logger:                   asynqLogger{w.log},
		LogLevel:                 asynq.WarnLevel,
	})
	if err := w.srv.Start(asynq.HandlerFunc(w.process)); err != nil {
		return fmt.Errorf("baton: start worker: redis at %s: %w", redisAddr(w.rdb), err)
	}
	if w.opts.RecoverInterval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		w.stopRecover = cancel
		w.recoverDone = make(chan struct{})
		go func() { defer close(w.recoverDone); w.recoverLoop(ctx) }()
	}
	if w.usesHeartbeats() {
		w.heartbeats.start(w.heartbeatLoop)
	}
	w.log.Info("worker started", "concurrency", w.opts.Concurrency, "queues", w.opts.Queues, "kinds", w.Kinds())
	return nil
}

// Shutdown stops taking tasks, lets running ones finish within
// ShutdownTimeout, returns the rest to their queues, and releases resources.
func (w *Worker) Shutdown() {
	if !w.stopping.CompareAndSwap(false, true) {
		return // already shut down
	}
	if w.stopRecover != nil {
		w.stopRecover()
		<-w.recoverDone
	}
	if w.stopLimits != nil {
		w.stopLimits()
		<-w.limitsDone
	}
	w.heartbeats.stop()
	if w.waker != nil {
		w.waker.once.Do(func() { close(w.waker.quit) }) // no more long polls
	}
	if w.srv != nil {
		w.srv.Shutdown()
	}
	w.timers.stop() // throttled deliveries come back on asynq's schedule
	if w.waker != nil {
		w.waker.stop()
	}
	_ = w.client.Close()
	w.log.Info("worker stopped")
}

// Run starts the worker and blocks until ctx is done, then shuts down
// gracefully.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Shutdown()
	return nil
}

// scheduledRetry carries the delay baton chose (and recorded) for the next
// attempt to asynq's RetryDelayFunc.
type scheduledRetry struct {
	err   error
	delay time.Duration
}

func (e *scheduledRetry) Error() string { return e.err.Error() }
func (e *scheduledRetry) Unwrap() error { return e.err }

// errInfra is a Redis problem around a task, not the task's failure: it does
// not consume a retry.
type errInfra struct{ err error }

func (e *errInfra) Error() string { return e.err.Error() }
func (e *errInfra) Unwrap() error { return e.err }

func retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var s *scheduledRetry
	if errors.As(err, &s) {
		return s.delay
	}
	if t, ok := isThrottled(err); ok {
		return t.delay
	}
	if errors.Is(err, asynq.ErrLeaseExpired) {
		return 0 // a crashed worker's task: run it again at once
	}
	var inf *errInfra
	if errors.As(err, &inf) {
		return time.Second
	}
	return RetryPolicy{}.DelayFor(n)
}

// isFailure: a lease expiry (worker crash), a Redis hiccup or a wait for a
// limit does not count against the task's retries.
func isFailure(err error) bool {
	var inf *errInfra
	_, throttled := isThrottled(err)
	return !errors.Is(err, asynq.ErrLeaseExpired) && !errors.As(err, &inf) && !throttled
}

func (m *message) meta() backend.Meta {
	meta := backend.Meta{ID: m.ID, Kind: m.Kind, Queue: m.Queue, ParentID: m.Parent, WorkflowID: m.Workflow,
		EnqueuedAt: time.UnixMilli(m.EnqueuedMS)}
	if m.RunAtMS > 0 {
		meta.RunAt = time.UnixMilli(m.RunAtMS)
	}
	return meta
}

// process is the asynq handler: the whole life of one delivery.
func (w *Worker) process(ctx context.Context, t *asynq.Task) (err error) {
	m, err := decodeMessage(t.Payload())
	if err != nil {
		id, _ := asynq.GetTaskID(ctx)
		w.log.Error("undecodable task", "id", id, "type", t.Type(), "err", err)
		_, _ = w.be.Finish(ctx, backend.Outcome{ID: id, State: Failure, Error: err.Error(), Payload: safePayload(t.Payload()),
			Meta: &backend.Meta{ID: id, Kind: t.Type()}})
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	asynqMax, _ := asynq.GetMaxRetry(ctx)
	log := w.log.With("task", m.ID, "kind", m.Kind)
	if m.Workflow != "" {
		log = log.With("workflow", m.Workflow)
	}
	if err := w.check(ctx, m); err != nil {
		var inf *errInfra
		if errors.As(err, &inf) {
			log.Warn("could not read the workflow plan; will retry", "err", err)
			return err
		}
		return w.reject(ctx, log, m, t.Payload(), err)
	}
	meta := m.meta()
	ctx, at := w.beginAttempt(ctx, m, retried)
	defer func() { at.finish(ctx, &err) }()

	// asynq schedules in whole seconds and may deliver up to a second
	// early: never start before the time the caller asked for.
	if err := waitUntil(ctx, time.UnixMilli(m.RunAtMS)); err != nil {
		return err
	}
	// Flow control (limit_exec.go): a kind without limits makes no call; an
	// expired task is not charged (it is revoked below).
	var adm *admission
	if kl := w.limits[m.Kind]; kl != nil && (m.ExpiresMS == 0 || time.Now().Before(m.expires())) {
		if adm, err = w.admit(ctx, kl, m, retried); err != nil {
			return err
		}
		defer adm.release()
		ctx = context.WithValue(ctx, admissionKey{}, adm)
	}
	delivery, _ := asynq.GetTaskID(ctx)
	st, err := w.startDelivery(ctx, m, backend.StartRequest{Meta: meta, Retries: retried, CheckCancel: m.Workflow != "", DeliveryID: delivery})
	if err != nil {
		log.Warn("could not record start; will retry", "err", err)
		return &errInfra{err}
	}
	switch st.State {
	case backend.Superseded:
		// A recovery copy replaced this delivery after its worker died.
		log.Info("delivery superseded by a recovery copy; dropping it", "delivery", delivery)
		return nil
	case Success:
		// Delivered again after its success was recorded (a crash before the
		// ack, or a duplicate): never run it again, just hand the result on.
		log.Info("already succeeded; handing on stored result")
		return w.afterSuccess(ctx, m, st.Result, true)
	case Failure, Revoked:
		log.Info("already finished", "state", st.State)
		return w.afterFailure(ctx, m, st)
	case backend.Replaced:
		// Its handler replaced it with a workflow, which ends it.
		log.Info("already replaced; the replacement ends it", "replacement", st.Replaced)
		return nil
	case backend.Stale:
		// Another delivery of the durable run claimed it (durable.go).
		log.Debug("stale delivery of a durable run; dropping it", "delivery", delivery, "resume_gen", m.RG)
		return nil
	case backend.Parked:
		return w.rewake(ctx, log, m, st)
	}
	retried = max(retried, st.Retries) // a recovery copy or a resume restarts asynq's count

	if err := waitUntil(ctx, st.NextTry); err != nil { // nor before a retry's recorded time
		return err
	}

	def := w.def(m.Kind)
	if def == nil {
		msg := fmt.Sprintf("unknown task kind %q: no worker on queue %q registers it (this worker has %s); register the task or fix the kind", m.Kind, m.Queue, strings.Join(w.Kinds(), ", "))
		return w.fail(ctx, log, m, retried, Failure, "", msg, true)
	}
	if exp := m.expires(); !exp.IsZero() && time.Now().After(exp) {
		msg := fmt.Sprintf("expired: not started by %s", exp.UTC().Format(time.RFC3339Nano))
		return w.fail(ctx, log, m, retried, Revoked, "", msg, false)
	}
	opts := def.Options()
	maxRetries := opts.MaxRetries
	if m.MaxRetries != nil {
		maxRetries = *m.MaxRetries
	}
	timeout := opts.Timeout
	if m.TimeoutMS > 0 {
		timeout = m.timeout()
	}

	if err := adm.waitStart(ctx); err != nil { // a limit's admitted time, < 100 ms away
		return err
	}
	start := time.Now()
	at.ran(start, maxRetries)
	hctx, ex, err := w.prepare(withTaskInfo(ctx, m, retried, maxRetries), def, m, st, delivery)
	if err != nil {
		return err
	}
	res, herr := w.invoke(hctx, def, m, timeout)
	if done, err := w.settle(ctx, log, m, ex, retried, &herr); done {
		return err
	}
	if rp := (*replaceError)(nil); errors.As(herr, &rp) {
		return w.replace(ctx, log, m, retried, rp.canvas, start)
	}
	if herr == nil {
		return w.succeed(ctx, log, m, retried, res, start)
	}
	if w.stopping.Load() && ctx.Err() != nil {
		// Shutdown cut the attempt short; asynq puts the task back.
		return ctx.Err()
	}
	if ctx.Err() != nil && w.cancelled(m) {
		return w.fail(ctx, log, m, retried, Revoked, backend.ReasonCancelled, "cancelled: workflow cancelled while running", false)
	}
	var ae *argsError
	if errors.As(herr, &ae) && m.Workflow != "" {
		herr = Permanent(w.mismatchError(ctx, m, ae))
	}
	if d, ok := rateLimitedDelay(herr); ok && adm != nil && len(adm.rates) > 0 {
		if err := w.pauseLimits(ctx, log, adm, m, herr, d); err != nil {
			return err
		}
	}
	final := IsPermanent(herr) || retried >= maxRetries || (asynqMax > 0 && retried >= asynqMax)
	if final {
		msg := herr.Error()
		if !IsPermanent(herr) && maxRetries > 0 {
			msg = fmt.Sprintf("%s (gave up after %d attempts)", msg, retried+1)
		}
		w.observeEnd(ctx, m, OutcomeFailure, herr)
		log.Warn("task failed", "attempt", retried+1, "err", herr)
		return w.fail(ctx, log, m, retried, Failure, "", msg, true)
	}
	delay, ok := RetryAfterDelay(herr)
	if !ok {
		policy := opts.RetryDelay
		if m.Retry != nil {
			policy = m.Retry
		}
		if policy == nil {
			policy = &RetryPolicy{}
		}
		delay = policy.DelayFor(retried)
	}
	w.observeRetry(ctx, m, delay, herr)
	next := time.Now().Add(delay)
	log.Info("task will retry", "attempt", retried+1, "max_retries", maxRetries, "in", delay, "err", herr)
	if _, err := w.be.Finish(ctx, backend.Outcome{ID: m.ID, State: Retry, Error: herr.Error(), Retries: retried + 1, NextTry: next, Meta: &meta}); err != nil {
		log.Warn("could not record retry", "err", err)
	}
	return &scheduledRetry{err: herr, delay: delay}
}

// check runs checkMessage with the workflow's plan: a plan that is gone
// or corrupt makes the message invalid, a Redis error is an errInfra.
func (w *Worker) check(ctx context.Context, m *message) error {
	var plan *chain.Plan
	if m.Workflow != "" {
		p, _, err := w.plan(ctx, m)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("workflow %s: its plan is not in Redis (never submitted, or expired)", m.Workflow)
		case errors.Is(err, errCorruptPlan):
			return err
		case err != nil:
			return &errInfra{err}
		}
		plan = p
	}
	return checkMessage(m, plan)
}

// reject fails a message that can never run, once: FAILURE with what is
// wrong, the whole payload kept for inspection, archived by asynq. Nothing
// of the message is used beyond its id, kind and queue.
func (w *Worker) reject(ctx context.Context, log *slog.Logger, m *message, payload []byte, why error) error {
	msg := fmt.Sprintf("invalid task message: %s; not run and not retried (was it enqueued by another program or another version of baton?)",
		strings.ReplaceAll(why.Error(), "\n", "; "))
	log.Error("invalid task message", "err", why)
	meta := &backend.Meta{ID: m.ID, Kind: m.Kind, Queue: m.Queue, WorkflowID: m.Workflow, EnqueuedAt: time.UnixMilli(m.EnqueuedMS)}
	if _, err := w.be.Finish(ctx, backend.Outcome{ID: m.ID, State: Failure, Error: msg, Payload: safePayload(payload), Meta: meta}); err != nil {
		return &errInfra{err}
	}
	return fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
}

// succeed records a SUCCESS and moves the workflow on. The last step of a
// workflow and the workflow itself succeed in one atomic call. When an
// overlapping delivery recorded the step first, its stored outcome is the
// one handed on.
func (w *Worker) succeed(ctx context.Context, log *slog.Logger, m *message, retried int, res []byte, start time.Time) error {
	meta := m.meta()
	outs := []backend.Outcome{{ID: m.ID, State: Success, Result: res, Retries: retried, Meta: &meta}}
	var final *chain.Plan
	if m.Workflow != "" {
		// (unless links are to run first: they are enqueued before the end)
		if plan, _, err := w.plan(ctx, m); err == nil && m.Node < len(plan.Nodes) && plan.IsFinal(m.Node) && !plan.LinksOnPath(m.Node) {
			final = plan
			outs = append(outs, backend.Outcome{ID: m.Workflow, State: Success, Result: res})
		}
	}
	sts, err := w.be.FinishChain(ctx, outs...)
	if err != nil {
		// The handler ran but its result is not stored: run it again
		// (at most once more per such failure) rather than lose it.
		log.Warn("could not record success; will run again", "err", err)
		return &errInfra{err}
	}
	w.observeEnd(ctx, m, OutcomeSuccess, nil)
	log.Debug("task succeeded", "duration", time.Since(start))
	if !sts[0].Written {
		return w.afterRecorded(ctx, m, sts[0])
	}
	if final != nil {
		return w.workflowEnded(ctx, final, endOf(m.Workflow, sts[1]))
	}
	return w.afterSuccess(ctx, m, res, false)
}

// fail records a final FAILURE or REVOKED (with reason, e.g.
// backend.ReasonCancelled), propagates it through the workflow, and tells
// asynq not to retry (archive keeps failures visible).
func (w *Worker) fail(ctx context.Context, log *slog.Logger, m *message, retried int, state State, reason, msg string, archive bool) error {
	meta := m.meta()
	out := backend.Outcome{ID: m.ID, State: state, Error: msg, Reason: reason, Retries: retried, Meta: &meta}
	if state == Failure {
		out.Payload = safePayload(m.Args)
	}
	st, err := w.be.Finish(ctx, out)
	if err != nil {
		log.Warn("could not record failure; will retry", "err", err)
		return &errInfra{err}
	}
	if w.obs != nil {
		w.observeEnd(ctx, m, outcomeOf(state), errors.New(msg))
	}
	if err := w.afterFailure(ctx, m, st); err != nil {
		return err
	}
	if archive {
		return fmt.Errorf("%s: %w", msg, asynq.SkipRetry)
	}
	return nil
}

func safePayload(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > 64<<10 {
		b = b[:64<<10]
	}
	return b
}

const callbackTimeout = 5 * time.Second

// invoke runs the handler with its timeout, turning a panic into an error.
// A handler that ignores its context is abandoned at the deadline.
func (w *Worker) invoke(ctx context.Context, def Definition, m *message, timeout time.Duration) (res []byte, err error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type outcome struct {
		res []byte
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if p := recover(); p != nil {
				stack := debug.Stack()
				w.log.Error("task panicked", "task", m.ID, "kind", m.Kind, "panic", p, "stack", string(stack))
				o = outcome{err: fmt.Errorf("panic: %v", p)}
			}
			done <- o
		}()
		o.res, o.err = def.invoke(tctx, m.Args)
	}()
	select {
	case o := <-done:
		if o.err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			return nil, fmt.Errorf("timed out after %v: %w", timeout, o.err)
		}
		return o.res, o.err
	case <-tctx.Done():
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("timed out after %v (the handler did not return; it was abandoned)", timeout)
	}
}

type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}

// mismatchError explains a chained step whose input does not fit its args.
func (w *Worker) mismatchError(ctx context.Context, m *message, ae *argsError) error {
	pos := fmt.Sprintf("step %s", m.ID)
	if plan, _, err := w.plan(ctx, m); err == nil && m.Node < len(plan.Nodes) {
		pos = fmt.Sprintf("%s (%s, %s)", pos, plan.Position(m.Node), plan.Kind())
	}
	from := "its static args"
	if m.Parent != "" {
		from = "the result of " + m.Parent
	}
	return fmt.Errorf("workflow %s, %s, task %q: %s (a JSON %s) does not decode into %s: %v; not retried",
		m.Workflow, pos, m.Kind, from, jsonKind(m.Args), ae.typ, ae.err)
}

func jsonKind(raw []byte) string {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return "object"
		case '[':
			return "array"
		case '"':
			return "string"
		case 't', 'f':
			return "boolean"
		case 'n':
			return "null"
		default:
			return "number"
		}
	}
	return "empty value"
}

// maxEarly is how early asynq may deliver a task by itself: it schedules
// in whole seconds (a second early at most), and clocks of producers and
// workers may differ by a little more.
const maxEarly = 3 * time.Second

// waitUntil sleeps until t, or until ctx ends, when the task came up to
// maxEarly before it. A task that comes earlier than that was run early on
// purpose (asynqmon's Run, asynq's Inspector.RunTask, batontest's
// fast-forward) and runs at once.
func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if t.IsZero() || d <= 0 || d > maxEarly {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// afterRecorded moves the workflow on from what the backend holds for a
// step, when an overlapping delivery recorded it first: the stored result is
// the one handed on, never this delivery's.
func (w *Worker) afterRecorded(ctx context.Context, m *message, st backend.Status) error {
	if st.State == Success {
		return w.afterSuccess(ctx, m, st.Result, true)
	}
	return w.afterFailure(ctx, m, st)
}
