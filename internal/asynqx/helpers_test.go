package asynqx

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// waitLimit bounds every wait on a condition.
const waitLimit = 20 * time.Second

// bundle is one test's Redis: a plain client to look with, and the
// worker's client with the hook and, inside it, a wire recorder.
type bundle struct {
	srv    *redistest.Server
	rdb    *redis.Client // no hook
	worker *redis.Client // the hook, then the wire recorder
	hook   *Hook
	wire   *wire
	insp   *asynq.Inspector
}

func setup(t *testing.T, opts Options) *bundle {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	b := &bundle{srv: srv, rdb: srv.Client(t, 0), wire: &wire{}}
	b.worker = redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 32})
	h, err := New(b.worker, opts)
	require.NoError(t, err)
	b.hook = h
	b.worker.AddHook(b.wire) // after the hook: sees only what reaches Redis
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	t.Cleanup(func() {
		require.NoError(t, h.Close(context.Background()))
		_ = b.worker.Close()
	})
	return b
}

// server starts an asynq server on the worker's client.
func (b *bundle) server(t *testing.T, conc int, queues map[string]int, h asynq.HandlerFunc) (*asynq.Server, *asynqLog) {
	t.Helper()
	return startServer(t, b.worker, conc, queues, h)
}

func startServer(t *testing.T, rdb redis.UniversalClient, conc int, queues map[string]int, h asynq.HandlerFunc) (*asynq.Server, *asynqLog) {
	t.Helper()
	lg := &asynqLog{}
	if queues == nil {
		queues = map[string]int{"default": 1}
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              conc,
		Queues:                   queues,
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout:          2 * time.Second,
		Logger:                   lg,
		LogLevel:                 asynq.WarnLevel,
	})
	require.NoError(t, srv.Start(h))
	t.Cleanup(srv.Shutdown) // a second Shutdown is a no-op
	return srv, lg
}

// enqueue puts n tasks of type typ on queue q with asynq's own client and
// returns their ids in enqueue order.
func (b *bundle) enqueue(t *testing.T, q, typ string, n int) []string {
	t.Helper()
	c := asynq.NewClientFromRedisClient(b.rdb)
	ids := make([]string, n)
	for i := range n {
		info, err := c.Enqueue(asynq.NewTask(typ, fmt.Appendf(nil, "payload %d", i)), asynq.Queue(q))
		require.NoError(t, err)
		ids[i] = info.ID
	}
	return ids
}

// asynqLog records what asynq logs at Warn and above.
type asynqLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *asynqLog) add(level string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+": "+fmt.Sprint(args...))
}

func (l *asynqLog) Debug(args ...any) {}
func (l *asynqLog) Info(args ...any)  {}
func (l *asynqLog) Warn(args ...any)  { l.add("warn", args...) }
func (l *asynqLog) Error(args ...any) { l.add("error", args...) }
func (l *asynqLog) Fatal(args ...any) { l.add("fatal", args...) }

func (l *asynqLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// wire is a go-redis hook that records what reaches Redis: round trips
// (a command or a pipeline each), the asynq scripts sent by kind and task
// id (ARGV[1]), and every EVALSHA with its time.
type wire struct {
	mu      sync.Mutex
	trips   int
	evals   int // EVAL commands (scripts sent with their text)
	scripts map[scriptKind][]string
	calls   []recorded
}

type recorded struct {
	args []any
	at   time.Time
}

func (w *wire) note(cmds ...redis.Cmder) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trips++
	if w.scripts == nil {
		w.scripts = map[scriptKind][]string{}
	}
	for _, c := range cmds {
		switch c.Name() {
		case "eval":
			w.evals++
		case "evalsha":
			w.calls = append(w.calls, recorded{args: c.Args(), at: time.Now()})
		}
		if call, ok := recognise(c.Args()); ok {
			w.scripts[call.kind] = append(w.scripts[call.kind], call.arg(1))
		}
	}
}

func (w *wire) DialHook(next redis.DialHook) redis.DialHook { return next }
func (w *wire) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		w.note(cmd)
		return next(ctx, cmd)
	}
}
func (w *wire) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		w.note(cmds...)
		return next(ctx, cmds)
	}
}

// sent lists the task ids of the asynq scripts of kind k that reached Redis.
func (w *wire) sent(k scriptKind) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.scripts[k]...)
}

func (w *wire) roundTrips() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trips
}

func (w *wire) evalCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evals
}

func (w *wire) snapshot() []recorded {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recorded(nil), w.calls...)
}
