package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// The durability guarantees, one focused test each. Process-level kill -9
// runs live in the chaos suite (go run ./internal/chaos) and crash_test.go.

// durRuns counts handler runs per task id.
type durRuns struct {
	mu sync.Mutex
	n  map[string]int
}

func newDurRuns() *durRuns { return &durRuns{n: map[string]int{}} }

// hit records a run of the task in ctx and returns its number (1 = first).
func (r *durRuns) hit(ctx context.Context) int {
	info, _ := baton.InfoFrom(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[info.ID]++
	return r.n[info.ID]
}

func (r *durRuns) get(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}

// durSetupAOF is setup on a redis-server with appendfsync always, so a
// restart (SIGKILL + relaunch) keeps every acknowledged write.
func durSetupAOF(t *testing.T) *bundle {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{AOF: true})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &bundle{srv: srv, rdb: rdb, client: c}
}

// durWorker starts a worker on rdb and returns it with an idempotent stop,
// also run at cleanup, for tests that stop workers themselves.
func durWorker(t *testing.T, rdb redis.UniversalClient, opts baton.WorkerOptions, defs ...baton.Definition) (*baton.Worker, func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	w, err := baton.NewWorker(rdb, &opts)
	require.NoError(t, err)
	require.NoError(t, w.Register(defs...))
	require.NoError(t, w.Start())
	var once sync.Once
	stop := func() { once.Do(w.Shutdown) }
	t.Cleanup(stop)
	return w, stop
}

// durSteps returns the task ids of a workflow in plan order.
func durSteps(t *testing.T, ctx context.Context, wf *baton.Workflow) []string {
	t.Helper()
	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	ids := make([]string, len(steps))
	for i, s := range steps {
		require.NotNil(t, s.Record, "step %d has a record", i)
		ids[i] = s.Record.ID
	}
	return ids
}

// durRecord returns a task's record, failing the test when there is none.
func durRecord(t *testing.T, ctx context.Context, c *baton.Client, id string) *baton.Record {
	t.Helper()
	r, err := c.Get(ctx, id)
	require.NoError(t, err)
	return r
}

// durWaitProcessed waits until asynq holds no copy of delivery id any more
// or, with orphanOK, only an orphaned one (active, but run by no live
// server: its worker gave up on it and a recovery copy took over; asynq
// hands it back a minute later and the start script drops it).
func durWaitProcessed(t *testing.T, rdb redis.UniversalClient, id string, orphanOK bool) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := insp.GetTaskInfo(baton.QueueDefault, id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			return
		}
		if orphanOK && err == nil && info.State == asynq.TaskStateActive && !durRunning(insp, id) {
			return
		}
		if time.Now().After(deadline) {
			if info != nil {
				t.Fatalf("asynq delivery %s not processed within 20s: %s, retried %d, last error %q, next %v", id, info.State, info.Retried, info.LastErr, info.NextProcessAt)
			}
			t.Fatalf("asynq delivery %s not processed within 20s: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// durRunning reports whether a live asynq server runs delivery id.
func durRunning(insp *asynq.Inspector, id string) bool {
	servers, err := insp.Servers()
	if err != nil {
		return true
	}
	for _, s := range servers {
		for _, w := range s.ActiveWorkers {
			if w.TaskID == id {
				return true
			}
		}
	}
	return false
}

// durDuplicate enqueues a second asynq delivery of a queued baton message
// (same payload, so the same baton task id) under asynq id dupID: what a
// redelivery after a crash, or a duplicated message, looks like to workers.
func durDuplicate(t *testing.T, rdb redis.UniversalClient, info *asynq.TaskInfo, dupID string) {
	t.Helper()
	aq := asynq.NewClientFromRedisClient(rdb)
	_, err := aq.Enqueue(asynq.NewTask(info.Type, info.Payload), asynq.TaskID(dupID), asynq.Queue(info.Queue))
	require.NoError(t, err)
}

func durQueued(t *testing.T, rdb redis.UniversalClient, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(baton.QueueDefault, id)
	require.NoError(t, err, "task %s is queued", id)
	return info
}

// TestDurabilityDuplicateDelivery: a step delivered twice, after or while
// its first delivery runs, never hands on twice: the next step runs once,
// the chain's result is right, a chord body runs once.
func TestDurabilityDuplicateDelivery(t *testing.T) {
	b := setup(t)
	runs := newDurRuns()
	step := baton.NewTask("dd.step", func(ctx context.Context, n int) (int, error) {
		runs.hit(ctx)
		return n + 1, nil
	}, nil)
	// overlap: the first two runs of a task wait (up to 2 s) for each
	// other, so two deliveries taken at once really run side by side.
	arrived := map[string]chan struct{}{}
	var amu sync.Mutex
	overlap := baton.NewTask("dd.overlap", func(ctx context.Context, n int) (int, error) {
		run := runs.hit(ctx)
		info, _ := baton.InfoFrom(ctx)
		amu.Lock()
		ch, ok := arrived[info.ID]
		if !ok {
			ch = make(chan struct{})
			arrived[info.ID] = ch
		}
		amu.Unlock()
		if run == 2 {
			close(ch)
		} else {
			select {
			case <-ch:
			case <-time.After(2 * time.Second):
			}
		}
		return n + 1, nil
	}, nil)
	sum := baton.NewTask("dd.sum", func(ctx context.Context, ns []int) (int, error) {
		runs.hit(ctx)
		t := 0
		for _, n := range ns {
			t += n
		}
		return t, nil
	}, nil)
	defs := []baton.Definition{step, overlap, sum}
	b.client.Declare(defs...)

	t.Run("step delivered again after its success", func(t *testing.T) {
		ctx := ctxTimeout(t, 30*time.Second)
		wf, err := b.client.Submit(ctx, baton.Chain(step.S(0, nil), step.Sig(nil), step.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		first := durQueued(t, b.rdb, ids[0]) // captured before any worker runs it

		_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, defs...)
		defer stop()
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 3, got)

		durDuplicate(t, b.rdb, first, ids[0]+"-dup")
		durWaitProcessed(t, b.rdb, ids[0]+"-dup", false)
		for _, id := range ids {
			require.Equal(t, 1, runs.get(id), "step %s ran once", id)
			r := durRecord(t, ctx, b.client, id)
			require.Equal(t, baton.Success, r.State)
			require.Equal(t, 1, r.Executions, "step %s: the duplicate was not executed", id)
		}
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 3, got, "the chain's result is unchanged")
	})

	t.Run("step delivered twice at once", func(t *testing.T) {
		ctx := ctxTimeout(t, 30*time.Second)
		wf, err := b.client.Submit(ctx, baton.Chain(overlap.S(10, nil), step.Sig(nil), step.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf)
		durDuplicate(t, b.rdb, durQueued(t, b.rdb, ids[0]), ids[0]+"-dup")

		_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, defs...)
		defer stop()
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 13, got)
		durWaitProcessed(t, b.rdb, ids[0]+"-dup", false)
		durWaitProcessed(t, b.rdb, ids[0], false)

		// Both deliveries may run the first step (at-least-once: neither saw
		// a SUCCESS when it started), but it hands on once: one result, and
		// step 2 runs once.
		t.Logf("step 1 ran %d times for 2 deliveries", runs.get(ids[0]))
		require.LessOrEqual(t, runs.get(ids[0]), 2)
		r := durRecord(t, ctx, b.client, ids[0])
		require.Equal(t, baton.Success, r.State)
		require.JSONEq(t, "11", string(r.Result))
		for _, id := range ids[1:] {
			require.Equal(t, 1, runs.get(id), "step %s ran once", id)
			require.Equal(t, 1, durRecord(t, ctx, b.client, id).Executions)
		}
	})

	t.Run("chord header delivered again after the body ran", func(t *testing.T) {
		ctx := ctxTimeout(t, 30*time.Second)
		wf, err := b.client.Submit(ctx, baton.Chord(baton.Group(step.S(1, nil), step.S(2, nil), step.S(3, nil)), sum.Sig(nil)), nil)
		require.NoError(t, err)
		ids := durSteps(t, ctx, wf) // headers, then the body
		require.Len(t, ids, 4)
		last := durQueued(t, b.rdb, ids[2])

		_, stop := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, defs...)
		defer stop()
		var got int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, 9, got)

		durDuplicate(t, b.rdb, last, ids[2]+"-dup")
		durWaitProcessed(t, b.rdb, ids[2]+"-dup", false)
		for _, id := range ids {
			require.Equal(t, 1, runs.get(id), "task %s ran once", id)
		}
		body := durRecord(t, ctx, b.client, ids[3])
		require.Equal(t, 1, body.Executions, "the chord body ran exactly once")
		require.JSONEq(t, "9", string(body.Result))
	})
}

// TestDurabilityGracefulShutdown: Shutdown lets running tasks finish within
// ShutdownTimeout and gives the rest back to the queue; a new worker
// finishes them. Nothing is lost, no finished step runs again, and a chain
// resumes at the step it was on.
func TestDurabilityGracefulShutdown(t *testing.T) {
	b := setup(t)
	runs := newDurRuns()
	// quick takes 300 ms: it finishes within the shutdown timeout.
	quick := baton.NewTask("gs.quick", func(ctx context.Context, n int) (int, error) {
		runs.hit(ctx)
		select {
		case <-time.After(300 * time.Millisecond):
			return n + 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, nil)
	// slow never finishes its first run: only the shutdown ends it.
	slow := baton.NewTask("gs.slow", func(ctx context.Context, n int) (int, error) {
		if runs.hit(ctx) == 1 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return n * 10, nil
	}, nil)
	defs := []baton.Definition{quick, slow}
	b.client.Declare(defs...)
	ctx := ctxTimeout(t, 60*time.Second)

	const shutdownTimeout = time.Second
	_, stop1 := durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 8, ShutdownTimeout: shutdownTimeout}, defs...)

	// A chain stopped at its second step, two slow and three quick tasks.
	wf, err := b.client.Submit(ctx, baton.Chain(quick.S(0, nil), slow.Sig(nil), quick.Sig(nil)), nil)
	require.NoError(t, err)
	ids := durSteps(t, ctx, wf)
	waitState(t, b, ids[1], baton.Started)
	var slows, quicks []*baton.TypedHandle[int]
	for i := range 2 {
		h, err := slow.Enqueue(ctx, b.client, i+1, nil)
		require.NoError(t, err)
		slows = append(slows, h)
	}
	for i := range 3 {
		h, err := quick.Enqueue(ctx, b.client, i, nil)
		require.NoError(t, err)
		quicks = append(quicks, h)
	}
	for _, h := range append(append([]*baton.TypedHandle[int]{}, slows...), quicks...) {
		waitState(t, b, h.ID, baton.Started)
	}

	t0 := time.Now()
	stop1()
	took := time.Since(t0)
	require.Less(t, took, shutdownTimeout+5*time.Second, "Shutdown is bounded by ShutdownTimeout")

	// Finished in time: SUCCESS, run once.
	for _, h := range quicks {
		r := durRecord(t, ctx, b.client, h.ID)
		require.Equal(t, baton.Success, r.State, "quick task %s finished within the shutdown timeout", h.ID)
	}
	require.Equal(t, baton.Success, durRecord(t, ctx, b.client, ids[0]).State)
	// Not finished: back in the queue, not failed, no retry used.
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for _, id := range []string{slows[0].ID, slows[1].ID, ids[1]} {
		r := durRecord(t, ctx, b.client, id)
		require.Equal(t, baton.Started, r.State, "task %s was cut short: not terminal", id)
		info, err := insp.GetTaskInfo(baton.QueueDefault, id)
		require.NoError(t, err, "task %s is back in its queue", id)
		require.Equal(t, asynq.TaskStatePending, info.State)
		require.Zero(t, info.Retried, "a shutdown does not use a retry")
	}
	require.Equal(t, baton.Pending, durRecord(t, ctx, b.client, ids[2]).State)

	// A new worker finishes the rest.
	durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 8}, defs...)
	for i, h := range slows {
		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, (i+1)*10, got)
		require.Equal(t, 2, runs.get(h.ID), "cut short once, then finished")
		require.Equal(t, 2, durRecord(t, ctx, b.client, h.ID).Executions)
	}
	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, 11, got, "quick(0)=1 → slow=10 → quick=11")
	require.Equal(t, 1, runs.get(ids[0]), "the chain resumed at step 2, not step 1")
	require.Equal(t, 2, runs.get(ids[1]))
	require.Equal(t, 1, runs.get(ids[2]))
	for _, h := range quicks {
		durWaitProcessed(t, b.rdb, h.ID, false)
		require.Equal(t, 1, runs.get(h.ID), "a task finished before the shutdown never runs again")
		require.Equal(t, 1, durRecord(t, ctx, b.client, h.ID).Executions)
	}
}

// TestDurabilityRedisRestart: Redis (AOF, appendfsync always) is killed and
// restarted while a chain runs and tasks wait in the queue, some scheduled.
// Workers and the producer reconnect on their own; a waiter blocked across
// the restart gets the result; no accepted task and no stored result is lost.
func TestDurabilityRedisRestart(t *testing.T) {
	b := durSetupAOF(t)
	runs := newDurRuns()
	step := baton.NewTask("rr.step", func(ctx context.Context, n int) (int, error) {
		runs.hit(ctx)
		select {
		case <-time.After(40 * time.Millisecond):
			return n + 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, nil)
	b.client.Declare(step)
	durWorker(t, b.rdb, baton.WorkerOptions{Concurrency: 4}, step)
	ctx := ctxTimeout(t, 60*time.Second)

	const n = 15
	steps := []baton.Canvas{step.S(0, nil)}
	for len(steps) < n {
		steps = append(steps, step.Sig(nil))
	}
	wf, err := b.client.Submit(ctx, baton.Chain(steps...), nil)
	require.NoError(t, err)
	ids := durSteps(t, ctx, wf)
	waited := make(chan error, 1)
	var got int
	go func() { waited <- wf.Get(ctx, &got) }() // blocked across the restart

	var handles []*baton.TypedHandle[int]
	for i := range 10 {
		var opts *baton.EnqueueOpts
		if i%2 == 0 {
			opts = &baton.EnqueueOpts{Countdown: 1500 * time.Millisecond} // scheduled during the restart
		}
		h, err := step.Enqueue(ctx, b.client, 100*i, opts)
		require.NoError(t, err)
		handles = append(handles, h)
	}
	done := waitState(t, b, ids[3], baton.Success)

	require.NoError(t, b.srv.Restart())

	if err := <-waited; err != nil {
		durDump(t, b, wf)
		t.Fatalf("waiter blocked across the restart: %v", err)
	}
	require.Equal(t, n, got)
	for i, h := range handles {
		v, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 100*i+1, v)
	}
	after := durRecord(t, ctx, b.client, ids[3])
	require.Equal(t, done.Result, after.Result, "a result stored before the restart survives it")
	require.Equal(t, done.FinishedAt, after.FinishedAt)
	for _, id := range ids {
		r := durRecord(t, ctx, b.client, id)
		require.Equal(t, baton.Success, r.State)
		require.LessOrEqual(t, runs.get(id), 2, "step %s: at most one more run, for a step cut off by the restart", id)
	}
	// The producer carries on after the restart.
	h, err := step.Enqueue(ctx, b.client, 7, nil)
	require.NoError(t, err)
	v, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 8, v)
}

// durDump logs a workflow's records and their asynq deliveries, to tell a
// lost task from a missed wake-up.
func durDump(t *testing.T, b *bundle, wf *baton.Workflow) {
	t.Helper()
	ctx := context.Background()
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	if r, err := b.client.Get(ctx, wf.ID); err == nil {
		t.Logf("workflow %s: %s %s", wf.ID, r.State, r.Result)
	}
	steps, err := wf.Steps(ctx)
	if err != nil {
		t.Logf("steps: %v", err)
		return
	}
	for _, s := range steps {
		if s.Record == nil {
			t.Logf("%s: no record", s.Position)
			continue
		}
		line := fmt.Sprintf("%s %s executions %d retries %d", s.Record.ID, s.Record.State, s.Record.Executions, s.Record.Retries)
		if info, err := insp.GetTaskInfo(baton.QueueDefault, s.Record.ID); err == nil {
			line += fmt.Sprintf(" | asynq %s retried %d err %q next %v", info.State, info.Retried, info.LastErr, info.NextProcessAt)
		}
		t.Log(line)
	}
}

// redisPID is the process id of the server behind rdb.
func redisPID(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	s, err := rdb.Info(context.Background(), "server").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			require.NoError(t, err)
			return pid
		}
	}
	t.Fatal("INFO server has no process_id")
	return 0
}

// TestDurabilityProducerRedisDown: with Redis down (refusing connections)
// or hung (SIGSTOP: connections open, no replies), a producer's calls fail
// within a bound set by its go-redis timeouts, with an error naming the
// Redis address; nothing hangs.
func TestDurabilityProducerRedisDown(t *testing.T) {
	b := setup(t)
	const timeout = 500 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{Addr: b.srv.Addr, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	task := baton.NewTask[int, int]("pd.task", nil, nil)
	c.Declare(task)

	// Each call: go-redis tries 4 times (MaxRetries 3) with a 500 ms timeout
	// and short backoffs in between; the enqueue's two writes run side by side.
	const bound = 4 * time.Second
	calls := map[string]func(ctx context.Context) error{
		"enqueue": func(ctx context.Context) error { _, err := task.Enqueue(ctx, c, 1, nil); return err },
		"submit": func(ctx context.Context) error {
			_, err := c.Submit(ctx, baton.Chain(task.S(1, nil), task.Sig(nil)), nil)
			return err
		},
		"get": func(ctx context.Context) error { _, err := c.Get(ctx, "some-id"); return err },
	}
	check := func(t *testing.T) {
		for _, name := range []string{"enqueue", "submit", "get"} {
			ctx := ctxTimeout(t, time.Minute) // far longer: the bound comes from the client
			t0 := time.Now()
			err := calls[name](ctx)
			took := time.Since(t0)
			t.Logf("%s: error after %v: %v", name, took.Round(time.Millisecond), err)
			require.Error(t, err, name)
			require.Less(t, took, bound, "%s fails fast", name)
			require.Contains(t, err.Error(), b.srv.Addr, "%s: the error names the Redis address", name)
			require.NotErrorIs(t, err, context.DeadlineExceeded)
		}
	}

	t.Run("hung", func(t *testing.T) {
		pid := redisPID(t, rdb)
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
		defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }()
		check(t)
	})
	t.Run("down", func(t *testing.T) {
		require.NoError(t, rdb.Ping(context.Background()).Err())
		b.srv.Kill()
		check(t)
	})
}

// finishFailer is a go-redis hook that fails the first write of a SUCCESS
// record for one task, as if the connection dropped at that moment, and
// reports it on failed.
type finishFailer struct {
	key    string // the task's record key
	inject bool   // fail the write (else only observe that it failed)
	mu     sync.Mutex
	done   bool
	failed chan struct{}
}

func (f *finishFailer) DialHook(next redis.DialHook) redis.DialHook { return next }

// isFinish: EVALSHA|EVAL sha numkeys KEYS[1]=task key ARGV[1]=ttl
// ARGV[2]=new state (backend's finish script).
func (f *finishFailer) isFinish(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 6 {
		return false
	}
	name := strings.ToLower(fmt.Sprint(args[0]))
	return (name == "evalsha" || name == "eval") && fmt.Sprint(args[3]) == f.key && fmt.Sprint(args[5]) == string(baton.Success)
}

// first reports whether cmds holds the first SUCCESS write, marking it seen.
func (f *finishFailer) first(cmds ...redis.Cmder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	for _, c := range cmds {
		if f.isFinish(c) {
			f.done = true
			return true
		}
	}
	return false
}

var errInjected = errors.New("injected: connection lost before the reply")

func (f *finishFailer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !f.first(cmd) {
			return next(ctx, cmd)
		}
		err := errInjected
		if f.inject {
			cmd.SetErr(err)
		} else {
			err = next(ctx, cmd)
		}
		if err != nil {
			close(f.failed)
		}
		return err
	}
}

func (f *finishFailer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !f.first(cmds...) {
			return next(ctx, cmds)
		}
		err := errInjected
		if f.inject {
			for _, c := range cmds {
				c.SetErr(err)
			}
		} else {
			err = next(ctx, cmds)
		}
		if err != nil {
			close(f.failed)
		}
		return err
	}
}

// TestCrashBetweenHandlerAndRecord: the handler returned but its SUCCESS
// could not be stored (the connection dropped; Redis died). The task runs
// at most once more, ends SUCCESS with one stored result, and uses no retry.
func TestCrashBetweenHandlerAndRecord(t *testing.T) {
	for _, mode := range []string{"write fails", "redis killed"} {
		t.Run(mode, func(t *testing.T) {
			b := durSetupAOF(t)
			ctx := ctxTimeout(t, 60*time.Second)
			id := "crash-" + strings.ReplaceAll(mode, " ", "-")
			hook := &finishFailer{key: backend.TaskKey(id), inject: mode == "write fails", failed: make(chan struct{})}
			wrdb := redis.NewClient(&redis.Options{Addr: b.srv.Addr})
			wrdb.AddHook(hook)
			t.Cleanup(func() { _ = wrdb.Close() })

			runs := newDurRuns()
			task := baton.NewTask("cr.task", func(ctx context.Context, n int) (int, error) {
				if runs.hit(ctx) == 1 && mode == "redis killed" {
					b.srv.Kill() // Redis dies as the handler returns
				}
				return n * 2, nil
			}, nil)
			b.client.Declare(task)
			durWorker(t, wrdb, baton.WorkerOptions{}, task)

			h, err := task.Enqueue(ctx, b.client, 21, &baton.EnqueueOpts{ID: id})
			require.NoError(t, err)
			select {
			case <-hook.failed:
			case <-ctx.Done():
				t.Fatal("the SUCCESS write never failed")
			}
			if mode == "redis killed" {
				require.NoError(t, b.srv.Restart())
			}
			got, err := h.Get(ctx)
			require.NoError(t, err)
			require.Equal(t, 42, got)
			durWaitProcessed(t, b.rdb, id, true)

			r := durRecord(t, ctx, b.client, id)
			require.Equal(t, baton.Success, r.State)
			require.JSONEq(t, "42", string(r.Result))
			require.Equal(t, 2, runs.get(id), "the handler ran once more, not more")
			require.Equal(t, 2, r.Executions)
			require.Zero(t, r.Retries, "a lost write is not the task's failure: no retry used")
		})
	}
}

// TestDurabilityKeysHaveTTL: after a mixed workload (tasks, retries,
// failures, countdowns, chains, groups, chords, a failed chord, error
// callbacks, compensations, a cancelled workflow) every key baton wrote
// expires: SCAN finds no key outside asynq's without a TTL.
func TestDurabilityKeysHaveTTL(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 60*time.Second)
	var flakyRuns sync.Map
	incr := baton.NewTask("ttl.incr", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	sum := baton.NewTask("ttl.sum", func(ctx context.Context, ns []int) (int, error) {
		t := 0
		for _, n := range ns {
			t += n
		}
		return t, nil
	}, nil)
	fail := baton.NewTask("ttl.fail", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(fmt.Errorf("fails on %d", n))
	}, nil)
	flaky := baton.NewTask("ttl.flaky", func(ctx context.Context, n int) (int, error) {
		info, _ := baton.InfoFrom(ctx)
		if _, seen := flakyRuns.LoadOrStore(info.ID, true); !seen {
			return 0, errors.New("first try fails")
		}
		return n, nil
	}, &baton.TaskOptions{MaxRetries: 2, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	block := baton.NewTask("ttl.block", func(ctx context.Context, n int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, nil)
	note := baton.NewTask("ttl.note", func(ctx context.Context, v json.RawMessage) (int, error) { return 0, nil }, nil)
	defs := []baton.Definition{incr, sum, fail, flaky, block, note}
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 8}, defs...)

	wait := func(h interface {
		Wait(context.Context) (*baton.Record, error)
	}) {
		_, _ = h.Wait(ctx)
	}
	h1, err := incr.Enqueue(ctx, b.client, 1, nil)
	require.NoError(t, err)
	h2, err := fail.Enqueue(ctx, b.client, 1, nil)
	require.NoError(t, err)
	h3, err := flaky.Enqueue(ctx, b.client, 5, nil)
	require.NoError(t, err)
	h4, err := incr.Enqueue(ctx, b.client, 1, &baton.EnqueueOpts{Countdown: 200 * time.Millisecond})
	require.NoError(t, err)
	h5, err := incr.Enqueue(ctx, b.client, 1, &baton.EnqueueOpts{ExpiresIn: time.Millisecond, Countdown: 50 * time.Millisecond})
	require.NoError(t, err)

	withSaga := incr.S(1, nil)
	withSaga.Compensate = note.Sig(nil)
	failing := fail.Sig(nil)
	failing.OnError = note.Sig(nil)
	canvases := []baton.Canvas{
		baton.Chain(incr.S(0, nil), incr.Sig(nil), incr.Sig(nil)),
		baton.Group(incr.S(1, nil), incr.S(2, nil)),
		baton.Chord(baton.Group(incr.S(1, nil), incr.S(2, nil), incr.S(3, nil)), sum.Sig(nil)),
		baton.Chord(baton.Group(incr.S(1, nil), fail.S(2, nil)), sum.Sig(nil)),
		baton.Chain(withSaga, incr.Sig(nil), failing, incr.Sig(nil)),
	}
	var wfs []*baton.Workflow
	for _, cv := range canvases {
		wf, err := b.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		wfs = append(wfs, wf)
	}
	cancelled, err := b.client.Submit(ctx, baton.Chain(block.S(1, nil), incr.Sig(nil)), nil)
	require.NoError(t, err)
	waitState(t, b, durSteps(t, ctx, cancelled)[0], baton.Started)
	require.NoError(t, b.client.Cancel(ctx, cancelled.ID))

	for _, h := range []*baton.TypedHandle[int]{h1, h2, h3, h4, h5} {
		wait(h)
	}
	for _, wf := range append(wfs, cancelled) {
		wait(wf)
	}
	// Callbacks and compensations run after the workflow's own record ends:
	// wait until asynq has nothing left to run.
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	redistest.WaitFor(t, 15*time.Second, "the queue drains", func() bool {
		qi, err := insp.GetQueueInfo(baton.QueueDefault)
		return err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0
	})

	var keys, noTTL []string
	iter := b.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasPrefix(k, "asynq:") {
			continue
		}
		keys = append(keys, k)
		ttl, err := b.rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		if ttl == -1 { // go-redis: -1 no TTL (-2: the key is gone)
			noTTL = append(noTTL, k)
		}
	}
	require.NoError(t, iter.Err())
	require.Greater(t, len(keys), 30, "the workload wrote baton keys")
	require.Empty(t, noTTL, "keys without a TTL (of %d baton keys)", len(keys))
}
