package tracing_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tracing"
)

// side is one process's tracing: a provider recording its spans.
type side struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
	obs *tracing.Observer
}

func newSide(t *testing.T) *side {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &side{rec: rec, tp: tp, obs: tracing.New(tp, nil)}
}

// ended returns the ended spans named name.
func (s *side) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.rec.Ended() {
		if sp.Name() == name {
			out = append(out, sp)
		}
	}
	return out
}

func attr(sp sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range sp.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

type env struct {
	rdb    redis.UniversalClient
	client *baton.Client
	worker *side
	caller *side
}

// setup: a worker and a client, each with its own tracer provider, as two
// processes would have.
func setup(t *testing.T, defs ...baton.Definition) *env {
	t.Helper()
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	e := &env{rdb: rdb, worker: newSide(t), caller: newSide(t)}
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Observers: []baton.Observer{e.worker.obs}})
	require.NoError(t, err)
	require.NoError(t, w.Register(defs...))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	e.client, err = baton.NewClient(rdb, &baton.ClientOptions{Observers: []baton.Observer{e.caller.obs}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.client.Close() })
	return e
}

// TestWorkflowIsOneTrace: a chain whose second step is a chord: the submit
// span is the root, first steps its children, each later step the child of
// the run span that handed it on, all in one trace, with their attributes.
func TestWorkflowIsOneTrace(t *testing.T) {
	add := baton.NewTask("tr.add", func(ctx context.Context, n int) (int, error) { return n + 1, nil }, nil)
	sum := baton.NewTask("tr.sum", func(ctx context.Context, ns []int) (int, error) {
		s := 0
		for _, n := range ns {
			s += n
		}
		return s, nil
	}, nil)
	e := setup(t, add, sum)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wf, err := e.client.Submit(ctx, baton.Chain(add.S(1, nil), baton.Chord(baton.Group(add.Sig(nil), add.Sig(nil)), sum.Sig(nil))), nil)
	require.NoError(t, err)
	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, 6, got)
	redistest.WaitFor(t, 10*time.Second, "four run spans ended", func() bool {
		return len(e.worker.ended("run tr.add")) == 3 && len(e.worker.ended("run tr.sum")) == 1
	})

	subs := e.caller.ended("submit chain")
	require.Len(t, subs, 1)
	sub := subs[0]
	require.False(t, sub.Parent().IsValid(), "submit is the root")
	require.Equal(t, trace.SpanKindProducer, sub.SpanKind())
	require.Equal(t, wf.ID, attr(sub, tracing.WorkflowID).AsString())
	require.Equal(t, int64(4), attr(sub, tracing.WorkflowTasks).AsInt64())
	traceID := sub.SpanContext().TraceID()

	steps, err := wf.Steps(ctx)
	require.NoError(t, err)
	byTask := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range e.worker.rec.Ended() {
		byTask[attr(sp, tracing.TaskID).AsString()] = sp
		require.Equal(t, traceID, sp.SpanContext().TraceID(), "%s is in the workflow's trace", sp.Name())
		require.Equal(t, trace.SpanKindConsumer, sp.SpanKind())
		require.Equal(t, wf.ID, attr(sp, tracing.WorkflowID).AsString())
		require.Equal(t, int64(1), attr(sp, tracing.TaskAttempt).AsInt64())
		require.Equal(t, "success", attr(sp, tracing.TaskOutcome).AsString())
		require.Equal(t, codes.Unset, sp.Status().Code)
	}
	first, h1, h2, body := byTask[steps[0].Record.ID], byTask[steps[1].Record.ID], byTask[steps[2].Record.ID], byTask[steps[3].Record.ID]
	require.Equal(t, sub.SpanContext().SpanID(), first.Parent().SpanID(), "the first step is the submit span's child")
	require.True(t, first.Parent().IsRemote(), "carried in the message")
	require.Equal(t, first.SpanContext().SpanID(), h1.Parent().SpanID(), "the chord's header was handed on by the first step")
	require.Equal(t, first.SpanContext().SpanID(), h2.Parent().SpanID())
	require.Contains(t, []trace.SpanID{h1.SpanContext().SpanID(), h2.SpanContext().SpanID()}, body.Parent().SpanID(),
		"the body is the child of the header task that completed the chord")
	require.Equal(t, "tr.sum", attr(body, tracing.TaskKind).AsString())
	require.Equal(t, "default", attr(body, tracing.TaskQueue).AsString())
	require.Equal(t, steps[3].Record.ID, attr(body, tracing.TaskID).AsString())

	var ended []string
	for _, ev := range body.Events() {
		ended = append(ended, ev.Name)
	}
	require.Contains(t, ended, tracing.EventWorkflowFinished, "the last step's span records the workflow's end")
}

// TestRetrySpans: each attempt is a span, siblings under the enqueue span;
// a failed attempt's span is an error and records the retry.
func TestRetrySpans(t *testing.T) {
	var calls atomic.Int32
	flaky := baton.NewTask("tr.flaky", func(ctx context.Context, n int) (int, error) {
		if calls.Add(1) == 1 {
			return 0, errors.New("upstream hiccup")
		}
		return n, nil
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	never := baton.NewTask("tr.never", func(ctx context.Context, n int) (int, error) {
		return 0, baton.Permanent(errors.New("bad input"))
	}, nil)
	e := setup(t, flaky, never)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The caller's own span is the parent of the enqueue span.
	ctx, parent := e.caller.tp.Tracer("test").Start(ctx, "caller")
	h, err := flaky.Enqueue(ctx, e.client, 5, nil)
	require.NoError(t, err)
	parent.End()
	_, err = h.Get(ctx)
	require.NoError(t, err)
	hn, err := never.Enqueue(context.Background(), e.client, 1, nil)
	require.NoError(t, err)
	_, err = hn.Get(ctx)
	require.Error(t, err)
	redistest.WaitFor(t, 10*time.Second, "three run spans", func() bool {
		return len(e.worker.ended("run tr.flaky")) == 2 && len(e.worker.ended("run tr.never")) == 1
	})

	enq := e.caller.ended("enqueue tr.flaky")
	require.Len(t, enq, 1)
	require.Equal(t, parent.SpanContext().SpanID(), enq[0].Parent().SpanID())
	require.Equal(t, h.ID, attr(enq[0], tracing.TaskID).AsString())
	runs := e.worker.ended("run tr.flaky")
	for i, sp := range runs {
		require.Equal(t, enq[0].SpanContext().SpanID(), sp.Parent().SpanID(), "every attempt is the enqueue span's child")
		require.Equal(t, int64(i+1), attr(sp, tracing.TaskAttempt).AsInt64())
	}
	require.Equal(t, "retry", attr(runs[0], tracing.TaskOutcome).AsString())
	require.Equal(t, codes.Error, runs[0].Status().Code)
	require.Equal(t, "upstream hiccup", runs[0].Status().Description)
	var evs []string
	for _, ev := range runs[0].Events() {
		evs = append(evs, ev.Name)
	}
	require.Contains(t, evs, tracing.EventRetry)
	require.Equal(t, "success", attr(runs[1], tracing.TaskOutcome).AsString())

	nv := e.worker.ended("run tr.never")[0]
	require.Equal(t, "failure", attr(nv, tracing.TaskOutcome).AsString())
	require.Equal(t, codes.Error, nv.Status().Code)
	require.Contains(t, nv.Status().Description, "bad input")
}

// TestLLMUsageEvent: ObserveLLM from a handler is an event on its span.
func TestLLMUsageEvent(t *testing.T) {
	task := baton.NewTask("tr.llm", func(ctx context.Context, n int) (int, error) {
		baton.ObserveLLM(ctx, baton.LLMUsage{Model: "m", PromptTokens: 12, CompletionTokens: 3, Cache: baton.LLMCacheMiss})
		return n, nil
	}, nil)
	e := setup(t, task)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := task.Enqueue(ctx, e.client, 1, nil)
	require.NoError(t, err)
	_, err = h.Get(ctx)
	require.NoError(t, err)
	redistest.WaitFor(t, 10*time.Second, "the run span", func() bool { return len(e.worker.ended("run tr.llm")) == 1 })
	evs := e.worker.ended("run tr.llm")[0].Events()
	require.Len(t, evs, 1)
	require.Equal(t, tracing.EventLLMUsage, evs[0].Name)
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range evs[0].Attributes {
		got[kv.Key] = kv.Value
	}
	require.Equal(t, "m", got[tracing.GenAIRequestModel].AsString())
	require.Equal(t, int64(12), got[tracing.GenAIUsageInputTokens].AsInt64())
	require.Equal(t, int64(3), got[tracing.GenAIUsageOutputTokens].AsInt64())
	require.Equal(t, "miss", got[tracing.LLMCache].AsString())
}
