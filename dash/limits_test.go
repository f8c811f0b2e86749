package dash_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/dash"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/metrics"
)

// TestLimitsPage: the dashboard lists the limits workers enforce, with
// their usage and the tasks waiting on them, as a page, as JSON and in
// /metrics; a dashboard given the registry of its process's workers
// (Options.Metrics) serves their throttled counts too.
func TestLimitsPage(t *testing.T) {
	f := setup(t)
	srv := f.serve(t, dash.Options{})
	t.Run("none", func(t *testing.T) {
		resp, body := get(t, srv.URL+"/limits")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, "No limits.")
		require.Contains(t, body, `<a href="/limits">Limits</a>`, "in the navigation")
	})

	// A kind with one run per hour and a kind with one slot, held.
	gate := make(chan struct{})
	hourly := baton.NewTask("hourly", func(context.Context, int) (int, error) { return 1, nil },
		&baton.TaskOptions{Queue: "limited", RateLimits: []baton.RateLimit{{Rate: 1, Per: time.Hour}}})
	single := baton.NewTask("single", func(ctx context.Context, _ int) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return 1, nil
	}, &baton.TaskOptions{Queue: "limited", ConcurrencyLimits: []baton.ConcurrencyLimit{{Name: "one-at-a-time", Max: 1}}})
	reg := metrics.NewRegistry()
	obs, err := metrics.NewObserver(reg)
	require.NoError(t, err)
	defer metrics.WatchLimits(reg, f.rdb)()
	withWorker := f.serve(t, dash.Options{Metrics: metrics.Handler(reg)})
	w, err := baton.NewWorker(f.rdb, &baton.WorkerOptions{Concurrency: 4, Logger: quiet(), PollInterval: 20 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, Queues: map[string]int{"limited": 1}, // the fixture's worker serves default
		Observers: []baton.Observer{obs}})
	require.NoError(t, err)
	require.NoError(t, w.Register(hourly, single))
	require.NoError(t, w.Start())
	t.Cleanup(w.Shutdown)
	t.Cleanup(func() { close(gate) }) // before Shutdown
	ctx := context.Background()
	for i := range 3 {
		_, err := hourly.Enqueue(ctx, f.client, i, nil)
		require.NoError(t, err)
		_, err = single.Enqueue(ctx, f.client, i, nil)
		require.NoError(t, err)
	}
	redistest.WaitFor(t, 10*time.Second, "two of each kind wait", func() bool {
		ls, err := backend.ReadLimits(ctx, f.rdb)
		return err == nil && len(ls) == 2 && ls[0].Waiting == 2 && ls[1].Waiting == 2
	})

	resp, body := get(t, srv.URL+"/limits")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `data-limit="hourly" data-type="rate" data-waiting="2"`)
	require.Contains(t, body, `data-limit="one-at-a-time" data-type="concurrency" data-waiting="2"`)
	require.Contains(t, body, "1/h burst 1")
	require.Contains(t, body, "max 1")

	_, js := get(t, srv.URL+"/limits.json")
	var d struct {
		Limits []backend.LimitState `json:"limits"`
	}
	require.NoError(t, json.Unmarshal([]byte(js), &d))
	require.Len(t, d.Limits, 2)
	require.Equal(t, []string{"single"}, d.Limits[0].Kinds)
	require.InDelta(t, 1, d.Limits[0].Usage, 0.001, "the one slot is held")

	_, m := get(t, srv.URL+"/metrics")
	require.Contains(t, m, `baton_limit_waiting_tasks{limit="hourly",type="rate"} 2`)
	require.Contains(t, m, `baton_limit_waiting_tasks{limit="one-at-a-time",type="concurrency"} 2`)
	require.Contains(t, m, `baton_limit_usage_ratio{limit="one-at-a-time",type="concurrency"} 1`)
	require.NotContains(t, m, `baton_throttled_total`, "no worker runs in the default dashboard's process")

	_, m = get(t, withWorker.URL+"/metrics")
	require.Contains(t, m, `baton_throttled_total{kind="hourly",limit="hourly"}`)
	require.Contains(t, m, `baton_limit_waiting_tasks{limit="hourly",type="rate"} 2`)
}
