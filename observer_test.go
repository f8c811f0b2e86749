package baton_test

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// event is one observer call as the recorder saw it.
type event struct {
	name string // started, finished, retry, throttled, workflow, llm, enqueuing, enqueued, submitting, submitted
	task baton.TaskInfo
	end  baton.TaskEnd
	rt   baton.RetryInfo
	th   baton.ThrottleInfo
	wf   baton.WorkflowEnd
	llm  baton.LLMUsage
	sub  baton.SubmitInfo
	enq  baton.EnqueueInfo
	err  error
	tag  string // the tag in the call's context (see recorder)
}

type tagKey struct{}

func tagOf(ctx context.Context) string { s, _ := ctx.Value(tagKey{}).(string); return s }

// recorder records every call. Its begin hooks tag the context ("submit
// <id>", "enqueue <id>", "run <id>"), and as a Propagator it carries the
// tag in messages, so a test can tell which context a message was sent
// under and which one a delivery continued.
type recorder struct {
	baton.BaseObserver
	mu     sync.Mutex
	events []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// of returns the events of task id (or of workflow or enqueue id), in order.
func (r *recorder) of(id string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.task.ID == id || e.wf.ID == id || e.sub.ID == id || e.enq.ID == id {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) named(name string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

func names(es []event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.name
		if e.name == "finished" {
			out[i] += " " + string(e.end.Outcome)
		}
	}
	return out
}

func (r *recorder) Enqueuing(ctx context.Context, e baton.EnqueueInfo) context.Context {
	r.add(event{name: "enqueuing", enq: e, tag: tagOf(ctx)})
	return context.WithValue(ctx, tagKey{}, "enqueue "+e.ID)
}
func (r *recorder) Enqueued(ctx context.Context, e baton.EnqueueInfo, err error) {
	r.add(event{name: "enqueued", enq: e, err: err, tag: tagOf(ctx)})
}
func (r *recorder) Submitting(ctx context.Context, e baton.SubmitInfo) context.Context {
	r.add(event{name: "submitting", sub: e, tag: tagOf(ctx)})
	return context.WithValue(ctx, tagKey{}, "submit "+e.ID)
}
func (r *recorder) Submitted(ctx context.Context, e baton.SubmitInfo, err error) {
	r.add(event{name: "submitted", sub: e, err: err, tag: tagOf(ctx)})
}
func (r *recorder) TaskStarted(ctx context.Context, t baton.TaskInfo) context.Context {
	r.add(event{name: "started", task: t, tag: tagOf(ctx)})
	return context.WithValue(ctx, tagKey{}, "run "+t.ID)
}
func (r *recorder) TaskFinished(ctx context.Context, t baton.TaskInfo, e baton.TaskEnd) {
	r.add(event{name: "finished", task: t, end: e, tag: tagOf(ctx)})
}
func (r *recorder) RetryScheduled(ctx context.Context, t baton.TaskInfo, ri baton.RetryInfo) {
	r.add(event{name: "retry", task: t, rt: ri, tag: tagOf(ctx)})
}
func (r *recorder) TaskThrottled(ctx context.Context, t baton.TaskInfo, th baton.ThrottleInfo) {
	r.add(event{name: "throttled", task: t, th: th, tag: tagOf(ctx)})
}
func (r *recorder) WorkflowFinished(ctx context.Context, e baton.WorkflowEnd) {
	r.add(event{name: "workflow", wf: e, tag: tagOf(ctx)})
}
func (r *recorder) LLMUsed(ctx context.Context, u baton.LLMUsage) {
	r.add(event{name: "llm", llm: u, tag: tagOf(ctx)})
}

// propagating is a recorder that carries its tag in messages.
type propagating struct{ *recorder }

func (propagating) Inject(ctx context.Context, carrier map[string]string) {
	if tag := tagOf(ctx); tag != "" {
		carrier["tag"] = tag
	}
}

func (propagating) Extract(ctx context.Context, carrier map[string]string) context.Context {
	return context.WithValue(ctx, tagKey{}, "from "+carrier["tag"])
}

// waitEvents waits until id has n events.
func waitEvents(t *testing.T, r *recorder, id string, n int) []event {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, "observer events of "+id, func() bool { return len(r.of(id)) >= n })
	return r.of(id)
}

// TestObserverAttempts: every delivery is one started/finished pair with
// its outcome; a retry is reported between them; the handler's run is
// timed.
func TestObserverAttempts(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	rec := &recorder{}
	var flaky atomic.Int32
	task := baton.NewTask("obs.probe", func(ctx context.Context, mode string) (string, error) {
		switch mode {
		case "fail":
			return "", baton.Permanent(errors.New("no such thing"))
		case "flaky":
			if flaky.Add(1) == 1 {
				return "", errors.New("once")
			}
		}
		time.Sleep(5 * time.Millisecond) // a measurable run
		return mode, nil
	}, &baton.TaskOptions{MaxRetries: 2, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	b.startWorker(t, &baton.WorkerOptions{Observers: []baton.Observer{rec}}, task)

	ids := map[string]string{}
	for _, mode := range []string{"ok", "flaky", "fail"} {
		h, err := task.Enqueue(ctx, b.client, mode, nil)
		require.NoError(t, err)
		_, _ = h.Get(ctx)
		ids[mode] = h.ID
	}

	ok := waitEvents(t, rec, ids["ok"], 2)
	require.Equal(t, []string{"started", "finished success"}, names(ok))
	require.Equal(t, baton.TaskInfo{ID: ids["ok"], Kind: "obs.probe", Queue: "default"}, ok[0].task)
	end := ok[1].end
	require.True(t, end.Ran)
	require.GreaterOrEqual(t, end.Duration, 5*time.Millisecond)
	require.NoError(t, end.Err)
	require.Equal(t, 2, ok[1].task.MaxRetries, "known once the handler runs")

	fl := waitEvents(t, rec, ids["flaky"], 5)
	require.Equal(t, []string{"started", "retry", "finished retry", "started", "finished success"}, names(fl))
	require.Equal(t, 10*time.Millisecond, fl[1].rt.Delay)
	require.EqualError(t, fl[1].rt.Err, "once")
	require.EqualError(t, fl[2].end.Err, "once")
	require.Equal(t, 0, fl[2].task.Retries)
	require.Equal(t, 1, fl[3].task.Retries, "the second attempt")

	fail := waitEvents(t, rec, ids["fail"], 2)
	require.Equal(t, []string{"started", "finished failure"}, names(fail))
	require.ErrorContains(t, fail[1].end.Err, "no such thing")
	require.True(t, baton.IsPermanent(fail[1].end.Err), "the handler's own error")
}

// TestObserverWorkflow: the client's submit and enqueue hooks, the end of a
// workflow reported once, and a Propagator's context carried from submit to
// the first step and from each step to the next (the worker sends the next
// step under the context its TaskStarted returned).
func TestObserverWorkflow(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	rec := &recorder{}
	obs := propagating{rec}
	add := baton.NewTask("obs.add", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	b.startWorker(t, &baton.WorkerOptions{Observers: []baton.Observer{obs}}, add)
	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{Observers: []baton.Observer{obs}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	wf, err := c.Submit(ctx, baton.Chain(add.S(1, nil), add.Sig(nil), add.Sig(nil)), nil)
	require.NoError(t, err)
	var n int
	require.NoError(t, wf.Get(ctx, &n))
	require.Equal(t, 4, n)

	sub := waitEvents(t, rec, wf.ID, 3)
	require.Equal(t, []string{"submitting", "submitted"}, names(sub[:2]))
	require.Equal(t, baton.SubmitInfo{ID: wf.ID, Kind: "chain"}, sub[0].sub)
	require.Equal(t, baton.SubmitInfo{ID: wf.ID, Kind: "chain", Tasks: 3}, sub[1].sub)
	require.Equal(t, "submit "+wf.ID, sub[1].tag, "Submitted gets the context Submitting returned")
	require.Equal(t, "workflow", sub[2].name)
	require.Equal(t, baton.WorkflowEnd{ID: wf.ID, Kind: "chain", Outcome: baton.OutcomeSuccess}, sub[2].wf)

	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	from := "from submit " + wf.ID
	for _, s := range steps {
		es := waitEvents(t, rec, s.Record.ID, 2)
		require.Equal(t, "started", es[0].name)
		require.Equal(t, from, es[0].tag, "step %s continues the context its message carried", s.Record.ID)
		require.Equal(t, wf.ID, es[0].task.WorkflowID)
		require.Equal(t, "run "+s.Record.ID, es[len(es)-1].tag, "TaskFinished gets the context TaskStarted returned")
		from = "from run " + s.Record.ID
	}
	require.Equal(t, "run "+steps[2].Record.ID, sub[2].tag, "the last step ended the workflow")
	require.Len(t, rec.named("workflow"), 1)

	// Enqueue: its own hooks, the message carries the enqueue context. A
	// task enqueued by a client without observers carries nothing.
	h, err := add.Enqueue(ctx, c, 10, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	require.NoError(t, err)
	es := waitEvents(t, rec, h.ID, 4)
	require.Equal(t, []string{"enqueuing", "enqueued", "started", "finished success"}, names(es))
	require.Equal(t, baton.EnqueueInfo{ID: h.ID, Kind: "obs.add", Queue: "default"}, es[0].enq)
	require.NoError(t, es[1].err)
	require.Equal(t, "from enqueue "+h.ID, es[2].tag)

	plain, err := add.Enqueue(ctx, b.client, 20, nil)
	require.NoError(t, err)
	_, err = plain.Get(ctx)
	require.NoError(t, err)
	es = waitEvents(t, rec, plain.ID, 2)
	require.Empty(t, es[0].tag, "an old-style message without a carrier starts a fresh context")
}

// TestObserverThrottled: a delivery sent back by a limit is reported, and
// its attempt ends throttled without running the handler.
func TestObserverThrottled(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	rec := &recorder{}
	task := baton.NewTask("obs.rare", func(ctx context.Context, n int) (int, error) { return n, nil },
		&baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Hour}}})
	b.startWorker(t, &baton.WorkerOptions{Observers: []baton.Observer{rec}}, task)
	h1, err := task.Enqueue(ctx, b.client, 1, nil)
	require.NoError(t, err)
	_, err = h1.Get(ctx)
	require.NoError(t, err)
	h2, err := task.Enqueue(ctx, b.client, 2, nil)
	require.NoError(t, err)

	es := waitEvents(t, rec, h2.ID, 3)
	require.Equal(t, []string{"started", "throttled", "finished throttled"}, names(es[:3]))
	require.Equal(t, "obs.rare", es[1].th.Limit)
	require.Greater(t, es[1].th.Wait, 50*time.Minute)
	require.False(t, es[2].end.Ran)
	require.Zero(t, es[2].end.Duration)
}

// TestObserverReplaced: a task that replaces itself ends its attempt
// replaced; its replacement's steps are attempts of their own.
func TestObserverReplaced(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	rec := &recorder{}
	leaf := baton.NewTask("obs.leaf", func(ctx context.Context, n int) (int, error) { return n * 2, nil }, nil)
	outer := baton.NewTask("obs.outer", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Replace(leaf.S(n, nil))
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Observers: []baton.Observer{rec}}, leaf, outer)
	h, err := outer.Enqueue(ctx, b.client, 21, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 42, got)
	es := waitEvents(t, rec, h.ID, 2)
	require.Equal(t, []string{"started", "finished replaced"}, names(es))
	require.True(t, es[1].end.Ran)
	wfs := rec.named("workflow")
	require.Len(t, wfs, 1)
	require.Equal(t, h.ID+".r", wfs[0].wf.ID)
	require.Len(t, rec.named("finished"), 2, "the task's attempt and the leaf's: the task's completion by its replacement is no attempt")
}

// TestObserveLLM: a handler's LLM usage reaches its worker's observers with
// the attempt's context; outside a worker ObserveLLM does nothing.
func TestObserveLLM(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	rec := &recorder{}
	task := baton.NewTask("obs.llm", func(ctx context.Context, n int) (int, error) {
		baton.ObserveLLM(ctx, baton.LLMUsage{Model: "m1", PromptTokens: n, CompletionTokens: 3, Cache: baton.LLMCacheMiss})
		return n, nil
	}, nil)
	b.startWorker(t, &baton.WorkerOptions{Observers: []baton.Observer{rec}}, task)
	h, err := task.Enqueue(ctx, b.client, 7, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	require.NoError(t, err)
	llm := rec.named("llm")
	require.Len(t, llm, 1)
	require.Equal(t, baton.LLMUsage{Model: "m1", PromptTokens: 7, CompletionTokens: 3, Cache: baton.LLMCacheMiss}, llm[0].llm)
	require.Equal(t, "run "+h.ID, llm[0].tag)

	require.NotPanics(t, func() { baton.ObserveLLM(context.Background(), baton.LLMUsage{Model: "m1"}) })
}

// panicky panics in every hook.
type panicky struct{ baton.BaseObserver }

func (panicky) TaskStarted(context.Context, baton.TaskInfo) context.Context { panic("boom") }
func (panicky) TaskFinished(context.Context, baton.TaskInfo, baton.TaskEnd) { panic("boom") }
func (panicky) Enqueuing(context.Context, baton.EnqueueInfo) context.Context {
	panic("boom")
}
func (panicky) WorkflowFinished(context.Context, baton.WorkflowEnd) { panic("boom") }
func (panicky) Inject(context.Context, map[string]string)           { panic("boom") }
func (panicky) Extract(context.Context, map[string]string) context.Context {
	panic("boom")
}

// TestObserverPanicIsNotTheTasks: an observer that panics everywhere fails
// nothing: the tasks and the workflow succeed, the other observers still
// see every event, and the panic is logged.
func TestObserverPanicIsNotTheTasks(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 30*time.Second)
	var logs syncBuf // limit_test.go
	rec := &recorder{}
	obs := []baton.Observer{panicky{}, rec}
	add := baton.NewTask("obs.inc", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	w := b.startWorker(t, &baton.WorkerOptions{Observers: obs, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, add)
	c, err := baton.NewClient(b.rdb, &baton.ClientOptions{Observers: obs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	h, err := add.Enqueue(ctx, c, 1, nil)
	require.NoError(t, err)
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, got)
	wf, err := w.Client().Submit(ctx, baton.Chain(add.S(1, nil), add.Sig(nil)), nil)
	require.NoError(t, err)
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, 3, got)
	waitEvents(t, rec, h.ID, 4)
	redistest.WaitFor(t, 5*time.Second, "the workflow's end reported", func() bool { return len(rec.of(wf.ID)) == 3 })
	require.Contains(t, logs.String(), "observer panicked")
}

// TestRootImportsNoObserverBackends: importing baton pulls in neither
// Prometheus nor OpenTelemetry; they live in packages metrics and tracing.
func TestRootImportsNoObserverBackends(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/batonhq/baton", "go list listed the root package")
	for _, d := range deps {
		for _, banned := range []string{"github.com/prometheus/", "go.opentelemetry.io/", "github.com/batonhq/baton/metrics", "github.com/batonhq/baton/tracing"} {
			require.False(t, strings.HasPrefix(d, banned), "the root package depends on %s", d)
		}
	}
}
