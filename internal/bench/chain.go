package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// waiters is how many goroutines wait on W3's and W4's workflows.
const waiters = 8

// naivePoll is the TaskCheckInterval of the naive asynq chain and chord:
// with asynq's default (1 s) an idle processor sleeps up to 1.5 s whenever
// the queue runs dry for a moment (at the start, between a step and the
// next), and the figure measures that sleep rather than the work. 1 ms is
// what baton's worker gives asynq while woken.
const naivePoll = time.Millisecond

// runW3: N/10 chains chain(fetch-like, analyze-like) with ~1 KB payloads,
// submitted at once to a running worker, until every final result is in.
func runW3(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	n := o.N / 10
	b, a, err := runPair(ctx, env, o, "W3 chains",
		func(ctx context.Context) (figures, error) { return batonChains(ctx, env, n, o.Concurrency) },
		func(ctx context.Context) (figures, error) { return asynqChains(ctx, env, n, o.Concurrency) })
	if err != nil {
		return nil, "", err
	}
	const base = "asynq naive chain, 1ms poll"
	name := fmt.Sprintf("%d chains of 2, 1 KB", n)
	return []Row{
		newRow("W3", name, "chains/s", rates(b), base, rates(a), &Target{Min: 4000}),
		newRow("W3", "chain latency p50", "ms", p50s(b), base, p50s(a), nil),
		newRow("W3", "chain latency p99", "ms", p99s(b), base, p99s(a), nil),
	}, "", nil
}

var (
	stepA = func() *baton.Task[doc, doc] {
		return baton.NewTask("bench_fetch", func(_ context.Context, d doc) (doc, error) { return d, nil }, nil)
	}
	stepB = func() *baton.Task[doc, doc] {
		return baton.NewTask("bench_analyze", func(_ context.Context, d doc) (doc, error) { return d, nil }, nil)
	}
)

// submitted is a workflow and its index, handed from submitters to waiters.
type submitted struct {
	i  int
	wf *baton.Workflow
}

// submitAndWait submits n canvases from 8 goroutines while 8 others wait on
// them, and returns the elapsed time and each workflow's latency from its
// Submit call to its final record.
func submitAndWait(ctx context.Context, c *baton.Client, n int, canvas func() baton.Canvas, check func(*baton.Record) error) (time.Duration, []time.Duration, error) {
	t0 := make([]time.Time, n)
	lat := make([]time.Duration, n)
	wfs := make(chan submitted, n)
	errs := make(chan error, waiters)
	var wg sync.WaitGroup
	start := time.Now()
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range wfs {
				rec, err := s.wf.Wait(ctx)
				if err == nil {
					err = check(rec)
				}
				if err != nil {
					errs <- fmt.Errorf("workflow %d: %w", s.i, err)
					return
				}
				// FinishedAt has millisecond precision: the time the final
				// result was stored, independent of the waiters' order.
				lat[s.i] = max(0, rec.FinishedAt.Sub(t0[s.i]))
			}
		}()
	}
	serr := parallel(n, enqueueGoroutines, func(i int) error {
		t0[i] = time.Now()
		wf, err := c.Submit(ctx, canvas(), nil)
		if err != nil {
			return err
		}
		wfs <- submitted{i, wf}
		return nil
	})
	close(wfs)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if serr != nil {
		return 0, nil, fmt.Errorf("submit: %w", serr)
	}
	if err := <-errs; err != nil {
		return 0, nil, err
	}
	return elapsed, lat, nil
}

func batonChains(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	a, b := stepA(), stepB()
	wrdb := env.client()
	defer wrdb.Close()
	w, err := batonWorker(wrdb, conc, env.observers, a, b)
	if err != nil {
		return figures{}, err
	}
	if err := w.Start(); err != nil {
		return figures{}, err
	}
	defer w.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return figures{}, err
	}
	defer c.Close()
	c.Declare(a, b)
	payload := doc{Data: kb}
	elapsed, lat, err := submitAndWait(ctx, c, n,
		func() baton.Canvas { return baton.Chain(a.S(payload, nil), b.Sig(nil)) },
		func(r *baton.Record) error {
			var d doc
			if err := json.Unmarshal(r.Result, &d); err != nil || len(d.Data) != len(kb) {
				return fmt.Errorf("final result is not the 1 KB document: %.80s", r.Result)
			}
			return nil
		})
	if err != nil {
		return figures{}, err
	}
	f := figures{rate: float64(n) / elapsed.Seconds()}
	f.p50, f.p99 = latencyFigures(lat)
	return f, nil
}

// chainMsg is the naive asynq chain's payload: step A enqueues step B with
// its result.
type chainMsg struct {
	I    int    `json:"i"`
	T0   int64  `json:"t0"` // submit time, Unix ns
	Data string `json:"data"`
}

func asynqChains(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	wrdb := env.client()
	defer wrdb.Close()
	wc := asynq.NewClientFromRedisClient(wrdb)
	lat := make([]time.Duration, n)
	cnt := newCounter(n)
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench_fetch", func(ctx context.Context, t *asynq.Task) error {
		var m chainMsg
		if err := json.Unmarshal(t.Payload(), &m); err != nil {
			return err
		}
		next, err := json.Marshal(m)
		if err != nil {
			return err
		}
		_, err = wc.EnqueueContext(ctx, asynq.NewTask("bench_analyze", next), asynq.Retention(time.Hour))
		return err
	})
	mux.HandleFunc("bench_analyze", func(_ context.Context, t *asynq.Task) error {
		var m chainMsg
		if err := json.Unmarshal(t.Payload(), &m); err != nil {
			return err
		}
		res, err := json.Marshal(doc{Data: m.Data})
		if err != nil {
			return err
		}
		if _, err := t.ResultWriter().Write(res); err != nil {
			return err
		}
		lat[m.I] = time.Since(time.Unix(0, m.T0))
		cnt.inc()
		return nil
	})
	srv := asynqServer(wrdb, conc, naivePoll)
	if err := srv.Start(mux); err != nil {
		return figures{}, err
	}
	defer srv.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	if err := parallel(n, enqueueGoroutines, func(i int) error {
		p, err := json.Marshal(chainMsg{I: i, T0: time.Now().UnixNano(), Data: kb})
		if err != nil {
			return err
		}
		_, err = c.EnqueueContext(ctx, asynq.NewTask("bench_fetch", p))
		return err
	}); err != nil {
		return figures{}, fmt.Errorf("enqueue: %w", err)
	}
	if err := awaitDrained(ctx, rdb, cnt); err != nil {
		return figures{}, err
	}
	f := figures{rate: float64(n) / time.Since(start).Seconds()}
	f.p50, f.p99 = latencyFigures(lat)
	return f, nil
}
