package asynqx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults and bounds of Options.
const (
	// BatchMaxDefault caps the tasks one dequeue round trip moves (asynq's
	// own forwarder moves at most 100 per script call, to keep scripts
	// short).
	BatchMaxDefault = 100
	// BufferAgeDefault is how long a dequeued task may wait in the buffer
	// for asynq's processor before it goes back to pending.
	BufferAgeDefault = time.Second
	// BufferAgeMax bounds BufferAge. baton's orphan recovery re-enqueues an
	// active task that no live asynq server has listed for 8 s, and a
	// started task is listed within one heartbeat (5 s): a buffered task
	// must start within 3 s of its dequeue; 2 s keeps a second of margin
	// for the heartbeat's own round trips.
	BufferAgeMax = 2 * time.Second
	// LingerDefault is how long the group commit waits for more
	// acknowledgements once it holds one: none. A single sender batches by
	// itself (what arrives while a pipeline is in flight goes in the next
	// one), and a linger measured no faster (see doc.go).
	LingerDefault = 0
	// GroupMaxDefault caps the calls in one group-commit pipeline.
	GroupMaxDefault = 256
)

// Options configure a Hook.
type Options struct {
	// Concurrency is the asynq server's Config.Concurrency. Required: the
	// batch size adapts to the slots it leaves free.
	Concurrency int
	// BatchMax caps the tasks one dequeue round trip moves. Defaults to
	// BatchMaxDefault; 1 dequeues one task per round trip, as asynq does.
	BatchMax int
	// BufferAge is how long a dequeued task may wait for asynq's processor
	// before it is given back to pending. Defaults to BufferAgeDefault; at
	// most BufferAgeMax.
	BufferAge time.Duration
	// Linger is how long the group commit waits for more acknowledgements
	// before it sends a pipeline. Defaults to LingerDefault (0); negative
	// turns group commit off (every acknowledgement is its own round trip).
	Linger time.Duration
	// GroupMax caps the calls in one group-commit pipeline. Defaults to
	// GroupMaxDefault.
	GroupMax int
	// Logger receives the hook's warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Concurrency < 1 {
		return o, fmt.Errorf("asynqx: Options.Concurrency %d: set it to the asynq server's Config.Concurrency (at least 1)", o.Concurrency)
	}
	if o.BatchMax < 0 || o.GroupMax < 0 || o.BufferAge < 0 {
		return o, errors.New("asynqx: Options.BatchMax, GroupMax and BufferAge must not be negative (0 picks the default)")
	}
	if o.BatchMax == 0 {
		o.BatchMax = BatchMaxDefault
	}
	if o.BufferAge == 0 {
		o.BufferAge = BufferAgeDefault
	}
	if o.BufferAge > BufferAgeMax {
		return o, fmt.Errorf("asynqx: Options.BufferAge %v is over %v: baton's orphan recovery would take a buffered task for a dead worker's; use 0 for the default (%v)", o.BufferAge, BufferAgeMax, BufferAgeDefault)
	}
	if o.GroupMax == 0 {
		o.GroupMax = GroupMaxDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Hook is a go-redis hook on the client of one asynq server. It answers
// asynq's dequeue from a batch (batched dequeue), sends asynq's
// acknowledgements in group commits, and answers asynq's acknowledgement of
// a task that Complete already acknowledged. See the package doc.
type Hook struct {
	rdb  redis.UniversalClient
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	closed   bool
	buffers  map[string][]buffered // per queue, the next to serve first
	nbuf     int
	expiry   *time.Timer // armed while anything is buffered
	running  map[string]runningTask
	lastBeat time.Time
	fused    map[string]bool // acknowledged by Complete, asynq's ack pending

	commit *committer // nil when group commit is off
	bg     sync.WaitGroup
	stats  counters
}

// runningTask is a task handed to asynq and not yet acknowledged.
type runningTask struct {
	queue string
	msg   string // as stored, decoded only by Complete
	at    time.Time
}

// New returns a Hook for the asynq server that will run with rdb and adds
// it to rdb. rdb must be that server's own client (give it to
// asynq.NewServerFromRedisClient and to nothing else that runs asynq's
// scripts): the hook counts the tasks it hands out against
// Options.Concurrency. Close it after the server's Shutdown.
func New(rdb redis.UniversalClient, opts Options) (*Hook, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Hook{
		rdb:     rdb,
		opts:    o,
		log:     o.Logger,
		buffers: map[string][]buffered{},
		running: map[string]runningTask{},
		fused:   map[string]bool{},
	}
	if o.Linger >= 0 {
		h.commit = newCommitter(rdb, o.Linger, o.GroupMax, &h.stats)
	}
	rdb.AddHook(h)
	return h, nil
}

// Close gives every buffered task back to pending, sends the
// acknowledgements still queued and stops the hook's goroutines. From then
// on the hook passes every command through (go-redis cannot remove a
// hook). Call it after the asynq server's Shutdown; it is safe to call
// more than once.
func (h *Hook) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	if h.expiry != nil {
		h.expiry.Stop()
		h.expiry = nil
	}
	all := h.buffers
	h.buffers = map[string][]buffered{}
	h.nbuf = 0
	h.mu.Unlock()
	err := h.giveBack(ctx, all)
	h.bg.Wait()
	if h.commit != nil {
		h.commit.close()
	}
	return err
}

func (h *Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook intercepts asynq's dequeue, acknowledgement and heartbeat
// scripts; everything else passes through.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c, ok := cmd.(*redis.Cmd)
		if !ok {
			return next(ctx, cmd)
		}
		call, ok := recognise(c.Args())
		if !ok {
			return next(ctx, cmd)
		}
		switch {
		case call.kind == kindDequeue:
			return h.dequeue(ctx, next, c, call)
		case call.kind.isAck():
			return h.ack(ctx, next, c, call)
		case call.kind == kindServerState:
			h.beat(call)
		}
		return next(ctx, cmd)
	}
}

// ack sends one of asynq's acknowledgements (done, retry, archive, …): in
// a group commit, or not at all when Complete already acknowledged the
// task.
func (h *Hook) ack(ctx context.Context, next redis.ProcessHook, cmd *redis.Cmd, call scriptCall) error {
	id := call.arg(1)
	h.stats.acks.Add(1)
	h.mu.Lock()
	local := h.fused[id]
	if local {
		delete(h.fused, id)
		delete(h.running, id)
	}
	h.mu.Unlock()
	if local {
		// The task left active in Complete's script, atomically with its
		// hand-off; asynq's own script would find it gone (NOT FOUND) and
		// its syncer would retry until the lease ran out.
		h.stats.localAcks.Add(1)
		cmd.SetVal("OK")
		return nil
	}
	err := h.send(ctx, next, cmd)
	h.mu.Lock()
	delete(h.running, id) // asynq frees the slot whatever the reply
	h.mu.Unlock()
	return err
}

// send runs cmd in a group commit, or through next when group commit is
// off or closed.
func (h *Hook) send(ctx context.Context, next redis.ProcessHook, cmd *redis.Cmd) error {
	if h.commit != nil {
		if val, ok, err := h.commit.do(ctx, cmd.Args(), nil); ok {
			cmd.SetVal(val)
			return err
		}
	}
	return next(ctx, cmd)
}

// beat sees asynq's heartbeat, which lists the ids of every task the
// server runs (ARGV[3], ARGV[5], …), and forgets tasks handed out before
// the previous heartbeat that are no longer listed: asynq dropped them
// without an acknowledgement (a lost lease), and their slots are free.
func (h *Hook) beat(call scriptCall) {
	listed := make(map[string]bool, len(call.argv)/2)
	for i := 3; i <= len(call.argv); i += 2 {
		listed[call.arg(i)] = true
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, t := range h.running {
		if t.at.Before(h.lastBeat) && !listed[id] {
			delete(h.running, id)
		}
	}
	for id := range h.fused {
		if _, ok := h.running[id]; !ok {
			delete(h.fused, id)
		}
	}
	h.lastBeat = now
}

// Stats are counters since New, for tests and benchmarks.
type Stats struct {
	Dequeues  int64 // asynq dequeue calls the hook answered
	Batches   int64 // batch dequeue scripts run (one round trip each)
	Moved     int64 // tasks those moved from pending to active
	GivenBack int64 // buffered tasks returned to pending
	Acks      int64 // asynq acknowledgements seen (done, retry, archive, …)
	LocalAcks int64 // of those, answered without Redis after Complete
	Groups    int64 // group-commit pipelines sent (one round trip each)
	Grouped   int64 // calls those pipelines carried
	Completes int64 // fused completions run
}

type counters struct {
	dequeues, batches, moved, givenBack, acks, localAcks, groups, grouped, completes atomic.Int64
}

// Stats returns the hook's counters.
func (h *Hook) Stats() Stats {
	s := &h.stats
	return Stats{
		Dequeues: s.dequeues.Load(), Batches: s.batches.Load(), Moved: s.moved.Load(), GivenBack: s.givenBack.Load(),
		Acks: s.acks.Load(), LocalAcks: s.localAcks.Load(), Groups: s.groups.Load(), Grouped: s.grouped.Load(),
		Completes: s.completes.Load(),
	}
}
