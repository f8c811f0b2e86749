// Package metrics is baton's Prometheus instrumentation: an Observer that
// keeps the task, workflow, flow-control and LLM counters of a worker,
// collectors of queue sizes and limit usage read from Redis, and an HTTP
// handler serving a registry.
//
// Nothing is global: the caller creates the registry and registers what it
// wants on it.
//
//	reg := metrics.NewRegistry() // Go runtime and process collectors
//	obs, err := metrics.NewObserver(reg)
//	...
//	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Observers: []baton.Observer{obs}})
//	defer metrics.WatchLimits(reg, rdb)()
//	http.Handle("/metrics", metrics.Handler(reg))
//
// The observer's methods are cheap (a label lookup and an atomic add) and
// safe from any goroutine. Queue sizes come from asynq's Inspector through a
// cached collector (see WatchQueues), so a scrape never costs more than one
// Redis round per queue every QueueRefreshDefault.
//
// Every metric is prefixed "baton_". Outcome labels are baton.Outcome
// values: success, failure, retry, revoked (and replaced, for a task that
// replaced itself with a workflow).
package metrics

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/batonhq/baton"
)

// Namespace prefixes every metric name.
const Namespace = "baton"

// Outcomes of a task attempt or a workflow, as label values.
const (
	OutcomeSuccess = string(baton.OutcomeSuccess)
	OutcomeFailure = string(baton.OutcomeFailure)
	OutcomeRetry   = string(baton.OutcomeRetry)
	OutcomeRevoked = string(baton.OutcomeRevoked)
)

// DurationBuckets are the task duration histogram buckets, in seconds: from
// 5 ms (a cache hit) to 10 min (a long LLM call).
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Observer is a baton.Observer keeping Prometheus metrics:
//
//	baton_task_duration_seconds{kind,outcome}   histogram of handler run times
//	baton_task_retries_total{kind}              retries scheduled
//	baton_workflows_finished_total{kind,outcome}
//	baton_llm_tokens_total{model,type}          type is prompt or completion
//	baton_llm_cache_requests_total{result}      result is hit or miss
//	baton_throttled_total{kind,limit}           deliveries sent back to wait for a limit
//	baton_durable_parks_total{kind,wait}        durable runs parked, by what they wait for
//
// A task attempt is timed only when its handler ran and it ended in
// success, failure, retry, revoked or replaced: an attempt that waited for
// a limit or was interrupted by a shutdown is not.
type Observer struct {
	baton.BaseObserver

	taskDuration      *prometheus.HistogramVec
	taskRetries       *prometheus.CounterVec
	workflowsFinished *prometheus.CounterVec
	llmTokens         *prometheus.CounterVec
	llmCache          *prometheus.CounterVec
	throttled         *prometheus.CounterVec
	durableParks      *prometheus.CounterVec
}

// NewObserver creates the collectors of an Observer and registers them on
// reg. It fails when reg holds baton's metrics already (one Observer per
// registry; share it between the workers of a process).
func NewObserver(reg prometheus.Registerer) (*Observer, error) {
	o := &Observer{
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "task_duration_seconds",
			Help:      "Duration of task attempts by kind and outcome (success, failure, retry, revoked, replaced).",
			Buckets:   DurationBuckets,
		}, []string{"kind", "outcome"}),
		taskRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "task_retries_total",
			Help:      "Task retries scheduled, by kind.",
		}, []string{"kind"}),
		workflowsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "workflows_finished_total",
			Help:      "Workflows that ended, by canvas kind (chain, group, chord, task) and outcome.",
		}, []string{"kind", "outcome"}),
		llmTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "llm_tokens_total",
			Help:      "LLM tokens used, by model and type (prompt, completion).",
		}, []string{"model", "type"}),
		llmCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "llm_cache_requests_total",
			Help:      "LLM response cache look-ups, by result (hit, miss).",
		}, []string{"result"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "throttled_total",
			Help:      "Deliveries sent back to wait for a rate or concurrency limit (not retries), by kind and limit.",
		}, []string{"kind", "limit"}),
		durableParks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "durable_parks_total",
			Help:      "Durable runs parked, by kind and what they wait for (children, sleep, event, retry).",
		}, []string{"kind", "wait"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{o.taskDuration, o.taskRetries, o.workflowsFinished, o.llmTokens, o.llmCache, o.throttled, o.durableParks} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(errors.New("metrics: register baton's collectors (one Observer per registry)"), err)
	}
	return o, nil
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors (go_*, process_*), for NewObserver, WatchQueues and
// WatchLimits to add to.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves g in the Prometheus exposition format, for `baton worker
// --metrics-addr` and the dashboard's /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// TaskFinished implements baton.Observer: it times attempts whose handler
// ran.
func (o *Observer) TaskFinished(_ context.Context, t baton.TaskInfo, e baton.TaskEnd) {
	if e.Outcome == baton.OutcomeParked {
		o.durableParks.WithLabelValues(t.Kind, e.Wait).Inc()
		return
	}
	if !e.Ran {
		return
	}
	switch e.Outcome {
	case baton.OutcomeSuccess, baton.OutcomeFailure, baton.OutcomeRetry, baton.OutcomeRevoked, baton.OutcomeReplaced:
		o.taskDuration.WithLabelValues(t.Kind, string(e.Outcome)).Observe(e.Duration.Seconds())
	}
}

// RetryScheduled implements baton.Observer.
func (o *Observer) RetryScheduled(_ context.Context, t baton.TaskInfo, _ baton.RetryInfo) {
	o.taskRetries.WithLabelValues(t.Kind).Inc()
}

// TaskThrottled implements baton.Observer.
func (o *Observer) TaskThrottled(_ context.Context, t baton.TaskInfo, th baton.ThrottleInfo) {
	o.throttled.WithLabelValues(t.Kind, th.Limit).Inc()
}

// WorkflowFinished implements baton.Observer.
func (o *Observer) WorkflowFinished(_ context.Context, e baton.WorkflowEnd) {
	o.workflowsFinished.WithLabelValues(e.Kind, string(e.Outcome)).Inc()
}

// LLMUsed implements baton.Observer: tokens by model, cache look-ups.
func (o *Observer) LLMUsed(_ context.Context, u baton.LLMUsage) {
	switch u.Cache {
	case baton.LLMCacheHit, baton.LLMCacheMiss:
		o.llmCache.WithLabelValues(string(u.Cache)).Inc()
	}
	if u.PromptTokens > 0 {
		o.llmTokens.WithLabelValues(u.Model, "prompt").Add(float64(u.PromptTokens))
	}
	if u.CompletionTokens > 0 {
		o.llmTokens.WithLabelValues(u.Model, "completion").Add(float64(u.CompletionTokens))
	}
}
