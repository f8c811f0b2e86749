// Package tracing is baton's OpenTelemetry tracing: a baton.Observer that
// records a span for every task attempt, for every Enqueue and for every
// Submit, and carries the W3C trace context from where a task is enqueued
// to where it runs in the task's message, so that a workflow is one trace
// across processes and queues.
//
// # Spans
//
//	submit <canvas kind>  producer  Client.Submit: the root of a workflow's trace
//	                                (or a child of the caller's span)
//	enqueue <kind>        producer  Client.Enqueue, EnqueueKind
//	run <kind>            consumer  one delivery of a task to a worker, child
//	                                of the span that enqueued it
//
// The first steps of a workflow are children of its submit span; a step
// that a worker enqueues when the step before it ends (a chain's next step,
// a chord's body, a callback) is a child of that step's run span (a chord's
// body: of the header task that completed the chord). Retries and deliveries
// sent back by a limit are sibling run spans with the same parent, told apart
// by baton.task.attempt. Attributes name the task (baton.task.id,
// baton.task.kind, baton.task.queue, baton.workflow.id, baton.task.parent_id,
// baton.task.attempt) and the outcome (baton.task.outcome: success, failure,
// retry, revoked, throttled, replaced, skipped, interrupted); a failure or a
// retry sets the span's status to Error with the task's error. Events record
// a retry scheduled, a wait for a limit, the end of a workflow and the LLM
// usage the task reported (baton.ObserveLLM).
//
// # Turning it on
//
// The baton command turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, with FromEnv: spans go over
// OTLP/HTTP, configured by the standard OTEL_* variables (headers, TLS,
// compression, timeout, OTEL_TRACES_SAMPLER, OTEL_BSP_*), and the resource
// names the service (baton-worker for `baton worker`; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override). In a program of your own, give New
// your TracerProvider and pass the Observer to baton.WorkerOptions.Observers
// and baton.ClientOptions.Observers.
package tracing

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/batonhq/baton"
)

// ScopeName is the instrumentation scope of baton's spans.
const ScopeName = "github.com/batonhq/baton/tracing"

// Attribute keys of baton's spans and events.
const (
	TaskID       = attribute.Key("baton.task.id")
	TaskKind     = attribute.Key("baton.task.kind")
	TaskQueue    = attribute.Key("baton.task.queue")
	TaskParentID = attribute.Key("baton.task.parent_id")
	// TaskAttempt is 1 on a task's first delivery, then 1 + the failed
	// attempts before it.
	TaskAttempt   = attribute.Key("baton.task.attempt")
	TaskOutcome   = attribute.Key("baton.task.outcome")
	WorkflowID    = attribute.Key("baton.workflow.id")
	WorkflowKind  = attribute.Key("baton.workflow.kind")
	WorkflowTasks = attribute.Key("baton.workflow.tasks")
	WorkflowOut   = attribute.Key("baton.workflow.outcome")
	Limit         = attribute.Key("baton.limit")
	Delay         = attribute.Key("baton.delay_seconds")
	LLMCache      = attribute.Key("baton.llm.cache")
	LLMDuration   = attribute.Key("baton.llm.duration_seconds")
	LLMError      = attribute.Key("baton.llm.error")
	// GenAI semantic conventions for the LLM usage event.
	GenAIRequestModel      = attribute.Key("gen_ai.request.model")
	GenAIUsageInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	GenAIUsageOutputTokens = attribute.Key("gen_ai.usage.output_tokens")
)

// Event names.
const (
	EventRetry            = "retry scheduled"
	EventThrottled        = "throttled"
	EventWorkflowFinished = "workflow finished"
	EventLLMUsage         = "llm usage"
)

// messagingSystem is the messaging.system of baton's spans.
const messagingSystem = "baton"

// Options configure an Observer. The zero value is valid.
type Options struct {
	// Propagator carries span contexts in task messages. Defaults to W3C
	// Trace Context and Baggage (what a baggage-less context adds is the
	// traceparent alone, about 80 bytes per message).
	Propagator propagation.TextMapPropagator
}

// Observer is a baton.Observer and baton.Propagator recording spans.
type Observer struct {
	baton.BaseObserver
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var (
	_ baton.Observer   = (*Observer)(nil)
	_ baton.Propagator = (*Observer)(nil)
)

// New returns an Observer recording spans with tp (nil: OpenTelemetry's
// global TracerProvider).
func New(tp trace.TracerProvider, opts *Options) *Observer {
	var o Options
	if opts != nil {
		o = *opts
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return &Observer{tracer: tp.Tracer(ScopeName), prop: o.Propagator}
}

// spanKey holds, in a context, the span an Observer started there: its own
// key, so that the end of a task never ends a span another observer (or the
// handler) started.
type spanKey struct{ o *Observer }

func (o *Observer) start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) context.Context {
	ctx, span := o.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, spanKey{o}, span)
}

// span returns the span o started in ctx (a no-op span when none).
func (o *Observer) span(ctx context.Context) trace.Span {
	if s, ok := ctx.Value(spanKey{o}).(trace.Span); ok {
		return s
	}
	return trace.SpanFromContext(context.Background())
}

// end ends o's span in ctx, with err as its error.
func (o *Observer) end(ctx context.Context, err error) {
	s := o.span(ctx)
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// Enqueuing implements baton.Observer: it starts the enqueue span.
func (o *Observer) Enqueuing(ctx context.Context, e baton.EnqueueInfo) context.Context {
	return o.start(ctx, "enqueue "+e.Kind, trace.SpanKindProducer,
		TaskID.String(e.ID), TaskKind.String(e.Kind), TaskQueue.String(e.Queue),
		semconv.MessagingSystemKey.String(messagingSystem), semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(e.Queue), semconv.MessagingMessageID(e.ID))
}

// Enqueued implements baton.Observer: it ends the enqueue span.
func (o *Observer) Enqueued(ctx context.Context, _ baton.EnqueueInfo, err error) { o.end(ctx, err) }

// Submitting implements baton.Observer: it starts the submit span, parent
// of the workflow's first steps.
func (o *Observer) Submitting(ctx context.Context, e baton.SubmitInfo) context.Context {
	return o.start(ctx, "submit "+e.Kind, trace.SpanKindProducer,
		WorkflowID.String(e.ID), WorkflowKind.String(e.Kind),
		semconv.MessagingSystemKey.String(messagingSystem), semconv.MessagingOperationTypeSend)
}

// Submitted implements baton.Observer: it ends the submit span.
func (o *Observer) Submitted(ctx context.Context, e baton.SubmitInfo, err error) {
	o.span(ctx).SetAttributes(WorkflowTasks.Int(e.Tasks))
	o.end(ctx, err)
}

// TaskStarted implements baton.Observer: it starts the attempt's span,
// child of the context the message carried.
func (o *Observer) TaskStarted(ctx context.Context, t baton.TaskInfo) context.Context {
	attrs := []attribute.KeyValue{
		TaskID.String(t.ID), TaskKind.String(t.Kind), TaskQueue.String(t.Queue), TaskAttempt.Int(t.Retries + 1),
		semconv.MessagingSystemKey.String(messagingSystem), semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationName(t.Queue), semconv.MessagingMessageID(t.ID),
	}
	if t.WorkflowID != "" {
		attrs = append(attrs, WorkflowID.String(t.WorkflowID))
	}
	if t.ParentID != "" {
		attrs = append(attrs, TaskParentID.String(t.ParentID))
	}
	return o.start(ctx, "run "+t.Kind, trace.SpanKindConsumer, attrs...)
}

// TaskFinished implements baton.Observer: it ends the attempt's span with
// its outcome; a failure or a retry is an error.
func (o *Observer) TaskFinished(ctx context.Context, _ baton.TaskInfo, e baton.TaskEnd) {
	s := o.span(ctx)
	s.SetAttributes(TaskOutcome.String(string(e.Outcome)))
	switch {
	case e.Outcome == baton.OutcomeFailure || e.Outcome == baton.OutcomeRetry:
		err := e.Err
		if err == nil {
			err = errors.New(string(e.Outcome))
		}
		o.end(ctx, err)
		return
	case e.Err != nil:
		s.RecordError(e.Err) // revoked, interrupted, throttled by an upstream: not the span's failure
	}
	s.End()
}

// RetryScheduled implements baton.Observer: an event on the attempt's span.
func (o *Observer) RetryScheduled(ctx context.Context, _ baton.TaskInfo, r baton.RetryInfo) {
	o.span(ctx).AddEvent(EventRetry, trace.WithAttributes(Delay.Float64(r.Delay.Seconds())))
}

// TaskThrottled implements baton.Observer: an event on the attempt's span.
func (o *Observer) TaskThrottled(ctx context.Context, _ baton.TaskInfo, th baton.ThrottleInfo) {
	o.span(ctx).AddEvent(EventThrottled, trace.WithAttributes(Limit.String(th.Limit), Delay.Float64(th.Wait.Seconds())))
}

// WorkflowFinished implements baton.Observer: an event on the span of the
// attempt that ended the workflow.
func (o *Observer) WorkflowFinished(ctx context.Context, e baton.WorkflowEnd) {
	o.span(ctx).AddEvent(EventWorkflowFinished, trace.WithAttributes(WorkflowID.String(e.ID), WorkflowKind.String(e.Kind),
		WorkflowOut.String(string(e.Outcome))))
}

// LLMUsed implements baton.Observer: an event on the attempt's span.
func (o *Observer) LLMUsed(ctx context.Context, u baton.LLMUsage) {
	attrs := []attribute.KeyValue{GenAIRequestModel.String(u.Model), GenAIUsageInputTokens.Int(u.PromptTokens),
		GenAIUsageOutputTokens.Int(u.CompletionTokens), LLMCache.String(string(u.Cache))}
	if u.Duration > 0 {
		attrs = append(attrs, LLMDuration.Float64(u.Duration.Seconds()))
	}
	if u.Err != nil {
		attrs = append(attrs, LLMError.String(u.Err.Error()))
	}
	o.span(ctx).AddEvent(EventLLMUsage, trace.WithAttributes(attrs...))
}

// Inject implements baton.Propagator: the span context of ctx goes into
// the messages sent under it.
func (o *Observer) Inject(ctx context.Context, carrier map[string]string) {
	o.prop.Inject(ctx, propagation.MapCarrier(carrier))
}

// Extract implements baton.Propagator: the context a message carried
// becomes the parent of the attempt's span.
func (o *Observer) Extract(ctx context.Context, carrier map[string]string) context.Context {
	return o.prop.Extract(ctx, propagation.MapCarrier(carrier))
}
