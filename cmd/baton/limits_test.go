package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/tasks"
)

func TestConfigLimits(t *testing.T) {
	cfg := config.Default()
	defs := tasks.Builtins()
	cfg.RateLimits = config.RateLimits{"ecko": {N: 1, Per: time.Second}}
	_, err := configLimits(cfg, defs)
	require.ErrorContains(t, err, `BATON_RATE_LIMITS names the task kind "ecko", which this worker does not run (known: echo, fail, flaky, sleep): fix the kind or remove it`)

	cfg.RateLimits = config.RateLimits{"echo": {N: 5, Per: time.Minute, Burst: 2}}
	cfg.ConcurrencyLimits = config.ConcurrencyLimits{"sleep": 3}
	out, err := configLimits(cfg, defs)
	require.NoError(t, err)
	byKind := map[string]baton.TaskOptions{}
	for _, d := range out {
		byKind[d.Kind()] = d.Options()
	}
	require.Len(t, byKind["echo"].RateLimits, 1)
	require.Equal(t, 5, byKind["echo"].RateLimits[0].Rate)
	require.Equal(t, time.Minute, byKind["echo"].RateLimits[0].Per)
	require.Equal(t, 2, byKind["echo"].RateLimits[0].Burst)
	require.Equal(t, 3, byKind["sleep"].ConcurrencyLimits[0].Max)
	require.Empty(t, byKind["fail"].RateLimits)
	require.Empty(t, defs[0].Options().RateLimits, "the definitions given are not changed")
}

// hostLog notes when each request for a path arrived, per host name.
type hostLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
	paths map[string]int
}

func (l *hostLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.Host)
	l.mu.Lock()
	l.times[host] = append(l.times[host], time.Now())
	l.paths[r.URL.Path]++
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"title":%q}`, r.URL.Path)
}

// TestResearchFetchPerHost is the research case: `baton research`
// over 30 sources on two hosts with a `baton worker` configured with
// BATON_FETCH_PER_HOST=2/s. The source server's own clock shows each host's
// fetches spread 2 a second (no 1 s window above rate + burst = 3), the two
// hosts side by side, and every source fetched once: nothing lost.
func TestResearchFetchPerHost(t *testing.T) {
	b := setup(t)
	for _, v := range []string{"OPENAI_API_KEY", "OPENAI_BASE_URL", "BATON_RATE_LIMITS", "BATON_CONCURRENCY_LIMITS"} {
		t.Setenv(v, "")
	}
	t.Setenv("BATON_FETCH_PER_HOST", "2/s")
	t.Setenv("BATON_FETCH_ALLOW_PRIVATE", "true") // the sources listen on 127.0.0.1
	src := &hostLog{times: map[string][]time.Time{}, paths: map[string]int{}}
	srv := httptest.NewServer(src)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	ctx, stop := context.WithCancel(context.Background())
	var workerOut strings.Builder
	done := make(chan int)
	go func() {
		done <- runWithInput(ctx, []string{"worker", "--redis-url=" + b.url, "--log-level", "warn"}, strings.NewReader(""), io.Discard, &workerOut)
	}()
	t.Cleanup(func() {
		stop()
		require.Equal(t, 0, <-done, "worker: %s", workerOut.String())
	})

	var urls []string
	for i := range 30 {
		host := []string{"127.0.0.1", "localhost"}[i%2]
		urls = append(urls, fmt.Sprintf("http://%s:%s/source-%02d.json", host, port, i))
	}
	start := time.Now()
	o := b.run(t, append([]string{"research", "--wait"}, urls...)...).requireCode(t, exitOK)
	took := time.Since(start)
	require.Contains(t, o.stderr, "30/30 fetched")
	require.Contains(t, o.stdout, "Analysis (offline analyzer")

	src.mu.Lock()
	defer src.mu.Unlock()
	require.Len(t, src.paths, 30, "every source fetched")
	for p, n := range src.paths {
		require.Equal(t, 1, n, "%s fetched once", p)
	}
	var firsts []time.Time
	for _, host := range []string{"127.0.0.1", "localhost"} {
		ts := src.times[host]
		require.Len(t, ts, 15, host)
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := range ts {
			n := 0
			for j := i; j < len(ts) && ts[j].Sub(ts[i]) < time.Second; j++ {
				n++
			}
			require.LessOrEqual(t, n, 3, "%s: at most 2/s + burst 1 in any second (from %v)", host, ts[i].Sub(ts[0]))
		}
		span := ts[len(ts)-1].Sub(ts[0])
		require.GreaterOrEqual(t, span, 6800*time.Millisecond, "%s: 15 fetches at 2/s span 7 s", host)
		t.Logf("%s: 15 fetches over %v", host, span.Round(10*time.Millisecond))
		firsts = append(firsts, ts[0])
	}
	require.Less(t, firsts[0].Sub(firsts[1]).Abs(), time.Second, "the two hosts proceed side by side")
	require.Less(t, took, 20*time.Second, "30 sources on 2 hosts at 2/s each: ~7.5 s, not 15 s")
	t.Logf("research over 30 sources took %v", took.Round(10*time.Millisecond))

	// inspect shows the limit, with both hosts as keys.
	o = b.run(t, "inspect").requireCode(t, exitOK)
	require.Regexp(t, `(?m)^LIMIT +TYPE +DEFINITION +KINDS +KEYS +USAGE +WAITING$`, o.stdout)
	require.Regexp(t, `(?m)^fetch\.host +rate +2/s burst 1 per key +fetch +2 +\d+% +0$`, o.stdout)
}
