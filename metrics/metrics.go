// Package metrics is baton's Prometheus instrumentation: the collectors a
// worker, the dashboard and the tasks update, one registry holding them, and
// an HTTP handler serving it.
//
// Workers and tasks call the Observe/Inc/Add functions below; they are cheap
// (a label lookup and an atomic add) and safe from any goroutine. Queue sizes
// come from asynq's Inspector through a cached collector (see WatchQueues),
// so a scrape never costs more than one Redis round per queue every
// QueueRefreshDefault.
//
// Every metric is prefixed "baton_". Outcome labels use the task states in
// lower case: success, failure, retry, revoked.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "baton"

// Outcomes of a task attempt or a workflow, as label values.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeRetry   = "retry"
	OutcomeRevoked = "revoked"
)

// DurationBuckets are the task duration histogram buckets, in seconds: from
// 5 ms (a cache hit) to 10 min (a long LLM call).
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

var (
	registry = prometheus.NewRegistry()

	taskDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "task_duration_seconds",
		Help:      "Duration of task attempts by kind and outcome (success, failure, retry, revoked).",
		Buckets:   DurationBuckets,
	}, []string{"kind", "outcome"})

	taskRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "task_retries_total",
		Help:      "Task retries scheduled, by kind.",
	}, []string{"kind"})

	workflowsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "workflows_finished_total",
		Help:      "Workflows that ended, by canvas kind (chain, group, chord, task) and outcome.",
	}, []string{"kind", "outcome"})

	llmTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "llm_tokens_total",
		Help:      "LLM tokens used, by model and type (prompt, completion).",
	}, []string{"model", "type"})

	llmCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "llm_cache_requests_total",
		Help:      "LLM response cache look-ups, by result (hit, miss).",
	}, []string{"result"})

	throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "throttled_total",
		Help:      "Deliveries sent back to wait for a rate or concurrency limit (not retries), by kind and limit.",
	}, []string{"kind", "limit"})

	durableParks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "durable_parks_total",
		Help:      "Durable runs parked, by kind and what they wait for (children, sleep, event, retry).",
	}, []string{"kind", "wait"})
)

func init() {
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		taskDuration, taskRetries, workflowsFinished, llmTokens, llmCache, throttled, durableParks,
	)
}

// Registry is the registry holding baton's collectors. Register your own
// collectors on it to serve them from the same endpoint.
func Registry() *prometheus.Registry { return registry }

// Handler serves the registry in the Prometheus exposition format, for
// `baton worker --metrics-addr` and the dashboard's /metrics.
func Handler() http.Handler {
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry})
}

// ObserveTask records one finished task attempt: its kind, its outcome
// (OutcomeSuccess, OutcomeFailure, OutcomeRetry, OutcomeRevoked, or a task
// state such as "SUCCESS") and how long the handler ran.
func ObserveTask(kind, outcome string, d time.Duration) {
	taskDuration.WithLabelValues(kind, normOutcome(outcome)).Observe(d.Seconds())
}

// IncRetry counts one retry scheduled for a task of kind.
func IncRetry(kind string) { taskRetries.WithLabelValues(kind).Inc() }

// WorkflowFinished counts a workflow that ended with outcome; kind is its
// canvas kind (chain.Plan.Kind()).
func WorkflowFinished(kind, outcome string) {
	workflowsFinished.WithLabelValues(kind, normOutcome(outcome)).Inc()
}

// DurableParked counts a durable run of kind parked waiting for wait
// (children, sleep, event or retry).
func DurableParked(kind, wait string) { durableParks.WithLabelValues(kind, wait).Inc() }

// AddLLMTokens adds the token usage of one model call.
func AddLLMTokens(model string, prompt, completion int) {
	if prompt > 0 {
		llmTokens.WithLabelValues(model, "prompt").Add(float64(prompt))
	}
	if completion > 0 {
		llmTokens.WithLabelValues(model, "completion").Add(float64(completion))
	}
}

// IncThrottled counts one delivery of kind sent back to wait for limit.
func IncThrottled(kind, limit string) { throttled.WithLabelValues(kind, limit).Inc() }

// LLMCacheLookup counts one LLM response cache look-up.
func LLMCacheLookup(hit bool) {
	if hit {
		llmCache.WithLabelValues("hit").Inc()
		return
	}
	llmCache.WithLabelValues("miss").Inc()
}

// normOutcome maps task states ("SUCCESS") to outcome labels ("success").
func normOutcome(s string) string { return strings.ToLower(s) }
