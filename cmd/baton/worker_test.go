package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/internal/redistest"
)

// startWorkerCmd runs `baton worker` in a goroutine until the returned stop
// function cancels it; stop returns the exit code and stderr.
func (b *bundle) startWorkerCmd(t *testing.T, args ...string) (stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan int, 1)
	args = append([]string{"worker", "--poll-interval", "20ms", "--shutdown-timeout", "5s", "--redis-url", b.url}, args...)
	go func() { done <- run(ctx, args, &bytes.Buffer{}, &stderr) }()
	stopped := false
	stop = func() (int, string) {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			stopped = true
			return code, stderr.String()
		case <-time.After(30 * time.Second):
			t.Fatal("baton worker did not stop within 30s of its context ending")
			return -1, ""
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return stop
}

func TestWorkerCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxTimeout(t, 60*time.Second)
	stop := b.startWorkerCmd(t)

	h, err := b.client.EnqueueKind(ctx, "echo", map[string]int{"x": 1}, nil)
	require.NoError(t, err)
	rec, err := h.Wait(ctx)
	require.NoError(t, err)
	require.JSONEq(t, `{"x":1}`, string(rec.Result))
	// The default queues include llm and low.
	h, err = b.client.EnqueueKind(ctx, "echo", 2, &baton.EnqueueOpts{Queue: "low"})
	require.NoError(t, err)
	_, err = h.Wait(ctx)
	require.NoError(t, err)

	code, stderr := stop()
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, `msg="worker started"`)
	kinds := regexp.MustCompile(`kinds="\[([^\]]*)\]"`).FindStringSubmatch(stderr)
	require.NotNil(t, kinds, stderr)
	require.Subset(t, strings.Fields(kinds[1]), []string{"echo", "fail", "flaky", "sleep"})
	require.Contains(t, stderr, `msg="worker stopped"`)
}

func TestWorkerCommandQueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxTimeout(t, 60*time.Second)
	stop := b.startWorkerCmd(t, "--queues", "only", "--concurrency", "2")
	h, err := b.client.EnqueueKind(ctx, "echo", 1, &baton.EnqueueOpts{Queue: "only"})
	require.NoError(t, err)
	_, err = h.Wait(ctx)
	require.NoError(t, err)
	code, stderr := stop()
	require.Equal(t, exitOK, code)
	require.Contains(t, stderr, "queues=map[only:1]")
	require.Contains(t, stderr, "concurrency=2")
}

func TestWorkerCommandUsage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.run(t, "worker", "--queues", "a=x").requireCode(t, exitUsage)
	require.Contains(t, o.stderr, `queue "a": weight "x"`)
	o = b.run(t, "worker", "--concurrency", "0").requireCode(t, exitUsage)
	require.Contains(t, o.stderr, "BATON_CONCURRENCY=0 (--concurrency)")
	o = b.run(t, "worker", "extra").requireCode(t, exitUsage)
	require.Contains(t, o.stderr, "takes no arguments")
}

// TestExtraDefinitions replaces the package-level hook for its duration, so
// it does not run in parallel (parallel tests start after it returns).
func TestExtraDefinitions(t *testing.T) {
	b := setup(t)
	upper := baton.NewTask("upper", func(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil },
		&baton.TaskOptions{Queue: "llm"})
	var (
		mu   sync.Mutex
		urls []string // one per process: the worker command, then enqueue
	)
	saved := extraDefinitions
	t.Cleanup(func() { extraDefinitions = saved })
	extraDefinitions = func(cfg config.Config, rdb redis.UniversalClient) []baton.Definition {
		mu.Lock()
		defer mu.Unlock()
		if rdb != nil {
			urls = append(urls, cfg.RedisURL)
		}
		return []baton.Definition{upper}
	}

	stop := b.startWorkerCmd(t)
	// The CLI's client knows the kind and its queue.
	o := b.run(t, "enqueue", "upper", "--args", `"hi"`, "--wait", "--json").requireCode(t, exitOK)
	m := o.record(t)
	require.Equal(t, "HI", m["result"])
	require.Equal(t, "llm", m["queue"])
	code, stderr := stop()
	require.Equal(t, exitOK, code, stderr)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{b.url, b.url}, urls)
}

// TestWorkerRedisLogs: go-redis's own log lines reach the worker's log
// (level=WARN, component=redis), not raw "redis: ..." lines on stderr.
func TestWorkerRedisLogs(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"worker", "--redis-url", b.url, "--log-format", "json"}, &bytes.Buffer{}, &stderr)
	}()
	redistest.WaitFor(t, 15*time.Second, "the worker's pub/sub connection is up", func() bool {
		list, err := b.rdb.ClientList(context.Background()).Result()
		return err == nil && strings.Contains(list, "sub=1")
	})
	require.NoError(t, b.rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err())
	redistest.WaitFor(t, 15*time.Second, "go-redis's line in the worker's log", func() bool {
		return strings.Contains(stderr.String(), "discarding bad PubSub connection")
	})
	cancel()
	require.Equal(t, 0, <-done, stderr.String())
	var found bool
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "discarding bad PubSub connection") {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &rec), l)
			require.Equal(t, "WARN", rec["level"])
			require.Equal(t, "redis", rec["component"])
			found = true
		}
	}
	require.True(t, found)
}

// TestWorkerMetricsAddr: with --metrics-addr the worker serves its task
// metrics (its metrics observer), the limits' usage and the Go runtime's.
func TestWorkerMetricsAddr(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxTimeout(t, 60*time.Second)
	addr := "127.0.0.1:" + closedPort(t)
	stop := b.startWorkerCmd(t, "--metrics-addr", addr)
	h, err := b.client.EnqueueKind(ctx, "echo", 1, nil)
	require.NoError(t, err)
	_, err = h.Wait(ctx)
	require.NoError(t, err)

	var body string
	redistest.WaitFor(t, 10*time.Second, "the echo attempt counted", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		body = string(raw)
		return strings.Contains(body, `baton_task_duration_seconds_count{kind="echo",outcome="success"} 1`)
	})
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, "baton_limit_scrape_errors_total 0", "the limits' collector")
	code, stderr := stop()
	require.Equal(t, exitOK, code, stderr)
}
