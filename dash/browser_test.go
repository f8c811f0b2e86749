//go:build browser

package dash_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/dash"
)

// TestBrowser drives the dashboard in headless Chromium against a real Redis
// and a worker running a chord whose header is half done. It needs the
// Debian packages chromium and chromium-driver and is built only with the
// "browser" build tag (make test/browser). Screenshots go to
// $BATON_ARTIFACTS (default: a temporary directory); with
// BATON_DOCS_SCREENSHOT=1 the workflow page is also saved to
// docs/dashboard.png.
func TestBrowser(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not found at %s: apt-get install -y chromium chromium-driver (or set CHROMIUM): %v", chromium, err)
	}
	artifacts := os.Getenv("BATON_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))

	f := setup(t)
	f.block(3, 4)
	f.researchChord(t, "research-7f3a", 1, 2, 3, 4, 99)
	f.waitState(t, "research-7f3a.1", baton.Success)
	f.waitState(t, "research-7f3a.2", baton.Success)
	f.waitState(t, "research-7f3a.3", baton.Started)
	f.waitState(t, "research-7f3a.4", baton.Started)
	f.waitState(t, "research-7f3a.5", baton.Retry)
	// Work waiting on a second queue.
	for i := range 3 {
		_, err := f.client.EnqueueKind(context.Background(), "analyze", []int{i}, &baton.EnqueueOpts{Queue: "llm", Countdown: time.Hour})
		require.NoError(t, err)
	}
	srv := f.serve(t, dash.Options{RefreshInterval: 300 * time.Millisecond})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		p := filepath.Join(artifacts, name)
		require.NoError(t, os.WriteFile(p, png, 0o644))
		t.Logf("screenshot: %s", p)
	}
	poll := func(expr string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second)))
		require.NoError(t, err, "waiting for %s", expr)
	}
	eval := func(expr string, out any) {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		require.NoError(t, err, expr)
		b, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, out))
	}

	// asynqmon lists the queues.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/monitoring/")))
	poll(`!!document.body && document.body.innerText.includes("default") && document.body.innerText.includes("llm")`)
	shot("monitoring.png")

	// The workflow page draws every step of the chord with its state.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/workflows/research-7f3a"),
		chromedp.WaitVisible(chromedp.CSS(`svg#graph g.step`)),
	))
	var drawn map[string]string
	eval(`Object.fromEntries([...document.querySelectorAll("svg#graph g.step")].map(g => [g.dataset.taskId, g.dataset.state]))`, &drawn)
	require.Equal(t, map[string]string{
		"research-7f3a.1": "SUCCESS", "research-7f3a.2": "SUCCESS",
		"research-7f3a.3": "STARTED", "research-7f3a.4": "STARTED",
		"research-7f3a.5": "RETRY", "research-7f3a.6": "PENDING",
	}, drawn)
	var edges int
	eval(`document.querySelectorAll("svg#graph path.edge").length`, &edges)
	require.Equal(t, 5, edges, "every header task fans into the body")
	var fills []string
	eval(`["SUCCESS","STARTED","RETRY","PENDING"].map(s => getComputedStyle(document.querySelector('g.step[data-state="'+s+'"] rect')).fill)`, &fills)
	require.Len(t, fills, 4)
	for i, f := range fills {
		for _, g := range fills[i+1:] {
			require.NotEqual(t, f, g, "each state has its own colour: %v", fills)
		}
	}
	if os.Getenv("BATON_DOCS_SCREENSHOT") == "1" {
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS("main")))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll("../docs", 0o755))
		require.NoError(t, os.WriteFile("../docs/dashboard.png", png, 0o644))
	}
	shot("workflow-running.png")

	// The page follows the run live, without a reload.
	eval(`window.__sameDocument = true`, new(bool))
	f.release(3)
	poll(`document.querySelector('g.step[data-task-id="research-7f3a.3"]').dataset.state === "SUCCESS"`)
	var same bool
	eval(`window.__sameDocument === true`, &same)
	require.True(t, same, "updated in place")
	var progress string
	eval(`document.getElementById("wf-progress").textContent`, &progress)
	require.Equal(t, fmt.Sprintf("%d/%d", 3, 6), progress)

	// The list shows it running.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/workflows")))
	var row string
	eval(`document.querySelector('tr[data-workflow-id="research-7f3a"]').innerText`, &row)
	require.Contains(t, row, "STARTED")
	require.Contains(t, row, "3/6")
	shot("workflows.png")
}
