package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/metrics"
)

func scrape(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(metrics.Handler())
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
	for range 3 {
		metrics.ObserveTask("mt_fetch", "SUCCESS", 20*time.Millisecond)
	}
	metrics.ObserveTask("mt_fetch", metrics.OutcomeFailure, 2*time.Second)
	metrics.IncRetry("mt_fetch")
	metrics.IncRetry("mt_fetch")
	metrics.WorkflowFinished("chord", "SUCCESS")
	metrics.AddLLMTokens("mt-model", 120, 30)
	metrics.LLMCacheLookup(true)
	metrics.LLMCacheLookup(false)
	metrics.LLMCacheLookup(true)

	out := scrape(t)
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
		`go_goroutines`,
	} {
		require.Contains(t, out, want)
	}
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
	unregister := metrics.WatchQueues(rdb)
	require.Contains(t, scrape(t), `baton_queue_tasks{queue="watched",state="pending"} 1`)
	unregister()
	require.NotContains(t, scrape(t), `queue="watched"`)
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
