package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
	"github.com/batonhq/baton/internal/redistest"
)

// TestMalformedArgs: arguments that cannot decode into the task's type fail
// once, naming the Go type, with no retry storm.
func TestMalformedArgs(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	ran := newRunLog()
	add := baton.NewTask("add", func(ctx context.Context, a addArgs) (int, error) {
		ran.begin(ctx)
		return a.A + a.B, nil
	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.FixedDelay(time.Millisecond)})
	b.startWorker(t, nil, add)

	for _, raw := range []string{`"notanobject"`, `[1,2]`, `{"A":"one","B":2}`, `true`} {
		t.Run(raw, func(t *testing.T) {
			h, err := b.client.EnqueueKind(ctx, "add", json.RawMessage(raw), nil)
			require.NoError(t, err)
			rec, err := h.Wait(ctx)
			_ = requireTaskError(t, err, baton.Failure, "baton_test.addArgs", `task "add"`)
			require.Equal(t, 1, rec.Executions, "no retry storm")
			require.Zero(t, rec.Retries)
			require.JSONEq(t, raw, string(rec.Payload), "the payload is kept for inspection")
			require.Zero(t, ran.count(h.ID), "the handler never ran")
		})
	}

	t.Run("invalid JSON is refused at enqueue", func(t *testing.T) {
		_, err := b.client.EnqueueKind(ctx, "add", json.RawMessage(`{"A":`), &baton.EnqueueOpts{ID: "bad-json"})
		require.ErrorContains(t, err, "not valid JSON")
		_, err = b.client.Get(ctx, "bad-json")
		require.ErrorIs(t, err, baton.ErrNotFound)
	})

	t.Run("not a baton message", func(t *testing.T) {
		aq := asynq.NewClientFromRedisClient(b.rdb)
		_, err := aq.EnqueueContext(ctx, asynq.NewTask("add", []byte("garbage")), asynq.TaskID("raw-1"), asynq.MaxRetry(5))
		require.NoError(t, err)
		rec := waitState(t, b, "raw-1", baton.Failure)
		require.Contains(t, rec.Error, "not a baton message")
		require.Equal(t, "garbage", string(rec.Payload))
		waitAsynqArchived(t, b, baton.QueueDefault, "raw-1")
		rec, err = b.client.Get(ctx, "raw-1")
		require.NoError(t, err)
		require.LessOrEqual(t, rec.Executions, 1)
	})
}

// TestCraftedMessages: a message whose workflow fields do not fit its plan
// (a node out of range, not a task, of another kind or id, a plan missing,
// corrupt, cyclic or of another workflow) or whose numbers make no sense is
// failed once, before its handler runs, with an error saying what is wrong,
// archived with its payload kept; the worker never panics on it.
func TestCraftedMessages(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	ran := newRunLog()
	k := baton.NewTask("k", func(ctx context.Context, n int) (int, error) {
		id, i := ran.begin(ctx)
		ran.end(id, i)
		return n, nil
	}, nil)
	b.startWorker(t, nil, k)

	// A plan to borrow, carried inline: chain(k, k) of workflow "wfx",
	// never run (so no record of its steps exists).
	compiled, err := chain.Compile("wfx", baton.Chain(k.S(1, nil), k.Sig(nil)))
	require.NoError(t, err)
	plan, err := json.Marshal(compiled)
	require.NoError(t, err)
	pl := string(plan)
	cyclic := `{"wf":"wfy","nodes":[{"t":"chain","p":-1,"i":0,"c":[1]},{"t":"chain","p":0,"i":0,"c":[1]}]}`
	badChild := `{"wf":"wfy","nodes":[{"t":"chain","p":-1,"i":0,"c":[7]}]}`

	cases := []struct {
		name, payload, want string
	}{
		{"node out of range", `{"v":1,"id":"wfx.9","kind":"k","wf":"wfx","n":99,"pl":` + pl + `}`, "node 99 is out of range"},
		{"negative node", `{"v":1,"id":"wfx.7","kind":"k","wf":"wfx","n":-1,"pl":` + pl + `}`, "node -1 is out of range"},
		{"node is not a task", `{"v":1,"id":"wfx.8","kind":"k","wf":"wfx","n":0,"pl":` + pl + `}`, "node 0 of workflow wfx is a chain, not a task"},
		{"kind differs", `{"v":1,"id":"wfx.1","kind":"other","wf":"wfx","n":1,"pl":` + pl + `}`, `node 1 of workflow wfx is task "k", not "other"`},
		{"id differs", `{"v":1,"id":"wfx.2","kind":"k","wf":"wfx","n":1,"pl":` + pl + `}`, `node 1 of workflow wfx is step wfx.1, not wfx.2`},
		{"plan gone", `{"v":1,"id":"gone.1","kind":"k","wf":"gone","n":1}`, "workflow gone: its plan is not in Redis"},
		{"plan not a plan", `{"v":1,"id":"wfy.1","kind":"k","wf":"wfy","n":1,"pl":"garbage"}`, "plan is corrupt"},
		{"plan with a cycle", `{"v":1,"id":"wfy.2","kind":"k","wf":"wfy","n":1,"pl":` + cyclic + `}`, "plan is corrupt"},
		{"plan child out of range", `{"v":1,"id":"wfy.3","kind":"k","wf":"wfy","n":0,"pl":` + badChild + `}`, "plan is corrupt"},
		{"plan of another workflow", `{"v":1,"id":"wfz.1","kind":"k","wf":"wfz","n":1,"pl":` + pl + `}`, "is the plan of workflow wfx, not wfz"},
		{"node without a workflow", `{"v":1,"id":"lone","kind":"k","n":3}`, "node 3 without a workflow"},
		{"plan without a workflow", `{"v":1,"id":"lone2","kind":"k","pl":` + pl + `}`, "a plan without a workflow"},
		{"negative max retries", `{"v":1,"id":"neg1","kind":"k","mr":-1}`, "max retries -1 is negative"},
		{"negative timeout", `{"v":1,"id":"neg2","kind":"k","to":-5}`, "timeout -5ms is negative"},
		{"retry delay above its max", `{"v":1,"id":"neg3","kind":"k","rp":{"delay":"1m","max":"1s"}}`, "raise Max or lower Delay"},
	}
	aq := asynq.NewClientFromRedisClient(b.rdb)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.Unmarshal([]byte(tc.payload), &m))
			asynqID := fmt.Sprintf("crafted-%d", i)
			_, err := aq.EnqueueContext(ctx, asynq.NewTask("k", []byte(tc.payload)), asynq.TaskID(asynqID), asynq.MaxRetry(5))
			require.NoError(t, err)
			waitAsynqArchived(t, b, baton.QueueDefault, asynqID)
			rec, err := b.client.Get(ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, baton.Failure, rec.State, "error: %s", rec.Error)
			require.Contains(t, rec.Error, "invalid task message")
			require.Contains(t, rec.Error, tc.want)
			require.NotContains(t, rec.Error, "panic")
			require.JSONEq(t, tc.payload, string(rec.Payload), "the payload is kept for inspection")
			require.Zero(t, ran.count(m.ID), "the handler never ran")
			info, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo(baton.QueueDefault, asynqID)
			require.NoError(t, err)
			require.Zero(t, info.Retried, "failed once, not retried")
		})
	}
}

// waitAsynqArchived waits until asynq archived task id: it will not be
// delivered again.
func waitAsynqArchived(t *testing.T, b *bundle, queue, id string) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	redistest.WaitFor(t, waitLimit, "asynq archived "+id, func() bool {
		info, err := insp.GetTaskInfo(queue, id)
		return err == nil && info.State == asynq.TaskStateArchived
	})
}

// TestUnknownKind: a kind no worker registers fails once, naming the kind.
func TestUnknownKind(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	known := baton.NewTask("known", func(ctx context.Context, _ struct{}) (int, error) { return 1, nil }, nil)
	b.startWorker(t, nil, known)

	five := 5
	h, err := b.client.EnqueueKind(ctx, "nosuch", map[string]int{"x": 1}, &baton.EnqueueOpts{MaxRetries: &five, RetryDelay: baton.FixedDelay(time.Millisecond)})
	require.NoError(t, err)
	rec, err := h.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, `unknown task kind "nosuch"`, "known")
	require.Equal(t, 1, rec.Executions, "no retries")
	require.Zero(t, rec.Retries)
	require.JSONEq(t, `{"x":1}`, string(rec.Payload))
	waitAsynqArchived(t, b, baton.QueueDefault, h.ID)
}

// TestOversizedPayload: refused before anything is written.
func TestOversizedPayload(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{MaxPayloadBytes: 1024})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	blob := baton.NewTask("blob", func(ctx context.Context, s string) (int, error) { return len(s), nil }, nil)

	_, err = blob.Enqueue(ctx, c, strings.Repeat("x", 2048), &baton.EnqueueOpts{ID: "big-1"})
	require.ErrorIs(t, err, baton.ErrPayloadTooLarge)
	require.ErrorContains(t, err, "MaxPayloadBytes")
	_, err = c.Get(ctx, "big-1")
	require.ErrorIs(t, err, baton.ErrNotFound)
	n, err := b.rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, n, "nothing was written")

	_, err = blob.Enqueue(ctx, c, "small", &baton.EnqueueOpts{ID: "small-1"})
	require.NoError(t, err, "a payload under the limit passes")
}

func panicText(f func()) (msg string) {
	defer func() { msg = fmt.Sprint(recover()) }()
	f()
	return "no panic"
}

// TestInvalidOptions: bad options give an error that says what to fix, and
// nothing is enqueued or recorded.
func TestInvalidOptions(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	task := baton.NewTask("opt", func(ctx context.Context, _ struct{}) (int, error) { return 0, nil }, nil)
	neg := -1

	cases := []struct {
		name string
		opts baton.EnqueueOpts
		want string
	}{
		{"negative MaxRetries", baton.EnqueueOpts{MaxRetries: &neg}, "MaxRetries -1 is negative"},
		{"negative Countdown", baton.EnqueueOpts{Countdown: -time.Second}, "Countdown -1s is negative"},
		{"negative Timeout", baton.EnqueueOpts{Timeout: -time.Second}, "Timeout -1s is negative"},
		{"negative ExpiresIn", baton.EnqueueOpts{ExpiresIn: -time.Second}, "ExpiresIn -1s is negative"},
		{"queue with a space", baton.EnqueueOpts{Queue: "my queue"}, `queue name "my queue"`},
		{"queue with braces", baton.EnqueueOpts{Queue: "q{1}"}, `queue name "q{1}"`},
		{"retry delay above max", baton.EnqueueOpts{RetryDelay: &baton.RetryPolicy{Delay: time.Minute, Max: time.Second}}, "raise Max or lower Delay"},
		{"negative retry delay", baton.EnqueueOpts{RetryDelay: &baton.RetryPolicy{Delay: -time.Second}}, "RetryPolicy.Delay -1s is negative"},
		// Durations travel in whole milliseconds: under 1ms would silently
		// become 0, which means "the default".
		{"Timeout under 1ms", baton.EnqueueOpts{Timeout: time.Nanosecond}, "Timeout 1ns is under 1ms"},
		{"Countdown under 1ms", baton.EnqueueOpts{Countdown: 999 * time.Microsecond}, "Countdown 999µs is under 1ms"},
		{"ExpiresIn under 1ms", baton.EnqueueOpts{ExpiresIn: time.Nanosecond}, "ExpiresIn 1ns is under 1ms"},
		{"retry delay under 1ms", baton.EnqueueOpts{RetryDelay: baton.FixedDelay(time.Microsecond)}, "RetryPolicy.Delay 1µs is under 1ms"},
		{"retry max under 1ms", baton.EnqueueOpts{RetryDelay: &baton.RetryPolicy{Max: time.Nanosecond}}, "RetryPolicy.Max 1ns is under 1ms"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.ID = fmt.Sprintf("invalid-%d", i)
			_, err := task.Enqueue(ctx, b.client, struct{}{}, &tc.opts)
			require.ErrorContains(t, err, "invalid options")
			require.ErrorContains(t, err, tc.want)
			_, err = b.client.Get(ctx, tc.opts.ID)
			require.ErrorIs(t, err, baton.ErrNotFound)
		})
	}
	for _, id := range []string{"has space", "brace{", strings.Repeat("x", 201), "a.b", "wf.1", "a/b", "café", "tab\t", "semi;colon"} {
		t.Run("bad id "+id[:min(len(id), 10)], func(t *testing.T) {
			_, err := task.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{ID: id})
			require.ErrorIs(t, err, baton.ErrInvalidOptions)
			require.ErrorContains(t, err, "task id")
			require.ErrorContains(t, err, "letters, digits, '-', '_' and ':'", "the error states the rule")
			_, err = b.client.EnqueueKind(ctx, "opt", nil, &baton.EnqueueOpts{ID: id})
			require.ErrorContains(t, err, "letters, digits, '-', '_' and ':'")
			_, err = b.client.Submit(ctx, task.SI(struct{}{}, nil), &baton.SubmitOpts{ID: id})
			require.ErrorIs(t, err, baton.ErrInvalidCanvas)
			require.ErrorContains(t, err, "workflow id")
			require.ErrorContains(t, err, "letters, digits, '-', '_' and ':'")
		})
	}
	t.Run("empty kind", func(t *testing.T) {
		_, err := b.client.EnqueueKind(ctx, "", nil, nil)
		require.ErrorContains(t, err, "empty task kind")
	})
	t.Run("1ms is accepted", func(t *testing.T) {
		_, err := task.Enqueue(ctx, b.client, struct{}{}, &baton.EnqueueOpts{ID: "one-ms", Timeout: time.Millisecond,
			Countdown: time.Millisecond, ExpiresIn: time.Hour, RetryDelay: baton.FixedDelay(time.Millisecond)})
		require.NoError(t, err)
		require.NoError(t, b.rdb.FlushDB(ctx).Err())
	})
	t.Run("JSON options under 1ms", func(t *testing.T) {
		for field, doc := range map[string]string{
			"timeout":           `{"timeout": "1ns"}`,
			"countdown":         `{"countdown": "500us"}`,
			"expires_in":        `{"expires_in": "1ns"}`,
			"retry_delay":       `{"retry_delay": "1ns"}`,
			"retry_delay.delay": `{"retry_delay": {"delay": "1ns"}}`,
			"retry_delay.max":   `{"retry_delay": {"max": "999us"}}`,
		} {
			var o baton.EnqueueOpts
			err := json.Unmarshal([]byte(doc), &o)
			require.ErrorContains(t, err, field+": ", doc)
			require.ErrorContains(t, err, "is under 1ms", doc)
		}
		_, err := b.client.Submit(ctx, &baton.Signature{Kind: "opt", Options: json.RawMessage(`{"timeout": "1ns"}`)}, nil)
		require.ErrorIs(t, err, baton.ErrInvalidCanvas)
		require.ErrorContains(t, err, "$.options")
		require.ErrorContains(t, err, "under 1ms")
	})
	t.Run("nothing enqueued", func(t *testing.T) {
		n, err := b.rdb.DBSize(ctx).Result()
		require.NoError(t, err)
		require.Zero(t, n)
	})

	t.Run("NewTask", func(t *testing.T) {
		require.Contains(t, panicText(func() {
			baton.NewTask("x", func(ctx context.Context, _ int) (int, error) { return 0, nil }, &baton.TaskOptions{MaxRetries: -2})
		}), `task "x": MaxRetries -2 is negative`)
		require.Contains(t, panicText(func() {
			baton.NewTask("x", func(ctx context.Context, _ int) (int, error) { return 0, nil }, &baton.TaskOptions{Queue: "a,b"})
		}), `queue name "a,b"`)
		require.Contains(t, panicText(func() {
			baton.NewTask("", func(ctx context.Context, _ int) (int, error) { return 0, nil }, nil)
		}), "empty kind")
		require.Contains(t, panicText(func() {
			baton.NewTask("x", func(ctx context.Context, _ int) (int, error) { return 0, nil }, &baton.TaskOptions{Timeout: time.Nanosecond})
		}), `task "x": Timeout 1ns is under 1ms`)
		require.Contains(t, panicText(func() {
			baton.NewTask("x", func(ctx context.Context, _ int) (int, error) { return 0, nil }, &baton.TaskOptions{RetryDelay: baton.FixedDelay(time.Nanosecond)})
		}), `task "x": RetryPolicy.Delay 1ns is under 1ms`)
	})

	t.Run("NewClient and NewWorker", func(t *testing.T) {
		_, err := baton.NewClient(b.rdb, &baton.ClientOptions{ResultTTL: -time.Hour})
		require.ErrorContains(t, err, "ResultTTL -1h0m0s is negative")
		require.ErrorContains(t, err, "24h")
		_, err = baton.NewClient(b.rdb, &baton.ClientOptions{MaxPayloadBytes: -1})
		require.ErrorContains(t, err, "MaxPayloadBytes -1 is negative")
		_, err = baton.NewWorker(b.rdb, &baton.WorkerOptions{Concurrency: -1})
		require.ErrorContains(t, err, "Concurrency -1 is negative")
		_, err = baton.NewWorker(b.rdb, &baton.WorkerOptions{Queues: map[string]int{"bad queue": 1}})
		require.ErrorContains(t, err, `"bad queue"`)
		_, err = baton.NewWorker(b.rdb, &baton.WorkerOptions{Queues: map[string]int{"q": 0}})
		require.ErrorContains(t, err, "weights must be ≥ 1")
	})

	t.Run("backend.New", func(t *testing.T) {
		_, err := backend.New(b.rdb, backend.Options{ResultTTL: -time.Second})
		require.ErrorContains(t, err, "ResultTTL -1s is negative")
		require.ErrorContains(t, err, "use a positive duration such as 24h")
		_, err = backend.New(b.rdb, backend.Options{ResultTTL: 500 * time.Millisecond})
		require.ErrorContains(t, err, "under 1s")
	})
}

// TestIDRule: caller-chosen task and workflow ids are letters, digits, '-',
// '_' and ':' (':' for namespaces such as tenant:42); '.' is reserved for
// workflow steps ("<workflow>.<n>").
func TestIDRule(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	task := baton.NewTask[int, int]("idr", nil, nil)
	for _, id := range []string{"a", "tenant:42", "job_1-2", "A9", strings.Repeat("x", 200)} {
		h, err := task.Enqueue(ctx, b.client, 1, &baton.EnqueueOpts{ID: id})
		require.NoError(t, err, id)
		require.Equal(t, id, h.ID)
		wf, err := b.client.Submit(ctx, task.SI(1, nil), &baton.SubmitOpts{ID: "wf-" + id[:min(len(id), 190)]})
		require.NoError(t, err, id)
		require.Equal(t, "wf-"+id[:min(len(id), 190)]+".1", wf.Plan.Nodes[wf.Plan.Tasks()[0]].TaskID)
	}
}

// TestIDKindCollision: enqueuing an id that exists with another kind is an
// error naming the existing kind, not a handle on the other task's record;
// the same kind stays idempotent.
func TestIDKindCollision(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	add := baton.NewTask[addArgs, int]("coll.add", nil, nil)
	mul := baton.NewTask[addArgs, int]("coll.mul", nil, nil)
	_, err := add.Enqueue(ctx, b.client, addArgs{1, 2}, &baton.EnqueueOpts{ID: "shared"})
	require.NoError(t, err)

	_, err = mul.Enqueue(ctx, b.client, addArgs{3, 4}, &baton.EnqueueOpts{ID: "shared"})
	require.ErrorIs(t, err, baton.ErrInvalidOptions)
	require.ErrorContains(t, err, `task id "shared" is taken by a task of kind "coll.add"`)
	_, err = b.client.EnqueueKind(ctx, "coll.mul", addArgs{3, 4}, &baton.EnqueueOpts{ID: "shared"})
	require.ErrorContains(t, err, `kind "coll.add"`)

	h, err := add.Enqueue(ctx, b.client, addArgs{1, 2}, &baton.EnqueueOpts{ID: "shared"})
	require.NoError(t, err, "the same kind again is idempotent")
	require.Equal(t, "shared", h.ID)
	rec, err := b.client.Get(ctx, "shared")
	require.NoError(t, err)
	require.Equal(t, "coll.add", rec.Kind)

	// A workflow's id is taken too: its record has the canvas's kind.
	_, err = b.client.Submit(ctx, baton.Chain(add.S(addArgs{1, 2}, nil)), &baton.SubmitOpts{ID: "flow"})
	require.NoError(t, err)
	_, err = add.Enqueue(ctx, b.client, addArgs{1, 2}, &baton.EnqueueOpts{ID: "flow"})
	require.ErrorContains(t, err, `task id "flow" is taken by a task of kind "chain"`)
}

// TestCanvasPayloadLimit: the payload limit applies to every message a
// canvas produces, not only to single enqueues: a task over it anywhere in
// the canvas is refused before anything is written.
func TestCanvasPayloadLimit(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{MaxPayloadBytes: 1024})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	blob := baton.NewTask[string, int]("blob", nil, nil)
	big, small := strings.Repeat("x", 2048), "small"

	for name, cv := range map[string]baton.Canvas{
		"single task":            blob.SI(big, nil),
		"first step of a chain":  baton.Chain(blob.SI(big, nil), blob.SI(small, nil)),
		"later step of a chain":  baton.Chain(blob.SI(small, nil), blob.SI(big, nil)),
		"group member":           baton.Group(blob.SI(small, nil), blob.SI(big, nil)),
		"chord body":             baton.Chord(baton.Group(blob.SI(small, nil)), blob.SI(big, nil)),
		"partial args of a step": baton.Chain(blob.SI(small, nil), &baton.Signature{Kind: "blob", Args: json.RawMessage(`{"data":"` + big + `"}`)}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Submit(ctx, cv, nil)
			require.ErrorIs(t, err, baton.ErrPayloadTooLarge)
			require.ErrorIs(t, err, baton.ErrInvalidCanvas)
			require.ErrorContains(t, err, "over the 1024-byte limit (ClientOptions.MaxPayloadBytes)")
			requireNothingWritten(t, b)
		})
	}
	_, err = c.Submit(ctx, baton.Chain(blob.SI(small, nil), blob.SI(small, nil)), nil)
	require.NoError(t, err, "a canvas under the limit passes")
}

// TestWorkerPayloadLimit: a next step whose payload (the previous step's
// result) is over the worker's limit fails the workflow at that step, once,
// naming the limit, instead of being retried as a Redis problem forever.
func TestWorkerPayloadLimit(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	grow := baton.NewTask("grow", func(ctx context.Context, n int) (string, error) { return strings.Repeat("z", n), nil }, nil)
	size := baton.NewTask("measure", func(ctx context.Context, s string) (int, error) { return len(s), nil }, nil)
	b.startWorker(t, &baton.WorkerOptions{MaxPayloadBytes: 2048}, grow, size)

	wf, err := b.client.Submit(ctx, baton.Chain(grow.S(100, nil), size.Sig(nil)), nil)
	require.NoError(t, err)
	var n int
	require.NoError(t, wf.Get(ctx, &n), "a payload under the limit goes through")
	require.Equal(t, 100, n)

	wf, err = b.client.Submit(ctx, baton.Chain(grow.S(4096, nil), size.Sig(nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	_ = requireTaskError(t, err, baton.Failure, "payload too large", "WorkerOptions.MaxPayloadBytes", "2048-byte limit")
	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	require.Equal(t, baton.Success, steps[0].Record.State, "the step itself succeeded")
	require.Equal(t, baton.Failure, steps[1].Record.State, "the step it could not be handed to fails naming it")
	require.Contains(t, steps[1].Record.Error, "payload too large")

	_, err = baton.NewWorker(b.rdb, &baton.WorkerOptions{MaxPayloadBytes: -1})
	require.ErrorContains(t, err, "MaxPayloadBytes -1 is negative")
}

// TestCanvasSizeLimits: a canvas with more tasks than MaxCanvasTasks, or a
// plan larger than MaxCanvasBytes, is refused before anything is written,
// saying which limit and how to change it.
func TestCanvasSizeLimits(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	task := baton.NewTask[int, int]("size", nil, nil)
	group := func(n int) baton.Canvas {
		members := make([]baton.Canvas, n)
		for i := range members {
			members[i] = task.SI(i, nil)
		}
		return baton.Group(members...)
	}

	require.Equal(t, 100_000, baton.MaxCanvasTasksDefault)
	require.Equal(t, 64<<20, baton.MaxCanvasBytesDefault)
	t.Run("default task limit", func(t *testing.T) {
		_, err := b.client.Submit(ctx, group(baton.MaxCanvasTasksDefault+1), nil)
		require.ErrorIs(t, err, baton.ErrInvalidCanvas)
		require.ErrorContains(t, err, "100001 tasks, over the limit of 100000")
		require.ErrorContains(t, err, "ClientOptions.MaxCanvasTasks")
		require.ErrorContains(t, err, "BATON_MAX_CANVAS_TASKS")
		requireNothingWritten(t, b)
	})

	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{MaxCanvasTasks: 10, MaxCanvasBytes: 4096})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	t.Run("tasks", func(t *testing.T) {
		_, err := c.Submit(ctx, group(11), nil)
		require.ErrorIs(t, err, baton.ErrInvalidCanvas)
		require.ErrorContains(t, err, "11 tasks, over the limit of 10 (ClientOptions.MaxCanvasTasks; baton: BATON_MAX_CANVAS_TASKS or --max-canvas-tasks)")
		requireNothingWritten(t, b)
	})
	t.Run("bytes", func(t *testing.T) {
		_, err := c.Submit(ctx, baton.Chain(task.SI(1, nil), &baton.Signature{Kind: "size", Immutable: true, Args: json.RawMessage(`"` + strings.Repeat("y", 5000) + `"`)}), nil)
		require.ErrorIs(t, err, baton.ErrInvalidCanvas)
		require.ErrorIs(t, err, baton.ErrPayloadTooLarge)
		require.ErrorContains(t, err, "over the limit of 4096 bytes (ClientOptions.MaxCanvasBytes; baton: BATON_MAX_CANVAS_BYTES or --max-canvas-bytes)")
		requireNothingWritten(t, b)
	})
	t.Run("at the limits", func(t *testing.T) {
		wf, err := c.Submit(ctx, group(10), nil)
		require.NoError(t, err)
		require.Len(t, wf.Plan.Tasks(), 10)
	})
	t.Run("invalid limits", func(t *testing.T) {
		_, err := baton.NewClient(b.rdb, &baton.ClientOptions{MaxCanvasTasks: -1})
		require.ErrorContains(t, err, "MaxCanvasTasks -1 is negative")
		_, err = baton.NewClient(b.rdb, &baton.ClientOptions{MaxCanvasBytes: -1})
		require.ErrorContains(t, err, "MaxCanvasBytes -1 is negative")
	})
}

// TestDeepCanvas: a canvas nested 3,000 levels deep is refused before
// anything is written, with a short error naming the depth limit.
func TestDeepCanvas(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	task := baton.NewTask[int, int]("deep", nil, nil)
	var c baton.Canvas = task.SI(1, nil)
	for range 3000 {
		c = baton.Chain(baton.Chord(baton.Group(task.SI(1, nil)), c))
	}
	_, err := b.client.Submit(ctx, c, nil)
	require.ErrorIs(t, err, baton.ErrInvalidCanvas)
	require.ErrorContains(t, err, "nested more than 64 levels deep")
	require.Less(t, len(err.Error()), 400, "a short error, not the whole path: %.400s", err)
	requireNothingWritten(t, b)
}

// requireNothingWritten asserts that b's Redis is empty.
func requireNothingWritten(t *testing.T, b *bundle) {
	t.Helper()
	n, err := b.rdb.DBSize(context.Background()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "nothing was written")
}

// TestEveryKeyHasTTL: every key baton writes (asynq's own aside) expires.
func TestEveryKeyHasTTL(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	misc := baton.NewTask("misc", func(ctx context.Context, mode string) (string, error) {
		switch mode {
		case "fail":
			return "", baton.Permanent(errors.New("nope"))
		case "retry":
			return "", baton.RetryAfter(time.Hour, errors.New("later"))
		case "block":
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "", ctx.Err()
		}
		return mode, nil
	}, &baton.TaskOptions{MaxRetries: 1})
	canvasWorker(t, b, misc)
	t.Cleanup(func() { close(release) }) // before the worker's shutdown (cleanups run last first)

	var waits []func() error
	for _, mode := range []string{"ok", "fail"} {
		h, err := misc.Enqueue(ctx, b.client, mode, nil)
		require.NoError(t, err)
		waits = append(waits, func() error { _, err := h.Wait(ctx); return err })
	}
	h, err := misc.Enqueue(ctx, b.client, "ok", &baton.EnqueueOpts{ExpiresIn: time.Millisecond, Countdown: 1200 * time.Millisecond})
	require.NoError(t, err)
	waits = append(waits, func() error { _, err := h.Wait(ctx); return err })
	_, err = misc.Enqueue(ctx, b.client, "ok", &baton.EnqueueOpts{Countdown: time.Hour})
	require.NoError(t, err)
	retrying, err := misc.Enqueue(ctx, b.client, "retry", nil)
	require.NoError(t, err)

	for _, cv := range []baton.Canvas{
		baton.Chain(incr.S(1, nil), double.Sig(nil)),
		baton.Chord(baton.Group(incr.S(1, nil), incr.S(2, nil)), sum.Sig(nil)),
		baton.Chain(incr.S(1, nil), boom.Sig(nil), incr.Sig(nil)),
	} {
		wf, err := b.client.Submit(ctx, cv, nil)
		require.NoError(t, err)
		waits = append(waits, func() error { _, err := wf.Wait(ctx); return err })
	}
	wf, err := b.client.Submit(ctx, baton.Chain(misc.S("block", nil), misc.SI("ok", nil)), nil)
	require.NoError(t, err)
	<-entered
	require.NoError(t, b.client.Cancel(ctx, wf.ID))
	waits = append(waits, func() error { _, err := wf.Wait(ctx); return err })

	for _, w := range waits {
		_ = w() // failures are part of the mix
	}
	waitState(t, b, retrying.ID, baton.Retry)

	var keys []string
	iter := b.rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		if !strings.HasPrefix(iter.Val(), "asynq:") {
			keys = append(keys, iter.Val())
		}
	}
	require.NoError(t, iter.Err())
	require.NotEmpty(t, keys)
	kinds := map[string]bool{}
	for _, k := range keys {
		ttl, err := b.rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Duration(0), "key %s has no TTL", k)
		kinds[strings.SplitN(k, ":", 3)[1]] = true
	}
	for _, k := range []string{"task", "wf", "chord", "workflows"} {
		require.True(t, kinds[k], "the mix wrote a baton:%s key (got %v)", k, kinds)
	}
}

// TestResultTTL: records expire after ResultTTL; a record waiting for a
// retry lives at least until that retry.
func TestResultTTL(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 20*time.Second)
	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{ResultTTL: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	brief := baton.NewTask("brief", func(ctx context.Context, retry bool) (int, error) {
		if retry {
			return 0, baton.RetryAfter(3*time.Second, errors.New("come back later"))
		}
		return 1, nil
	}, &baton.TaskOptions{MaxRetries: 1})
	b.startWorker(t, &baton.WorkerOptions{ResultTTL: time.Second}, brief)

	t.Run("expires", func(t *testing.T) {
		h, err := brief.Enqueue(ctx, c, false, nil)
		require.NoError(t, err)
		_, err = h.Wait(ctx)
		require.NoError(t, err)
		ttl, err := b.rdb.PTTL(ctx, backend.TaskKey(h.ID)).Result()
		require.NoError(t, err)
		requireWithin(t, ttl, time.Millisecond, time.Second, "record TTL")
		redistest.WaitFor(t, 5*time.Second, "record expired", func() bool {
			_, err := c.Get(ctx, h.ID)
			return errors.Is(err, baton.ErrNotFound)
		})
	})

	t.Run("RETRY record outlives its next try", func(t *testing.T) {
		h, err := brief.Enqueue(ctx, c, true, nil)
		require.NoError(t, err)
		rec := waitState(t, b, h.ID, baton.Retry)
		ttl, err := b.rdb.PTTL(ctx, backend.TaskKey(h.ID)).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Until(rec.NextTryAt),
			"the record of a task due again at %v expires in %v: a waiter would see ErrNotFound in between", rec.NextTryAt, ttl)
	})
}
