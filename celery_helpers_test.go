package baton_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
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

// The Celery-like tasks of Celery's t/integration/tasks.py, for the port of
// t/integration/test_canvas.py in celery_canvas_test.go. Arguments are
// positional, as in Celery: every signature's static args are a JSON array
// (s and si below), so a previous result is prepended to them. Where Celery
// passes keyword arguments, a trailing JSON object carries them (kw).

// kw is a trailing object of keyword arguments.
type kw = map[string]any

// s is Celery's task.s(*args): a signature with positional args (possibly
// none) that receives the previous result as its first argument.
func s(kind string, args ...any) *baton.Signature {
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		panic(err)
	}
	return &baton.Signature{Kind: kind, Args: raw}
}

// si is Celery's task.si(*args): immutable, it ignores the previous result.
func si(kind string, args ...any) *baton.Signature {
	sig := s(kind, args...)
	sig.Immutable = true
	return sig
}

// times is n copies of c.
func times(n int, c baton.Canvas) []baton.Canvas {
	out := make([]baton.Canvas, n)
	for i := range out {
		out[i] = c
	}
	return out
}

// celeryApp is a worker running the Celery-like tasks on the test's Redis,
// shared by the subtests of one top-level test.
type celeryApp struct {
	*bundle
	insp *asynq.Inspector
}

func newCeleryApp(t *testing.T) *celeryApp {
	t.Helper()
	b := setup(t)
	a := &celeryApp{bundle: b, insp: asynq.NewInspectorFromRedisClient(b.rdb)}
	b.startWorker(t, &baton.WorkerOptions{Concurrency: 16}, a.tasks()...)
	return a
}

// keyFor is a Redis key of the test's own, for redis_echo and redis_count.
func keyFor(t *testing.T, name string) string {
	return "celery:" + regexp.MustCompile(`[^A-Za-z0-9_/-]`).ReplaceAllString(t.Name(), "_") + ":" + name
}

func (a *celeryApp) ctx(t *testing.T) context.Context { return ctxTimeout(t, 60*time.Second) }

// submit submits a canvas and returns its workflow.
func (a *celeryApp) submit(t *testing.T, cv baton.Canvas, opts *baton.SubmitOpts) *baton.Workflow {
	t.Helper()
	wf, err := a.client.Submit(a.ctx(t), cv, opts)
	require.NoError(t, err)
	return wf
}

// get is Celery's res.get(): the workflow's result, which must be want (JSON).
func (a *celeryApp) get(t *testing.T, cv baton.Canvas, want string) *baton.Workflow {
	t.Helper()
	wf := a.submit(t, cv, nil)
	rec, err := wf.Wait(a.ctx(t))
	require.NoError(t, err)
	require.JSONEq(t, want, string(rec.Result))
	return wf
}

// raises is Celery's pytest.raises around res.get(): the workflow fails,
// its error naming each of contains.
func (a *celeryApp) raises(t *testing.T, cv baton.Canvas, contains ...string) *baton.Workflow {
	t.Helper()
	wf := a.submit(t, cv, nil)
	_, err := wf.Wait(a.ctx(t))
	_ = requireTaskError(t, err, baton.Failure, contains...)
	return wf
}

// settle waits until workflow wf has run its course: every step (and every
// step of the workflows steps were replaced with) has its final record and
// was processed, and so was every callback they enqueued. Counts read after
// it are final: callbacks have fixed ids and run at most once.
func (a *celeryApp) settle(t *testing.T, wf *baton.Workflow) {
	t.Helper()
	ctx := a.ctx(t)
	plans := []*chain.Plan{wf.Plan}
	for len(plans) > 0 {
		p := plans[0]
		plans = plans[1:]
		for _, n := range p.Tasks() {
			id := p.Nodes[n].TaskID
			r := a.waitProcessed(t, id, true)
			if r.Replaced != "" {
				sub, err := a.client.Workflow(ctx, r.Replaced)
				require.NoError(t, err)
				plans = append(plans, sub.Plan)
			}
		}
		for _, cb := range p.AllCallbacks() {
			a.waitProcessed(t, cb.ID, false)
		}
	}
}

// waitProcessed waits until task id's record is terminal (or, unless
// required, absent: a callback that never ran) and asynq is done with it.
func (a *celeryApp) waitProcessed(t *testing.T, id string, required bool) *baton.Record {
	t.Helper()
	var last *baton.Record
	redistest.WaitFor(t, waitLimit, "task "+id+" processed", func() bool {
		r, err := a.client.Backend().Get(context.Background(), id)
		if err != nil {
			last = &baton.Record{ID: id}
			return !required && errors.Is(err, backend.ErrNotFound) && a.gone(id)
		}
		last = r
		return r.State.Terminal() && a.gone(id)
	})
	return last
}

// gone reports whether asynq holds no live copy of task id (archived
// failures are done with).
func (a *celeryApp) gone(id string) bool {
	info, err := a.insp.GetTaskInfo(baton.QueueDefault, id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return true
	}
	return err == nil && info.State == asynq.TaskStateArchived
}

// counts runs the canvas build makes with cb, a redis_count callback, and
// checks its result (JSON; "" for Celery's ExpectedException) and that cb
// ran n times.
func (a *celeryApp) counts(t *testing.T, build func(cb *baton.Signature) baton.Canvas, result string, n int) {
	t.Helper()
	key := keyFor(t, "count")
	var wf *baton.Workflow
	if result == "" {
		wf = a.raises(t, build(si("redis_count", key)), expected)
	} else {
		wf = a.get(t, build(si("redis_count", key)), result)
	}
	a.settle(t, wf)
	require.Equal(t, n, a.count(t, key), "callback runs")
}

// count reads a redis_count key.
func (a *celeryApp) count(t *testing.T, key string) int {
	t.Helper()
	n, err := a.rdb.Get(context.Background(), key).Int()
	if err != nil {
		return 0
	}
	return n
}

// echoed reads a redis_echo list.
func (a *celeryApp) echoed(t *testing.T, key string) []string {
	t.Helper()
	out, err := a.rdb.LRange(context.Background(), key, 0, -1).Result()
	require.NoError(t, err)
	return out
}

// record reads a task's record.
func (a *celeryApp) record(t *testing.T, id string) *baton.Record {
	t.Helper()
	r, err := a.client.Get(context.Background(), id)
	require.NoError(t, err)
	return r
}

// stepIDs are a workflow's task ids in plan order.
func stepIDs(wf *baton.Workflow) []string {
	var out []string
	for _, n := range wf.Plan.Tasks() {
		out = append(out, wf.Plan.Nodes[n].TaskID)
	}
	return out
}

// taskOf returns the id of the i-th task of kind in a workflow's plan.
func taskOf(t *testing.T, wf *baton.Workflow, kind string, i int) string {
	t.Helper()
	for _, n := range wf.Plan.Tasks() {
		if wf.Plan.Nodes[n].Sig.Kind == kind {
			if i == 0 {
				return wf.Plan.Nodes[n].TaskID
			}
			i--
		}
	}
	t.Fatalf("no task %q #%d in workflow %s", kind, i, wf.ID)
	return ""
}

// The tasks.

func (a *celeryApp) tasks() []baton.Definition {
	task := func(kind string, fn func(ctx context.Context, args []any) (any, error)) *baton.Task[[]any, any] {
		return baton.NewTask(kind, fn, nil)
	}
	ctxInfo := func(ctx context.Context) baton.TaskInfo { info, _ := baton.InfoFrom(ctx); return info }
	echo := func(ctx context.Context, msg any, key string) error {
		text, ok := msg.(string)
		if !ok {
			b, _ := json.Marshal(msg)
			text = string(b)
		}
		return a.rdb.RPush(ctx, key, text).Err()
	}
	replaceChain := func(last *baton.Signature, onError bool) func(ctx context.Context, args []any) (any, error) {
		return func(ctx context.Context, args []any) (any, error) {
			args, opts := splitKW(args, "link_msg", "redis_key")
			key := "redis-echo"
			if k, ok := opts["redis_key"].(string); ok {
				key = k
			}
			cb := s("redis_echo", key)
			if msg, ok := opts["link_msg"]; ok {
				cb = si("redis_echo", msg, key)
			}
			c := baton.Chain(s("identity", args...), last)
			if onError {
				return nil, baton.Replace(c.WithOnError(cb))
			}
			return nil, baton.Replace(c.WithLink(cb))
		}
	}
	secondOrder := func(name string, replacement func() baton.Canvas) func(ctx context.Context, args []any) (any, error) {
		return func(ctx context.Context, args []any) (any, error) {
			state := len(args) > 0 && args[0] == true
			if !state {
				if err := a.rdb.RPush(ctx, secondOrderKey, "In "+name).Err(); err != nil {
					return nil, err
				}
				return nil, baton.Replace(replacement())
			}
			return nil, a.rdb.RPush(ctx, secondOrderKey, "Out "+name).Err()
		}
	}
	nested := func(kind string, cv func() baton.Canvas) *baton.Task[[]any, any] {
		return task(kind, func(ctx context.Context, args []any) (any, error) {
			raw, err := chain.Marshal(cv())
			return json.RawMessage(raw), err
		})
	}
	defs := []baton.Definition{
		task("identity", func(ctx context.Context, args []any) (any, error) {
			if len(args) != 1 {
				return nil, baton.Permanent(fmt.Errorf("TypeError: identity() takes 1 positional argument but %d were given", len(args)))
			}
			return args[0], nil
		}),
		task("add", func(ctx context.Context, args []any) (any, error) {
			if len(args) < 2 || len(args) > 3 {
				return nil, baton.Permanent(fmt.Errorf("TypeError: add() takes 2 or 3 arguments, got %d", len(args)))
			}
			out := args[0]
			for _, v := range args[1:] {
				var err error
				if out, err = plus(out, v); err != nil {
					return nil, baton.Permanent(err)
				}
			}
			return out, nil
		}),
		task("mul", func(ctx context.Context, args []any) (any, error) {
			x, y, err := twoNumbers(args)
			return x * y, err
		}),
		task("tsum", func(ctx context.Context, args []any) (any, error) {
			if len(args) != 1 {
				return nil, baton.Permanent(fmt.Errorf("TypeError: tsum() takes 1 positional argument but %d were given", len(args)))
			}
			nums, ok := args[0].([]any)
			if !ok {
				return nil, baton.Permanent(fmt.Errorf("TypeError: tsum() takes a list, got %v", args))
			}
			total := 0.0
			for _, n := range nums {
				f, ok := n.(float64)
				if !ok {
					return nil, baton.Permanent(fmt.Errorf("TypeError: tsum() of %v", nums))
				}
				total += f
			}
			return total, nil
		}),
		task("xsum", func(ctx context.Context, args []any) (any, error) {
			if len(args) != 1 {
				return nil, baton.Permanent(fmt.Errorf("TypeError: xsum() takes 1 positional argument but %d were given", len(args)))
			}
			nums, _ := args[0].([]any)
			total := 0.0
			for _, n := range nums {
				switch v := n.(type) {
				case float64:
					total += v
				case []any:
					for _, m := range v {
						total += m.(float64)
					}
				}
			}
			return total, nil
		}),
		task("fail", func(ctx context.Context, args []any) (any, error) {
			msg := "ExpectedException: Task expected to fail"
			for _, v := range args {
				b, _ := json.Marshal(v)
				msg += ", " + string(b)
			}
			return nil, baton.Permanent(errors.New(msg))
		}),
		task("raise_error", func(ctx context.Context, args []any) (any, error) {
			return nil, baton.Permanent(errors.New("ValueError: deliberate error"))
		}),
		task("return_exception", func(ctx context.Context, args []any) (any, error) {
			info, _ := args[0].(map[string]any)
			return []any{info["error"], true}, nil
		}),
		baton.NewTask("retry_once", func(ctx context.Context, args []any) (any, error) {
			if n := ctxInfo(ctx).Retries; n > 0 {
				return n, nil
			}
			return nil, baton.RetryAfter(10*time.Millisecond, errors.New("retry_once: first attempt"))
		}, &baton.TaskOptions{MaxRetries: 1}),
		task("redis_echo", func(ctx context.Context, args []any) (any, error) {
			key := "redis-echo"
			if len(args) > 1 {
				key = args[1].(string)
			}
			return nil, echo(ctx, args[0], key)
		}),
		task("redis_count", func(ctx context.Context, args []any) (any, error) {
			key := "redis-count"
			if len(args) > 0 {
				key = args[0].(string)
			}
			return nil, a.rdb.Incr(ctx, key).Err()
		}),
		// errback_old_style and errback_new_style: both count under the id of
		// the task whose failure they are told of (baton's ErrorInfo).
		task("errback", func(ctx context.Context, args []any) (any, error) {
			info, _ := args[0].(map[string]any)
			id, _ := info["id"].(string)
			return id, a.rdb.Incr(ctx, id).Err()
		}),
		task("print_unicode", func(ctx context.Context, args []any) (any, error) { return nil, nil }),
		task("ids", func(ctx context.Context, args []any) (any, error) {
			info := ctxInfo(ctx)
			return []any{info.WorkflowID, info.ParentID, args[0]}, nil
		}),
		task("collect_ids", func(ctx context.Context, args []any) (any, error) {
			info := ctxInfo(ctx)
			return []any{args[0], []any{info.WorkflowID, info.ParentID, args[1]}}, nil
		}),
		task("add_replaced", func(ctx context.Context, args []any) (any, error) {
			return nil, baton.Replace(s("add", args...))
		}),
		task("replace_with_chain", replaceChain(s("identity"), false)),
		task("replace_with_chain_which_raises", replaceChain(s("raise_error"), true)),
		task("replace_with_empty_chain", func(ctx context.Context, args []any) (any, error) {
			return nil, baton.Replace(baton.Chain())
		}),
		task("add_to_all", func(ctx context.Context, args []any) (any, error) {
			nums, _ := args[0].([]any)
			var g []baton.Canvas
			for _, n := range nums {
				g = append(g, s("add", n, args[1]))
			}
			return nil, baton.Replace(baton.Group(g...))
		}),
		task("fail_replaced", func(ctx context.Context, args []any) (any, error) {
			return nil, baton.Replace(si("fail", args...))
		}),
		task("second_order_replace1", secondOrder("A", func() baton.Canvas {
			return baton.Chain(s("second_order_replace2"), si("second_order_replace1", true))
		})),
		task("second_order_replace2", secondOrder("B", func() baton.Canvas {
			return baton.Chain(s("redis_echo", "In/Out C", secondOrderKey), si("second_order_replace2", true))
		})),
		nested("return_nested_signature_chain_chain", func() baton.Canvas { return baton.Chain(baton.Chain(s("add"))) }),
		nested("return_nested_signature_chain_group", func() baton.Canvas { return baton.Chain(baton.Group(s("add"))) }),
		nested("return_nested_signature_chain_chord", func() baton.Canvas {
			return baton.Chain(baton.Chord(baton.Group(s("add")), s("add")))
		}),
		nested("return_nested_signature_group_chain", func() baton.Canvas { return baton.Group(baton.Chain(s("add"))) }),
		nested("return_nested_signature_group_group", func() baton.Canvas { return baton.Group(baton.Group(s("add"))) }),
		nested("return_nested_signature_group_chord", func() baton.Canvas {
			return baton.Group(baton.Chord(baton.Group(s("add")), s("add")))
		}),
		nested("return_nested_signature_chord_chain", func() baton.Canvas {
			return baton.Chord(baton.Group(baton.Chain(s("add"))), s("add"))
		}),
		nested("return_nested_signature_chord_group", func() baton.Canvas {
			return baton.Chord(baton.Group(baton.Group(s("add"))), s("add"))
		}),
		nested("return_nested_signature_chord_chord", func() baton.Canvas {
			return baton.Chord(baton.Group(baton.Chord(baton.Group(s("add")), s("add"))), s("add"))
		}),
		baton.NewTask("rebuild_signature", func(ctx context.Context, args []json.RawMessage) (string, error) {
			c, err := chain.Parse(args[0])
			if err != nil {
				return "", baton.Permanent(fmt.Errorf("TypeError: not a canvas: %w", err))
			}
			out, err := chain.Marshal(c)
			return string(out), err
		}, nil),
	}
	return defs
}

// secondOrderKey is where second_order_replace1/2 echo (test_second_order_replace).
const secondOrderKey = "celery:second-order-replace"

// splitKW splits a trailing object of keyword arguments off positional args
// when its keys are all among names.
func splitKW(args []any, names ...string) ([]any, map[string]any) {
	if len(args) == 0 {
		return args, nil
	}
	m, ok := args[len(args)-1].(map[string]any)
	if !ok {
		return args, nil
	}
	for k := range m {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+k+" ") {
			return args, nil
		}
	}
	return args[:len(args)-1], m
}

// plus is Python's + on JSON values: numbers add, strings and lists
// concatenate.
func plus(x, y any) (any, error) {
	switch a := x.(type) {
	case float64:
		if b, ok := y.(float64); ok {
			return a + b, nil
		}
	case string:
		if b, ok := y.(string); ok {
			return a + b, nil
		}
	case []any:
		if b, ok := y.([]any); ok {
			return append(append([]any{}, a...), b...), nil
		}
	}
	return nil, fmt.Errorf("TypeError: unsupported operand types for +: %T and %T", x, y)
}

func twoNumbers(args []any) (float64, float64, error) {
	if len(args) == 2 {
		x, ok1 := args[0].(float64)
		y, ok2 := args[1].(float64)
		if ok1 && ok2 {
			return x, y, nil
		}
	}
	return 0, 0, baton.Permanent(fmt.Errorf("TypeError: two numbers expected, got %v", args))
}
