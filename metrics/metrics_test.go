package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/metrics"
)

func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestTaskMetrics(t *testing.T) {
	reg := metrics.NewRegistry()
	obs, err := metrics.NewObserver(reg)
	require.NoError(t, err)
	ctx := context.Background()
	fetch := baton.TaskInfo{ID: "t1", Kind: "mt_fetch", Queue: "default"}
	for range 3 {
		obs.TaskFinished(ctx, fetch, baton.TaskEnd{Outcome: baton.OutcomeSuccess, Ran: true, Duration: 20 * time.Millisecond})
	}
	obs.TaskFinished(ctx, fetch, baton.TaskEnd{Outcome: baton.OutcomeFailure, Ran: true, Duration: 2 * time.Second})
	obs.RetryScheduled(ctx, fetch, baton.RetryInfo{Delay: time.Second})
	obs.RetryScheduled(ctx, fetch, baton.RetryInfo{Delay: time.Second})
	obs.WorkflowFinished(ctx, baton.WorkflowEnd{ID: "wf", Kind: "chord", Outcome: baton.OutcomeSuccess})
	obs.LLMUsed(ctx, baton.LLMUsage{Model: "mt-model", PromptTokens: 120, CompletionTokens: 30, Cache: baton.LLMCacheMiss})
	obs.LLMUsed(ctx, baton.LLMUsage{Model: "mt-model", Cache: baton.LLMCacheHit})
	obs.LLMUsed(ctx, baton.LLMUsage{Model: "mt-model", Cache: baton.LLMCacheHit})
	obs.TaskThrottled(ctx, fetch, baton.ThrottleInfo{Limit: "fetch-rate", Wait: time.Second})
	// not timed: the handler did not run, or the delivery only waited
	obs.TaskFinished(ctx, fetch, baton.TaskEnd{Outcome: baton.OutcomeThrottled})
	obs.TaskFinished(ctx, fetch, baton.TaskEnd{Outcome: baton.OutcomeInterrupted, Ran: true, Duration: time.Second})
	obs.TaskFinished(ctx, fetch, baton.TaskEnd{Outcome: baton.OutcomeRevoked})

	out := scrape(t, reg)
	for _, want := range []string{
		`baton_task_duration_seconds_count{kind="mt_fetch",outcome="success"} 3`,
		`baton_task_duration_seconds_count{kind="mt_fetch",outcome="failure"} 1`,
		`baton_task_duration_seconds_bucket{kind="mt_fetch",outcome="success",le="0.025"} 3`,
		`baton_task_retries_total{kind="mt_fetch"} 2`,
		`baton_workflows_finished_total{kind="chord",outcome="success"} 1`,
		`baton_llm_tokens_total{model="mt-model",type="prompt"} 120`,
		`baton_llm_tokens_total{model="mt-model",type="completion"} 30`,
		`baton_llm_cache_requests_total{result="hit"} 2`,
		`baton_llm_cache_requests_total{result="miss"} 1`,
		`baton_throttled_total{kind="mt_fetch",limit="fetch-rate"} 1`,
		`go_goroutines`,
	} {
		require.Contains(t, out, want)
	}
	for _, not := range []string{`outcome="throttled"`, `outcome="interrupted"`, `outcome="revoked"`} {
		require.NotContains(t, out, not)
	}

	_, err = metrics.NewObserver(reg)
	require.ErrorContains(t, err, "one Observer per registry")
}

func TestQueueCollector(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for range 4 {
		_, err := c.EnqueueKind(ctx, "noop", map[string]int{"x": 1}, nil)
		require.NoError(t, err)
	}
	_, err = c.EnqueueKind(ctx, "noop", nil, &baton.EnqueueOpts{Queue: "llm", Countdown: time.Hour})
	require.NoError(t, err)

	qc := metrics.NewQueueCollector(rdb, time.Hour)
	out := collect(t, qc)
	require.Contains(t, out, `baton_queue_tasks{queue="default",state="pending"} 4`)
	require.Contains(t, out, `baton_queue_tasks{queue="llm",state="scheduled"} 1`)
	require.Contains(t, out, `baton_queue_size{queue="default"} 4`)

	// Within the refresh interval a scrape is served from the cache: new
	// work is not seen and Redis is not read.
	_, err = c.EnqueueKind(ctx, "noop", nil, nil)
	require.NoError(t, err)
	require.Contains(t, collect(t, qc), `baton_queue_tasks{queue="default",state="pending"} 4`)

	fresh := metrics.NewQueueCollector(rdb, time.Millisecond)
	require.Contains(t, collect(t, fresh), `baton_queue_tasks{queue="default",state="pending"} 5`)
}

func TestWatchQueues(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.EnqueueKind(context.Background(), "noop", nil, &baton.EnqueueOpts{Queue: "watched"})
	require.NoError(t, err)
	reg := metrics.NewRegistry()
	unregister := metrics.WatchQueues(reg, rdb)
	require.Contains(t, scrape(t, reg), `baton_queue_tasks{queue="watched",state="pending"} 1`)
	unregister()
	require.NotContains(t, scrape(t, reg), `queue="watched"`)
}

func collect(t *testing.T, c *metrics.QueueCollector) string {
	t.Helper()
	var sb strings.Builder
	reg := newReg(t, c)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sb.WriteString(mf.GetName())
			sb.WriteString("{")
			for i, l := range m.GetLabel() {
				if i > 0 {
					sb.WriteString(",")
				}
				sb.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
			}
			sb.WriteString("} ")
			switch {
			case m.Gauge != nil:
				sb.WriteString(trim(m.GetGauge().GetValue()))
			case m.Counter != nil:
				sb.WriteString(trim(m.GetCounter().GetValue()))
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}
