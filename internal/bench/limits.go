package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
)

// W9 limited run: this many tasks (a fifth with Quick) under this rate.
const (
	w9Tasks = 1000
	w9Rate  = 200 // per second, burst 1
)

// runW9: flow control.
//
// First W2 twice in the same run, both baton: the no-op task under a rate
// limit high enough never to bind (1,000,000/s, burst 1,000,000) and with
// no limit: the ratio is the cost of the limit check (one script call per
// task), and the script calls per task on each side (from INFO
// commandstats) show where it goes. A kind without a limit makes no call at
// all (TestNoLimitNoRedisCall).
//
// Then a limited run: w9Tasks pre-enqueued no-op tasks under w9Rate/s,
// burst 1; the achieved rate, from the first handler start to the last, is
// compared with the configured one.
func runW9(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	never := &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}}}
	lim, free, err := runPairNamed(ctx, env, o, "W9 W2 never-binding limit", [2]string{"limit", "none"},
		func(ctx context.Context) (figures, error) {
			return batonProcessWith(ctx, env, o.N, o.Concurrency, never)
		},
		func(ctx context.Context) (figures, error) { return batonProcessWith(ctx, env, o.N, o.Concurrency, nil) })
	if err != nil {
		return nil, "", err
	}
	perTask := func(fs []figures) []float64 { return pick(fs, func(f figures) float64 { return f.perTask }) }
	rows := []Row{
		newRow("W9", fmt.Sprintf("W2 under a never-binding rate limit, c=%d", o.Concurrency), "tasks/s",
			rates(lim), "no limit", rates(free), &Target{MinRatio: 0.9}),
		newRow("W9", "script calls per task (INFO commandstats)", "calls", perTask(lim), "no limit", perTask(free), nil),
	}

	n := w9Tasks
	if o.Quick {
		n /= 5
	}
	var achieved, configured []float64
	for range o.Repeats {
		if err := env.flush(ctx); err != nil {
			return rows, "", err
		}
		r, err := limitedRate(ctx, env, n, o.Concurrency, w9Rate)
		if err != nil {
			return rows, "", fmt.Errorf("limited run: %w", err)
		}
		fmt.Fprintf(o.Progress, "  %-28s %10.1f/s (limit %d/s)\n", "W9 limited run", r, w9Rate)
		achieved, configured = append(achieved, r), append(configured, w9Rate)
	}
	rows = append(rows, newRow("W9", fmt.Sprintf("achieved rate, %d tasks under %d/s burst 1", n, w9Rate), "tasks/s",
		achieved, "configured", configured, &Target{Within: 0.05}))
	note := "both sides of the first two rows are baton; the limited run's rate is measured from the first handler start to the last"
	return rows, note, nil
}

// limitedRate runs n pre-enqueued no-op tasks under a rate limit of rate/s
// and returns the rate their handlers started at.
func limitedRate(ctx context.Context, env *redisEnv, n, conc, rate int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var mu sync.Mutex
	starts := make([]time.Time, 0, n)
	cnt := newCounter(n)
	task := baton.NewTask("limited", func(context.Context, noopArgs) (noopResult, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		cnt.inc()
		return noopResult{OK: true}, nil
	}, &baton.TaskOptions{RateLimits: []baton.RateLimit{{Rate: rate, Per: time.Second}}})
	if err := parallel(n, enqueueGoroutines, func(int) error {
		_, err := task.Enqueue(ctx, c, noopArgs{}, nil)
		return err
	}); err != nil {
		return 0, fmt.Errorf("pre-enqueue: %w", err)
	}
	wrdb := env.client()
	defer wrdb.Close()
	w, err := batonWorker(wrdb, conc, env.observers, task)
	if err != nil {
		return 0, err
	}
	if err := w.Start(); err != nil {
		return 0, err
	}
	err = awaitDrained(ctx, rdb, cnt)
	w.Shutdown()
	if err != nil {
		return 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	return float64(len(starts)-1) / starts[len(starts)-1].Sub(starts[0]).Seconds(), nil
}

// scriptCalls is how many script calls (EVALSHA and EVAL) Redis served
// since its stats were last reset.
func scriptCalls(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("commandstats %q: %w", line, err)
				}
				total += n
			}
		}
	}
	return total, nil
}
