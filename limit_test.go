package baton_test

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// startLog records when each handler run started, by key.
type startLog struct {
	mu     sync.Mutex
	starts map[string][]time.Time
	infos  []baton.TaskInfo
}

func newStartLog() *startLog { return &startLog{starts: map[string][]time.Time{}} }

func (l *startLog) add(ctx context.Context, key string) {
	info, _ := baton.InfoFrom(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts[key] = append(l.starts[key], time.Now())
	l.infos = append(l.infos, info)
}

func (l *startLog) get(key string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]time.Time(nil), l.starts[key]...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// maxInWindow is the most starts within any window of length w.
// startSlack is how late a start may be after its admission in these
// tests. Admissions are exact (atomic in Redis); a start comes when the
// worker's goroutine runs, which on a loaded 2-core machine can be tens of
// milliseconds later, and late starts can bunch (README "Flow control",
// best effort). Windows are therefore checked at W − startSlack: a limiter
// that admitted more than Rate×W/Per + Burst still fails.
const startSlack = 100 * time.Millisecond

func maxInWindow(ts []time.Time, w time.Duration) int {
	best := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

type keyed struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func enqueueN(t *testing.T, ctx context.Context, b *bundle, task *baton.Task[keyed, int], key string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		h, err := task.Enqueue(ctx, b.client, keyed{Key: key, N: i}, nil)
		require.NoError(t, err)
		ids[i] = h.ID
	}
	return ids
}

// TestRateLimitSpreadsStartsAndKeepsRetries: 30 tasks under 10/s on a
// worker of concurrency 10: the starts are spread (no 1 s window holds more
// than rate + burst), every task succeeds, and waiting never counted as a
// retry: the handler saw 0 retries and the records say 0 retries.
func TestRateLimitSpreadsStartsAndKeepsRetries(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	log := newStartLog()
	task := baton.NewTask("rl.spread", func(ctx context.Context, a keyed) (int, error) {
		log.add(ctx, "")
		return a.N, nil
	}, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 10, Per: time.Second}}})
	b.startWorker(t, nil, task)

	ids := enqueueN(t, ctx, b, task, "", 30)
	throttled := 0
	for i, id := range ids {
		r, err := b.client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, baton.Success, r.State)
		require.Equal(t, 0, r.Retries, "task %d: waiting for the limit is not a retry", i)
		require.Empty(t, r.Throttled, "throttle fields are cleared when the task starts")
		if r.Throttles > 0 {
			throttled++
		}
	}
	starts := log.get("")
	require.Len(t, starts, 30)
	require.LessOrEqual(t, maxInWindow(starts, time.Second-startSlack), 11, "10/s burst 1: at most 11 starts in any second (less the start slack)")
	span := starts[len(starts)-1].Sub(starts[0])
	require.GreaterOrEqual(t, span, 2800*time.Millisecond, "30 starts at 10/s take 2.9 s")
	require.Greater(t, throttled, 10, "most tasks waited (were rescheduled) at least once")
	for _, info := range log.infos {
		require.Equal(t, 0, info.Retries, "asynq's retry count did not move while the task waited")
	}
}

// TestRateLimitPerKeyIndependent: two key values of one per-key limit
// (2/s each) proceed side by side.
func TestRateLimitPerKeyIndependent(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	log := newStartLog()
	task := baton.NewTask("rl.perkey", func(ctx context.Context, a keyed) (int, error) {
		log.add(ctx, a.Key)
		return a.N, nil
	}, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 2, Per: time.Second,
		Key: baton.KeyBy(func(a keyed) string { return a.Key })}}})
	b.startWorker(t, nil, task)

	ids := append(enqueueN(t, ctx, b, task, "a.example", 5), enqueueN(t, ctx, b, task, "b.example", 5)...)
	for _, id := range ids {
		_, err := b.client.Wait(ctx, id)
		require.NoError(t, err)
	}
	a, bb := log.get("a.example"), log.get("b.example")
	require.Len(t, a, 5)
	require.Len(t, bb, 5)
	for _, ts := range [][]time.Time{a, bb} {
		require.LessOrEqual(t, maxInWindow(ts, time.Second-startSlack), 3, "2/s burst 1 per key")
		require.GreaterOrEqual(t, ts[4].Sub(ts[0]), 1900*time.Millisecond)
	}
	// Side by side: each key's schedule is its own, so both finish in
	// about 2 s, not one after the other in 4.5 s.
	require.Less(t, a[0].Sub(bb[0]).Abs(), 700*time.Millisecond)
	require.Less(t, a[4].Sub(bb[4]).Abs(), 700*time.Millisecond)
}

// TestLimitKeyOverride: EnqueueOpts.LimitKey replaces the computed key.
func TestLimitKeyOverride(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	log := newStartLog()
	task := baton.NewTask("rl.override", func(ctx context.Context, a keyed) (int, error) {
		log.add(ctx, a.Key)
		return a.N, nil
	}, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Hour,
		Key: baton.KeyBy(func(a keyed) string { return a.Key })}}})
	b.startWorker(t, nil, task)
	// One per hour per key: the second task of key "x" could not run, but
	// under its own LimitKey it runs at once.
	h1, err := task.Enqueue(ctx, b.client, keyed{Key: "x"}, nil)
	require.NoError(t, err)
	_, err = h1.Get(ctx)
	require.NoError(t, err)
	h2, err := task.Enqueue(ctx, b.client, keyed{Key: "x", N: 1}, &baton.EnqueueOpts{LimitKey: "tenant-2"})
	require.NoError(t, err)
	n, err := h2.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	keys, err := b.rdb.ZRange(ctx, backend.RateKeysKey("rl.override"), 0, -1).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"x", "tenant-2"}, keys)
}

// TestConcurrencyLimitWakesOneWaiter: max 2 across two workers of
// concurrency 5: never more than 2 run, and a finishing task hands its slot
// on at once (6 tasks of 300 ms take ~1 s, not the 7.5 s fallback).
func TestConcurrencyLimitWakesOneWaiter(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	var running, peak atomic.Int32
	task := baton.NewTask("cl.hold", func(ctx context.Context, a keyed) (int, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
		return a.N, nil
	}, &baton.TaskOptions{ConcurrencyLimits: []baton.ConcurrencyLimit{{Max: 2}}})
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 5}, task)
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 5}, task)

	start := time.Now()
	ids := enqueueN(t, ctx, b, task, "", 6)
	for _, id := range ids {
		r, err := b.client.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 0, r.Retries)
	}
	took := time.Since(start)
	require.LessOrEqual(t, peak.Load(), int32(2), "never more than Max running")
	require.Equal(t, int32(2), peak.Load())
	require.Less(t, took, 4*time.Second, "freed slots wake waiters at once (took %v)", took)
}

// commandLog counts the commands a client sends, pipelines included.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (c *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}
func (c *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *commandLog) add(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cmds = append(c.cmds, strings.ToLower(strings.TrimSpace(strings.Trim(strings.Join(strings.Fields(fmtArgs(cmd.Args())), " "), "[]"))))
}

func fmtArgs(args []any) string {
	var b strings.Builder
	for _, a := range args {
		if s, ok := a.(string); ok {
			b.WriteString(s + " ")
		}
	}
	return b.String()
}

func (c *commandLog) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.cmds...)
}

// TestNoLimitNoRedisCall: a worker whose kinds have no limits sends no
// flow-control command at all (every command its Redis client sends is
// logged, pipelines included), while a limited kind does.
func TestNoLimitNoRedisCall(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	hooked := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = hooked.Close() })
	cl := &commandLog{}
	hooked.AddHook(cl)
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := ctxTimeout(t, 30*time.Second)

	free := baton.NewTask("nl.free", func(_ context.Context, n int) (int, error) { return n, nil }, nil)
	limited := baton.NewTask("nl.limited", func(_ context.Context, n int) (int, error) { return n, nil },
		&baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1000, Per: time.Second, Burst: 1000}}})
	w, err := baton.NewWorker(hooked, &baton.WorkerOptions{Logger: quietLogger(), PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, w.Register(free, limited))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)

	limitCmds := func() (n int) {
		for _, s := range cl.snapshot() {
			if strings.HasPrefix(s, "evalsha") && (strings.Contains(s, "baton:rate:") || strings.Contains(s, "baton:conc:")) {
				n++
			}
		}
		return n
	}
	for i := range 20 {
		h, err := free.Enqueue(ctx, c, i, nil)
		require.NoError(t, err)
		_, err = h.Get(ctx)
		require.NoError(t, err)
	}
	require.Zero(t, limitCmds(), "20 tasks of a kind without limits sent no flow-control command")
	h, err := limited.Enqueue(ctx, c, 1, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, limitCmds(), "one task of a limited kind: one rate check")
}

// TestRedeliveredReservationNotChargedTwice: a delivery sent away with a
// reservation, then delivered again (here a second asynq copy of the same
// message, as orphan recovery makes), comes back to its reservation: the
// allowance is charged once, so the next task's slot is not pushed later.
func TestRedeliveredReservationNotChargedTwice(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	log := newStartLog()
	task := baton.NewTask("rl.redeliver", func(ctx context.Context, a keyed) (int, error) {
		log.add(ctx, "")
		return a.N, nil
	}, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: 2 * time.Second}}})
	b.startWorker(t, nil, task)

	first, err := task.Enqueue(ctx, b.client, keyed{N: 0}, nil)
	require.NoError(t, err)
	second, err := task.Enqueue(ctx, b.client, keyed{N: 1}, nil)
	require.NoError(t, err)
	// One of the two runs at once, the other waits for its reserved slot
	// (which one is up to the order the worker took them in).
	var waiting string
	redistest.WaitFor(t, waitLimit, "one task waits for its reserved slot", func() bool {
		for _, id := range []string{first.ID, second.ID} {
			if r, err := b.client.Get(ctx, id); err == nil && r.Throttles >= 1 && r.Throttled == "rl.redeliver" {
				waiting = id
				return true
			}
		}
		return false
	})
	// A duplicate delivery of the waiting task: same message, another
	// asynq id.
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	ti, err := insp.GetTaskInfo(baton.QueueDefault, waiting)
	require.NoError(t, err)
	_, err = asynq.NewClientFromRedisClient(b.rdb).Enqueue(asynq.NewTask(ti.Type, ti.Payload), asynq.TaskID(waiting+"~dup"))
	require.NoError(t, err)
	waitRecord(t, b, waiting, "the duplicate delivery was sent back to the same reservation", func(r *baton.Record) bool {
		return r.Throttles >= 2
	})
	third, err := task.Enqueue(ctx, b.client, keyed{N: 2}, nil)
	require.NoError(t, err)
	for _, h := range []*baton.TypedHandle[int]{first, second, third} {
		_, err := h.Get(ctx)
		require.NoError(t, err)
	}
	starts := log.get("")
	require.GreaterOrEqual(t, len(starts), 3)
	// The starts at 0 s, 2 s and 4 s: were the duplicate charged, the
	// third would start at 6 s.
	third0 := starts[len(starts)-1].Sub(starts[0])
	require.Less(t, third0, 5*time.Second, "third task started %v after the first", third0)
	require.GreaterOrEqual(t, third0, 3900*time.Millisecond)
}

// TestLimitDefinitionMismatchWarns: two workers enforcing one limit name
// with different settings: the second one warns, naming both.
func TestLimitDefinitionMismatchWarns(t *testing.T) {
	b := setup(t)
	noop := func(_ context.Context, n int) (int, error) { return n, nil }
	b.startWorker(t, nil, baton.NewTask("mm.kind", noop, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 10, Per: time.Second}}}))
	redistest.WaitFor(t, 5*time.Second, "the first worker records its limits", func() bool {
		return b.rdb.HExists(context.Background(), backend.LimitsKey, "rate:mm.kind").Val()
	})
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.startWorker(t, &baton.WorkerOptions{Logger: log},
		baton.NewTask("mm.kind", noop, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 20, Per: time.Second}}}))
	redistest.WaitFor(t, 5*time.Second, "the second worker warns", func() bool {
		return strings.Contains(buf.String(), "limit is defined differently by another worker")
	})
	out := buf.String()
	require.Contains(t, out, "limit=mm.kind")
	require.Contains(t, out, `here="20/s burst 1"`)
	require.Contains(t, out, `there="10/s burst 1"`)
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLimitOptionsValidation: bad limits are refused with a message naming
// the task, the limit and the fix.
func TestLimitOptionsValidation(t *testing.T) {
	noop := func(_ context.Context, a keyed) (int, error) { return a.N, nil }
	for _, tc := range []struct {
		name string
		opts baton.TaskOptions
		want string
	}{
		{"rate", baton.TaskOptions{RateLimits: []baton.RateLimit{{Per: time.Second}}},
			`task "v.kind": RateLimits[0] (v.kind): Rate 0 must be at least 1 (tasks per Per); use e.g. Rate: 10, Per: time.Second`},
		{"per", baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1}}}, `Per 0s must be positive; use e.g. time.Second or time.Minute`},
		{"burst", baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Second, Burst: -1}}}, `Burst -1 is negative: use 0 for the default (1)`},
		{"name", baton.TaskOptions{RateLimits: []baton.RateLimit{{Name: "a{b}", Rate: 1, Per: time.Second}}},
			`RateLimits[0] (a{b}): name "a{b}" has a space, control character, colon or brace`},
		{"twice", baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Second}, {Rate: 2, Per: time.Second}}},
			`RateLimits[1] (v.kind): two rate limits named "v.kind": give each its own Name`},
		{"max", baton.TaskOptions{ConcurrencyLimits: []baton.ConcurrencyLimit{{}}}, `ConcurrencyLimits[0] (v.kind): Max 0 must be at least 1`},
		{"key type", baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Second, Key: baton.KeyBy(func(s string) string { return s })}}},
			`task "v.kind": RateLimits[0].Key takes string, but the task's arguments are baton_test.keyed: build it with the task's argument type`},
		{"cost type", baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Second, Cost: baton.CostBy(func(int) int { return 1 })}}},
			`RateLimits[0].Cost takes int`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := panicText(func() { baton.NewTask("v.kind", noop, &tc.opts) })
			require.True(t, strings.HasPrefix(msg, "baton: "), msg)
			require.Contains(t, msg, tc.want)
			_, err := baton.WithLimits(baton.NewTask("v.kind", noop, nil), tc.opts.RateLimits, tc.opts.ConcurrencyLimits)
			require.ErrorContains(t, err, tc.want, "WithLimits checks the same")
		})
	}
	t.Run("WithLimits replaces a limit of the same name", func(t *testing.T) {
		task := baton.NewTask("v.kind", noop, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Second}, {Name: "other", Rate: 5, Per: time.Minute}}})
		d, err := baton.WithLimits(task, []baton.RateLimit{{Rate: 9, Per: time.Second}}, []baton.ConcurrencyLimit{{Max: 3}})
		require.NoError(t, err)
		o := d.Options()
		require.Len(t, o.RateLimits, 2)
		require.Equal(t, "other", o.RateLimits[0].Name)
		require.Equal(t, 9, o.RateLimits[1].Rate)
		require.Equal(t, 3, o.ConcurrencyLimits[0].Max)
		require.Len(t, task.Options().RateLimits, 2, "the task itself is unchanged")
		require.Equal(t, 1, task.Options().RateLimits[0].Rate)
	})
	t.Run("LimitKey", func(t *testing.T) {
		b := setup(t)
		task := baton.NewTask("v.kind", noop, nil)
		_, err := task.Enqueue(context.Background(), b.client, keyed{}, &baton.EnqueueOpts{LimitKey: strings.Repeat("k", 201)})
		require.ErrorIs(t, err, baton.ErrInvalidOptions)
		require.ErrorContains(t, err, "LimitKey is 201 bytes: keep it under 200")
		var o baton.EnqueueOpts
		require.NoError(t, o.UnmarshalJSON([]byte(`{"limit_key": "tenant-7"}`)))
		require.Equal(t, "tenant-7", o.LimitKey)
		j, err := o.MarshalJSON()
		require.NoError(t, err)
		require.JSONEq(t, `{"limit_key": "tenant-7"}`, string(j))
	})
}
