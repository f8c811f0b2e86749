package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
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
