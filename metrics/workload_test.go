package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/metrics"
	"github.com/batonhq/baton/tasks"
)

// TestScrapeAfterWorkload runs a known workload through a real worker and
// checks what /metrics reports for it: 6 successes (4 ok, the flaky one on
// its second attempt, the chain's first step), 2 failures, 1 retry,
// and the workflow outcomes.
func TestScrapeAfterWorkload(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	var flaky atomic.Int32
	probe := baton.NewTask("metrics_probe", func(ctx context.Context, mode string) (string, error) {
		switch mode {
		case "fail":
			return "", baton.Permanent(errors.New("no"))
		case "flaky":
			if flaky.Add(1) == 1 {
				return "", errors.New("once")
			}
		}
		return mode, nil
	}, &baton.TaskOptions{MaxRetries: 1, RetryDelay: baton.FixedDelay(10 * time.Millisecond)})
	reg := metrics.NewRegistry()
	obs, err := metrics.NewObserver(reg)
	require.NoError(t, err)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observers: []baton.Observer{obs}})
	require.NoError(t, err)
	require.NoError(t, w.Register(probe))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, mode := range []string{"ok", "ok", "ok", "ok", "fail", "flaky"} {
		h, err := probe.Enqueue(ctx, c, mode, nil)
		require.NoError(t, err)
		_, _ = h.Get(ctx)
	}
	// one workflow that fails: a chain whose second step fails
	wf, err := c.Submit(ctx, baton.Chain(probe.S("ok", nil), probe.SI("fail", nil)), nil)
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.Error(t, err)

	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	count := func(pattern string) int {
		m := regexp.MustCompile(pattern + ` (\d+)`).FindStringSubmatch(body)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	require.Equal(t, 6, count(`baton_task_duration_seconds_count\{kind="metrics_probe",outcome="success"\}`), body)
	require.Equal(t, 2, count(`baton_task_duration_seconds_count\{kind="metrics_probe",outcome="failure"\}`))
	require.Equal(t, 1, count(`baton_task_duration_seconds_count\{kind="metrics_probe",outcome="retry"\}`))
	require.Equal(t, 1, count(`baton_task_retries_total\{kind="metrics_probe"\}`))
	require.Equal(t, 1, count(`baton_workflows_finished_total\{kind="chain",outcome="failure"\}`))
}

// TestLLMMetricsFromAnalyze: the analyze task reports its model calls and
// cache look-ups through baton.ObserveLLM to its worker's metrics observer:
// the first run calls the model (a miss, its tokens counted), the second is
// answered from the cache (a hit, no tokens).
func TestLLMMetricsFromAnalyze(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"metrics-model","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":4,"total_tokens":25}}`)
	}))
	t.Cleanup(llm.Close)
	reg := metrics.NewRegistry()
	obs, err := metrics.NewObserver(reg)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := tasks.NewAnalyzer(tasks.LLMConfig{BaseURL: llm.URL + "/v1", APIKey: "sk-test", Logger: log}, rdb)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: log, Queues: map[string]int{tasks.AnalyzeQueue: 1},
		Observers: []baton.Observer{obs}})
	require.NoError(t, err)
	analyze := tasks.AnalyzeTask(a)
	require.NoError(t, w.Register(analyze))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	c, err := baton.NewClient(rdb, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Declare(analyze)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		h, err := c.EnqueueKind(ctx, analyze.Kind(), tasks.AnalyzeArgs{Sources: []json.RawMessage{json.RawMessage(`{"t":"same"}`)}}, nil)
		require.NoError(t, err)
		_, err = c.Wait(ctx, h.ID)
		require.NoError(t, err)
	}
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`baton_llm_tokens_total{model="metrics-model",type="prompt"} 21`,
		`baton_llm_tokens_total{model="metrics-model",type="completion"} 4`,
		`baton_llm_cache_requests_total{result="miss"} 1`,
		`baton_llm_cache_requests_total{result="hit"} 1`,
	} {
		require.Contains(t, body, want)
	}
}
