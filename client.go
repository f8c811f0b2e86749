package baton

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/backend"
)

// Record is what the result backend keeps about a task.
type Record = backend.Record

// ClientOptions configure a Client. The zero value is valid.
type ClientOptions struct {
	// ResultTTL is how long task records are kept, at least 1s. Defaults
	// to 24h.
	ResultTTL time.Duration
	// MaxPayloadBytes caps a task's encoded message, each message of a
	// canvas included. Defaults to MaxPayloadBytesDefault (1 MiB). Pass
	// large data by reference.
	MaxPayloadBytes int
	// MaxCanvasTasks caps the tasks of one canvas (Submit), checked before
	// anything is written. Defaults to MaxCanvasTasksDefault (100,000).
	MaxCanvasTasks int
	// MaxCanvasBytes caps the encoded plan of one canvas (Submit), which
	// Redis keeps with the workflow, checked before anything is written.
	// Defaults to MaxCanvasBytesDefault (64 MiB).
	MaxCanvasBytes int
	// Observers are told of the tasks enqueued and workflows submitted
	// (see Observer); a Propagator among them carries its context in the
	// messages. Defaults to none.
	Observers []Observer
}

// orDefault sets *v to def when it is 0 and rejects a negative value.
func orDefault(name string, v *int, def int) error {
	if *v < 0 {
		return fmt.Errorf("baton: %s %d is negative: use 0 for the default (%d)", name, *v, def)
	}
	if *v == 0 {
		*v = def
	}
	return nil
}

// asynqTimeout is the attempt deadline given to asynq. baton enforces each
// task's own Timeout itself (so a timeout is recorded and retried by baton's
// policy); asynq's only has to be later.
const asynqTimeout = 24 * time.Hour

// asynqMaxRetryUnknown is asynq's retry budget for a task whose MaxRetries
// the producer does not know; the worker stops at its registered MaxRetries.
const asynqMaxRetryUnknown = 1000

// Client enqueues tasks and workflows and reads or waits for their results.
// It is safe for concurrent use; share one per process.
type Client struct {
	rdb           redis.UniversalClient
	aq            *asynq.Client
	be            *backend.Backend
	maxSize       int
	sizeSetting   string // the option that set maxSize, for errors
	maxTasks      int    // per canvas
	maxCanvasSize int    // encoded plan

	mu   sync.RWMutex
	defs map[string]TaskOptions

	submits atomic.Uint64

	obs *observers // nil: none
}

// NewClient returns a Client on rdb, which the caller keeps ownership of.
func NewClient(rdb redis.UniversalClient, opts *ClientOptions) (*Client, error) {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if err := errors.Join(orDefault("MaxPayloadBytes", &o.MaxPayloadBytes, MaxPayloadBytesDefault),
		orDefault("MaxCanvasTasks", &o.MaxCanvasTasks, MaxCanvasTasksDefault),
		orDefault("MaxCanvasBytes", &o.MaxCanvasBytes, MaxCanvasBytesDefault)); err != nil {
		return nil, err
	}
	be, err := backend.New(rdb, backend.Options{ResultTTL: o.ResultTTL})
	if err != nil {
		return nil, err
	}
	return &Client{
		rdb:           rdb,
		aq:            asynq.NewClientFromRedisClient(rdb),
		be:            be,
		maxSize:       o.MaxPayloadBytes,
		sizeSetting:   "ClientOptions.MaxPayloadBytes",
		maxTasks:      o.MaxCanvasTasks,
		maxCanvasSize: o.MaxCanvasBytes,
		defs:          map[string]TaskOptions{},
		obs:           newObservers(o.Observers, slog.Default()),
	}, nil
}

// Close stops the client's background work. The Redis client stays open
// (the asynq client shares it, so there is nothing else to close).
func (c *Client) Close() error {
	return c.be.Close()
}

// Backend is the result backend the client reads and writes.
func (c *Client) Backend() *backend.Backend { return c.be }

// Redis is the client's Redis connection.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// Declare tells the client the registered defaults of tasks it enqueues by
// kind (EnqueueKind, JSON canvases), so they route to the right queue.
func (c *Client) Declare(defs ...Definition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range defs {
		c.defs[d.Kind()] = d.Options()
	}
}

func (c *Client) defaultsFor(kind string) TaskOptions {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if o, ok := c.defs[kind]; ok {
		return o
	}
	return TaskOptions{}.withDefaults()
}

// EnqueueKind submits a task by kind with JSON arguments (a json.RawMessage
// is sent as is; any other value is encoded). Defaults come from Declare, or
// from the worker's registration for MaxRetries, RetryDelay and Timeout.
func (c *Client) EnqueueKind(ctx context.Context, kind string, args any, opts *EnqueueOpts) (*Handle, error) {
	if kind == "" {
		return nil, errors.New("baton: enqueue: empty task kind")
	}
	if err := checkEnqueueID(kind, opts); err != nil {
		return nil, err
	}
	raw, err := toRaw(args)
	if err != nil {
		return nil, fmt.Errorf("baton: enqueue %s: %w", kind, err)
	}
	c.mu.RLock()
	def, known := c.defs[kind]
	c.mu.RUnlock()
	if !known {
		// Leave retries, delay and timeout to the worker's registration.
		return c.enqueue(ctx, kind, raw, TaskOptions{Queue: QueueDefault}, opts)
	}
	return c.enqueue(ctx, kind, raw, def, opts)
}

func toRaw(args any) (json.RawMessage, error) {
	switch a := args.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if len(a) > 0 && !json.Valid(a) {
			return nil, errors.New("args are not valid JSON")
		}
		return a, nil
	case []byte:
		if len(a) > 0 && !json.Valid(a) {
			return nil, errors.New("args are not valid JSON")
		}
		return json.RawMessage(a), nil
	default:
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("encode args %T: %w", args, err)
		}
		return b, nil
	}
}

// buildMessage resolves defaults and overrides into the wire message.
func (c *Client) buildMessage(kind string, raw json.RawMessage, def TaskOptions, opts *EnqueueOpts, now time.Time) (*message, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrInvalidOptions, kind, err)
	}
	var o EnqueueOpts
	if opts != nil {
		o = *opts
	}
	m := &message{V: messageVersion, ID: o.ID, Kind: kind, Args: raw, Queue: def.Queue, EnqueuedMS: now.UnixMilli()}
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.Queue == "" {
		m.Queue = QueueDefault
	}
	if o.Queue != "" {
		m.Queue = o.Queue
	}
	// Only overrides travel in the message: the worker applies its own
	// registered defaults (so BATON_FETCH_RETRY_DELAY set on workers wins).
	// The producer's idea of MaxRetries only sizes asynq's retry budget.
	if def.RetryDelay != nil {
		m.asynqMax = def.MaxRetries + 1
	}
	if o.MaxRetries != nil {
		m.asynqMax = *o.MaxRetries + 1
		mr := *o.MaxRetries
		m.MaxRetries = &mr
	}
	if o.RetryDelay != nil {
		m.Retry = o.RetryDelay
	}
	if o.Timeout > 0 {
		m.TimeoutMS = o.Timeout.Milliseconds()
	}
	m.LimitKey = o.LimitKey
	switch {
	case !o.ETA.IsZero():
		m.RunAtMS = o.ETA.UnixMilli()
	case o.Countdown > 0:
		m.RunAtMS = now.Add(o.Countdown).UnixMilli()
	}
	switch {
	case !o.Expires.IsZero():
		m.ExpiresMS = o.Expires.UnixMilli()
	case o.ExpiresIn > 0:
		m.ExpiresMS = now.Add(o.ExpiresIn).UnixMilli()
	}
	return m, nil
}

func (c *Client) enqueue(ctx context.Context, kind string, raw json.RawMessage, def TaskOptions, opts *EnqueueOpts) (*Handle, error) {
	now := time.Now()
	m, err := c.buildMessage(kind, raw, def, opts, now)
	if err != nil {
		return nil, err
	}
	send := c.send
	if opts != nil && opts.ID != "" {
		send = c.sendOnce // a caller-chosen id may be a duplicate submission
	}
	info := EnqueueInfo{ID: m.ID, Kind: kind, Queue: m.Queue}
	if m.RunAtMS > 0 {
		info.RunAt = time.UnixMilli(m.RunAtMS)
	}
	ctx = c.obs.enqueuing(ctx, info)
	err = send(ctx, []*message{m})
	c.obs.enqueued(ctx, info, err)
	if err != nil {
		return nil, err
	}
	return &Handle{ID: m.ID, Kind: kind, Queue: m.Queue, c: c}, nil
}

// sendOnce sends a message only if its id is new to the backend: a task id
// that was submitted before (even to another queue, even if it finished) is
// not queued again. It costs a round trip before the enqueue.
func (c *Client) sendOnce(ctx context.Context, msgs []*message) error {
	m := msgs[0]
	c.carry(ctx, msgs)
	payload, err := c.encode(m)
	if err != nil {
		return err
	}
	pw, err := c.be.StartPending(ctx, m.meta())
	if err != nil {
		return c.redisErr("enqueue", err)
	}
	created, err := pw.Wait(ctx)
	if err != nil {
		return c.redisErr("enqueue", err)
	}
	if !created[0] {
		// A known id is idempotent, unless it belongs to another kind of
		// task: then the caller would get a handle on someone else's.
		if k := pw.ExistingKind(0); k != "" && k != m.Kind {
			return fmt.Errorf("%w for %s: task id %q is taken by a task of kind %q: choose another id", ErrInvalidOptions, m.Kind, m.ID, k)
		}
		return nil
	}
	if err := c.enqueueOne(ctx, m, payload); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = c.be.Delete(cctx, m.ID)
		cancel()
		return c.redisErr("enqueue "+m.Kind, err)
	}
	if m.RunAtMS == 0 {
		c.be.Wake(m.Queue)
	}
	return nil
}

// send hands messages to asynq. No backend write happens here: until a
// worker records STARTED, a task's PENDING state is read from the queue
// itself (see Get), which keeps an enqueue at one Redis round trip.
// Workflow steps got their PENDING records at Submit.
func (c *Client) send(ctx context.Context, msgs []*message) error {
	c.carry(ctx, msgs)
	for _, m := range msgs {
		b, err := c.encode(m)
		if err != nil {
			return err
		}
		if err := c.enqueueOne(ctx, m, b); err != nil {
			return c.redisErr("enqueue "+m.Kind, err)
		}
		if m.RunAtMS == 0 {
			c.be.Wake(m.Queue)
		}
	}
	return nil
}

// carry gives messages that carry nothing yet what the observers'
// propagators carry for ctx.
func (c *Client) carry(ctx context.Context, msgs []*message) {
	if c.obs == nil || len(c.obs.props) == 0 {
		return
	}
	var tc map[string]string
	for _, m := range msgs {
		if m.Trace != nil {
			continue
		}
		if tc == nil {
			if tc = c.obs.inject(ctx); tc == nil {
				return // nothing to carry
			}
		}
		m.Trace = tc
	}
}

// encode encodes m and enforces the client's size limit.
func (c *Client) encode(m *message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("baton: enqueue %s: encode message: %w", m.Kind, err)
	}
	if len(b) > c.maxSize {
		return nil, fmt.Errorf("%w: task %s (%s) encodes to %d bytes, over the %d-byte limit (%s): pass large data by reference (a URL or key) instead", ErrPayloadTooLarge, m.ID, m.Kind, len(b), c.maxSize, c.sizeSetting)
	}
	return b, nil
}

func (c *Client) enqueueOne(ctx context.Context, m *message, payload []byte) error {
	aopts := []asynq.Option{asynq.TaskID(m.ID), asynq.Queue(m.Queue), asynq.Timeout(asynqTimeout)}
	maxRetry := m.asynqMax
	if maxRetry == 0 {
		maxRetry = asynqMaxRetryUnknown
	}
	aopts = append(aopts, asynq.MaxRetry(maxRetry))
	if m.RunAtMS > 0 {
		aopts = append(aopts, asynq.ProcessAt(time.UnixMilli(m.RunAtMS)))
	}
	_, err := c.aq.EnqueueContext(ctx, asynq.NewTask(m.Kind, payload), aopts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil // already queued under this id: enqueue is idempotent
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// asynq keeps only the text of a script's error: say that the
		// caller's context ended, so errors.Is finds it.
		return fmt.Errorf("%v: %w", err, ctx.Err())
	}
	return err
}

// redisErr names the Redis address in connection errors.
func (c *Client) redisErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrPayloadTooLarge) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("baton: %s: %w", op, err)
	}
	return fmt.Errorf("baton: %s: redis at %s: %w", op, redisAddr(c.rdb), err)
}

func redisAddr(rdb redis.UniversalClient) string {
	switch r := rdb.(type) {
	case *redis.Client:
		if a := r.Options().Addr; a != failoverClientAddr {
			return a
		}
		return "the master named by Sentinel"
	case *redis.ClusterClient:
		return "cluster " + fmt.Sprint(r.Options().Addrs)
	}
	return "(unknown address)"
}

// failoverClientAddr is the address go-redis puts in the options of a
// Sentinel failover client (redis.NewFailoverClient, a redis-sentinel://
// REDIS_URL): it dials whatever master the sentinels name.
const failoverClientAddr = "FailoverClient"

// Get returns the record of a task: ErrNotFound for an unknown id. A task
// that no worker has started yet has no backend record; it is PENDING as
// long as it sits in a queue, and Get reads it from there.
func (c *Client) Get(ctx context.Context, id string) (*Record, error) {
	r, err := c.be.Get(ctx, id)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, backend.ErrNotFound) {
		return nil, c.redisErr("get "+id, err)
	}
	if r, qerr := c.queued(ctx, id); qerr == nil && r != nil {
		return r, nil
	} else if qerr != nil {
		return nil, c.redisErr("get "+id, qerr)
	}
	// Between the first read and the queue scan a worker may have run the
	// task to its end (record written, queue entry acknowledged): read the
	// record once more before calling the id unknown.
	r, err = c.be.Get(ctx, id)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, backend.ErrNotFound) {
		return nil, c.redisErr("get "+id, err)
	}
	return nil, fmt.Errorf("%w: %s (never enqueued, or its record expired)", ErrNotFound, id)
}

// queued looks for a not-yet-started task in asynq's queues and describes
// it as PENDING; nil when no queue holds it.
func (c *Client) queued(ctx context.Context, id string) (*Record, error) {
	insp := asynq.NewInspectorFromRedisClient(c.rdb)
	queues, err := insp.Queues()
	if err != nil {
		return nil, err
	}
	for _, q := range queues {
		ti, err := insp.GetTaskInfo(q, id)
		if err != nil {
			if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			return nil, err
		}
		m, err := decodeMessage(ti.Payload)
		if err != nil {
			return nil, nil // not a baton task
		}
		r := &Record{ID: id, Kind: m.Kind, Queue: q, State: Pending, ParentID: m.Parent, WorkflowID: m.Workflow,
			EnqueuedAt: time.UnixMilli(m.EnqueuedMS), Retries: ti.Retried}
		if ti.State == asynq.TaskStateActive {
			r.State = Started // delivered; the worker is recording it
		}
		if ti.State == asynq.TaskStateRetry {
			r.State, r.NextTryAt, r.Error = Retry, ti.NextProcessAt, ti.LastErr
		}
		return r, nil
	}
	return nil, nil
}

// Wait blocks until task id ends and returns its record. The error is a
// *TaskError for FAILURE and REVOKED, ErrNotFound for an unknown id, or
// ctx's error when it ends first.
func (c *Client) Wait(ctx context.Context, id string) (*Record, error) {
	r, err := c.Get(ctx, id)
	if err != nil {
		return nil, err // unknown id, or Redis trouble
	}
	if r.State.Terminal() {
		return r, recordErr(r)
	}
	r, err = c.be.WaitKnown(ctx, id)
	return c.waitResult(id, r, err)
}

func (c *Client) waitResult(id string, r *Record, err error) (*Record, error) {
	if err != nil {
		if errors.Is(err, backend.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s (never enqueued, or its record expired)", ErrNotFound, id)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("baton: wait for %s: %w", id, err)
		}
		return nil, c.redisErr("wait for "+id, err)
	}
	return r, recordErr(r)
}

// recordErr is the error a terminal record stands for, nil for SUCCESS.
func recordErr(r *Record) error {
	switch r.State {
	case Success:
		return nil
	case Failure, Revoked:
		te := &TaskError{ID: r.ID, Kind: r.Kind, State: r.State, Message: r.Error}
		if r.State == Revoked {
			te.cause = ErrRevoked
			if r.Reason == backend.ReasonCancelled {
				te.cause = errors.Join(ErrRevoked, ErrCancelled)
			}
		}
		return te
	}
	return nil
}
