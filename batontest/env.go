package batontest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
)

// RedisURLEnv names the environment variable that points every Env without
// Options.RedisURL at a real Redis.
const RedisURLEnv = "BATONTEST_REDIS_URL"

// DrainTimeoutDefault bounds Drain when its context has no deadline, and
// DrainUntilIdle and RunCanvas.
const DrainTimeoutDefault = 10 * time.Second

// Options configure an Env. The zero value is valid: an embedded Redis and
// a worker with the defaults below.
type Options struct {
	// RedisURL is a real Redis for the Env (redis://host:port/db), which
	// the Env may empty: see "Real Redis" in the package doc. Defaults to
	// $BATONTEST_REDIS_URL; when both are empty the Env runs an embedded
	// in-memory Redis (miniredis).
	RedisURL string
	// Worker configures the worker that runs the registered tasks during
	// Drain. Fields left zero default as in baton.NewWorker, except:
	// Queues defaults to every queue that holds a task or is named by a
	// registered task (and "default"), grown while draining when a task
	// lands on a new queue; Logger to the test's log (t.Log), at warn
	// level; PollInterval to 10ms; ShutdownTimeout to 5s; RecoverInterval
	// to off (an Env's worker is never killed). Set Queues to drain only
	// those queues.
	Worker *baton.WorkerOptions
	// Client configures the Env's Client (and ResultTTL the worker's).
	Client *baton.ClientOptions
	// FastForward makes Drain run scheduled tasks (Countdown, ETA) and
	// retries at once instead of at their time, so a test of a task that
	// retries after a minute does not wait a minute. Off by default: a task
	// scheduled for later is not due and Drain returns without running it.
	// Rate and concurrency limits still hold: a task over one runs when it
	// frees, in real time.
	FastForward bool
	// DrainTimeout bounds DrainUntilIdle, RunCanvas and a Drain whose
	// context has no deadline. Defaults to DrainTimeoutDefault (10s).
	DrainTimeout time.Duration
}

// Env is a Redis, a Client and a worker for the tasks registered on it: the
// place a test enqueues tasks and workflows, drains them and asserts on
// the outcome. Its worker runs only inside Drain, DrainUntilIdle and
// RunCanvas, so between them every enqueued task stays where it is, for
// RequireEnqueued.
//
// Methods are safe for concurrent use; drains run one at a time.
type Env struct {
	tb     testing.TB // nil for an Env from Open
	opts   Options
	rdb    *redis.Client
	redis  io.Closer // the embedded server or the database lease
	client *baton.Client
	insp   *asynq.Inspector

	mu     sync.Mutex // serialises drains, Register and Close
	defs   []baton.Definition
	kinds  map[string]bool
	closed bool
}

// New returns an Env for tb, closed when tb's test ends (t.Cleanup): the
// worker is stopped, the Redis emptied and closed, and no goroutine is left.
// It stops the test when the Redis cannot be reached or opts are invalid.
func New(tb testing.TB, opts *Options) *Env {
	tb.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Worker == nil || o.Worker.Logger == nil {
		w := baton.WorkerOptions{}
		if o.Worker != nil {
			w = *o.Worker
		}
		w.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		o.Worker = &w
	}
	e, err := open(tb.Context(), &o)
	if err != nil {
		tb.Fatalf("batontest: %v", err)
	}
	e.tb = tb
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("batontest: %v", err)
		}
	})
	return e
}

// Open returns an Env outside a test: one shared by a package's tests from
// TestMain, or in an example. Close it when done. New is the form for a
// single test.
func Open(ctx context.Context, opts *Options) (*Env, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	return open(ctx, &o)
}

func open(ctx context.Context, o *Options) (*Env, error) {
	if o.DrainTimeout < 0 {
		return nil, fmt.Errorf("Options.DrainTimeout %v is negative: use 0 for the default (%v)", o.DrainTimeout, DrainTimeoutDefault)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DrainTimeoutDefault
	}
	w := baton.WorkerOptions{}
	if o.Worker != nil {
		w = *o.Worker
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.PollInterval == 0 {
		w.PollInterval = 10 * time.Millisecond
	}
	if w.ShutdownTimeout == 0 {
		w.ShutdownTimeout = 5 * time.Second
	}
	if w.RecoverInterval == 0 {
		w.RecoverInterval = -1
	}
	var c baton.ClientOptions
	if o.Client != nil {
		c = *o.Client
	}
	if w.ResultTTL == 0 {
		w.ResultTTL = c.ResultTTL
	}
	o.Worker, o.Client = &w, &c

	url := o.RedisURL
	if url == "" {
		url = os.Getenv(RedisURLEnv)
	}
	var (
		rdb    *redis.Client
		closer io.Closer
		err    error
	)
	if url == "" {
		var s *embeddedServer
		rdb, s, err = embedded()
		closer = s
	} else {
		var l *dbLease
		rdb, l, err = lease(ctx, url)
		closer = l
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Env, error) {
		_ = rdb.Close()
		_ = closer.Close()
		return nil, err
	}
	client, err := baton.NewClient(rdb, &c)
	if err != nil {
		return fail(fmt.Errorf("Options.Client: %w", err))
	}
	// The worker's options are checked now rather than at the first drain.
	scratch, err := baton.NewWorker(rdb, &w)
	if err != nil {
		_ = client.Close()
		return fail(fmt.Errorf("Options.Worker: %w", err))
	}
	scratch.Shutdown()
	return &Env{
		opts:   *o,
		rdb:    rdb,
		redis:  closer,
		client: client,
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		kinds:  map[string]bool{},
	}, nil
}

// Client is the Env's client: enqueue and submit with it, read records
// and wait on handles. Tasks registered on the Env are declared on it.
func (e *Env) Client() *baton.Client { return e.client }

// Redis is the Env's Redis connection, for code under test that takes one
// (it is closed with the Env).
func (e *Env) Redis() redis.UniversalClient { return e.rdb }

// Register adds task definitions for the worker to run (and declares them
// on the Env's client, for EnqueueKind and JSON canvases). A task
// registered after a drain runs from the next one. A definition the worker
// would refuse (a kind registered twice, a task without a handler) stops
// the test, or panics for an Env from Open: definitions are program
// constants.
func (e *Env) Register(defs ...baton.Definition) {
	if e.tb != nil {
		e.tb.Helper()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.register(defs); err != nil {
		if e.tb != nil {
			e.tb.Fatalf("batontest: %v", err)
		}
		panic("batontest: " + err.Error())
	}
}

func (e *Env) register(defs []baton.Definition) error {
	if e.closed {
		return errClosed
	}
	all := append(append([]baton.Definition{}, e.defs...), defs...)
	// The worker's own checks, on a worker that never starts.
	scratch, err := baton.NewWorker(e.rdb, &baton.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer scratch.Shutdown()
	if err := scratch.Register(all...); err != nil {
		return err
	}
	e.defs = all
	for _, d := range defs {
		e.kinds[d.Kind()] = true
	}
	e.client.Declare(defs...)
	return nil
}

var errClosed = errors.New("the Env is closed")

// Close empties and closes the Env's Redis and stops everything it
// started. New's cleanup calls it; calling it again does nothing.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	return errors.Join(e.client.Close(), e.rdb.Close(), e.redis.Close())
}

// tbWriter sends the worker's log lines to the test's log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
