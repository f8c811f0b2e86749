package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// W5 phases: at most roundTrips sequential round trips within rtBudget per
// side (a 1 s poll makes each take up to 1.5 s), then idleFor of idle.
type w5Plan struct {
	roundTrips int
	rtBudget   time.Duration
	settle     time.Duration
	idleFor    time.Duration
}

func planW5(quick bool) w5Plan {
	if quick {
		return w5Plan{roundTrips: 20, rtBudget: 2 * time.Second, settle: 200 * time.Millisecond, idleFor: time.Second}
	}
	return w5Plan{roundTrips: 200, rtBudget: 12 * time.Second, settle: time.Second, idleFor: 5 * time.Second}
}

// idleFigures is the CPU used while a worker sits idle, in % of one core.
type idleFigures struct {
	process, redis float64
}

func (f idleFigures) total() float64 { return f.process + f.redis }

type w5Result struct {
	n        int
	p50, p99 float64
	idle     idleFigures
}

// runW5: one task at a time through an idle worker with default settings,
// then the idle CPU of this process and of redis-server.
func runW5(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	p := planW5(o.Quick)
	if env.pid == 0 {
		return nil, "", fmt.Errorf("cannot find the redis-server child process listening on %s in /proc: idle CPU needs its pid", env.srv.Addr)
	}
	b, err := batonRoundTrips(ctx, env, p)
	if err != nil {
		return nil, "", fmt.Errorf("baton: %w", err)
	}
	fmt.Fprintf(o.Progress, "  W5 baton            n=%d p50 %.2fms p99 %.2fms idle %.2f%%+%.2f%%\n", b.n, b.p50, b.p99, b.idle.process, b.idle.redis)
	var base []w5Result
	names := []string{"asynq 1s poll", "asynq 10ms poll"}
	for i, poll := range []time.Duration{time.Second, 10 * time.Millisecond} {
		if err := env.flush(ctx); err != nil {
			return nil, "", err
		}
		a, err := asynqRoundTrips(ctx, env, p, poll)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", names[i], err)
		}
		fmt.Fprintf(o.Progress, "  W5 %-16s n=%d p50 %.2fms p99 %.2fms idle %.2f%%+%.2f%%\n", names[i], a.n, a.p50, a.p99, a.idle.process, a.idle.redis)
		base = append(base, a)
	}
	one := func(v float64) []float64 { return []float64{v} }
	var rows []Row
	for i, a := range base {
		rows = append(rows, newRow("W5", "round trip p50", "ms", one(b.p50), names[i], one(a.p50), &Target{Max: 5}))
	}
	for i, a := range base {
		rows = append(rows, newRow("W5", "round trip p99", "ms", one(b.p99), names[i], one(a.p99), nil))
	}
	for i, a := range base {
		rows = append(rows, newRow("W5", "idle CPU, process+redis", "% core", one(b.idle.total()), names[i], one(a.idle.total()), &Target{Max: 5}))
	}
	note := fmt.Sprintf("round trips: baton n=%d, %s n=%d, %s n=%d (cap %d or %v each); idle CPU over %v (process + redis-server): baton %.2f%% + %.2f%%, %s %.2f%% + %.2f%%, %s %.2f%% + %.2f%%; asynq's completion is signalled in-process by its handler (asynq has no result wait), a lower bound",
		b.n, names[0], base[0].n, names[1], base[1].n, p.roundTrips, p.rtBudget, p.idleFor,
		b.idle.process, b.idle.redis, names[0], base[0].idle.process, base[0].idle.redis, names[1], base[1].idle.process, base[1].idle.redis)
	return rows, note, nil
}

func batonRoundTrips(ctx context.Context, env *redisEnv, p w5Plan) (w5Result, error) {
	wrdb := env.client()
	defer wrdb.Close()
	noop := baton.NewTask("noop", func(context.Context, noopArgs) (noopResult, error) { return noopResult{OK: true}, nil }, nil)
	// Default settings but for the logger and the queues: the one queue
	// asynq's baseline serves.
	w, err := baton.NewWorker(wrdb, &baton.WorkerOptions{Logger: discardLogger(), Queues: baselineQueues()})
	if err != nil {
		return w5Result{}, err
	}
	if err := w.Register(noop); err != nil {
		return w5Result{}, err
	}
	if err := w.Start(); err != nil {
		return w5Result{}, err
	}
	defer w.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return w5Result{}, err
	}
	defer c.Close()
	lat, err := roundTrips(ctx, p, func(ctx context.Context) error {
		h, err := noop.Enqueue(ctx, c, noopArgs{}, nil)
		if err != nil {
			return err
		}
		_, err = h.Get(ctx)
		return err
	})
	if err != nil {
		return w5Result{}, err
	}
	r := w5Result{n: len(lat)}
	r.p50, r.p99 = latencyFigures(lat)
	r.idle, err = measureIdle(ctx, env, p)
	return r, err
}

func asynqRoundTrips(ctx context.Context, env *redisEnv, p w5Plan, poll time.Duration) (w5Result, error) {
	wrdb := env.client()
	defer wrdb.Close()
	done := make(chan string, 1)
	handler := asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		if _, err := t.ResultWriter().Write(okJSON); err != nil {
			return err
		}
		done <- t.ResultWriter().TaskID()
		return nil
	})
	// Default settings but the poll interval (and a quiet logger).
	srv := asynq.NewServerFromRedisClient(wrdb, asynq.Config{TaskCheckInterval: poll, Logger: asynqLogger{}, LogLevel: asynq.ErrorLevel})
	if err := srv.Start(handler); err != nil {
		return w5Result{}, err
	}
	defer srv.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	lat, err := roundTrips(ctx, p, func(ctx context.Context) error {
		info, err := c.EnqueueContext(ctx, asynq.NewTask("noop", baselinePayload("noop")), asynq.Retention(time.Hour))
		if err != nil {
			return err
		}
		select {
		case id := <-done:
			if id != info.ID {
				return fmt.Errorf("task %s finished while waiting for %s", id, info.ID)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		return w5Result{}, err
	}
	r := w5Result{n: len(lat)}
	r.p50, r.p99 = latencyFigures(lat)
	r.idle, err = measureIdle(ctx, env, p)
	return r, err
}

// roundTrips runs rt one at a time, up to p.roundTrips times or until
// p.rtBudget has passed (at least 3 times), and returns each duration.
func roundTrips(ctx context.Context, p w5Plan, rt func(context.Context) error) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	var lat []time.Duration
	start := time.Now()
	for len(lat) < p.roundTrips && (len(lat) < 3 || time.Since(start) < p.rtBudget) {
		t := time.Now()
		if err := rt(ctx); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", len(lat)+1, err)
		}
		lat = append(lat, time.Since(t))
	}
	return lat, nil
}

// measureIdle waits p.settle, then measures the CPU this process and the
// redis-server use over p.idleFor, in % of one core.
func measureIdle(ctx context.Context, env *redisEnv, p w5Plan) (idleFigures, error) {
	if !sleep(ctx, p.settle) {
		return idleFigures{}, ctx.Err()
	}
	r0, err := procCPU(env.pid)
	if err != nil {
		return idleFigures{}, err
	}
	s0, t0 := selfCPU(), time.Now()
	if !sleep(ctx, p.idleFor) {
		return idleFigures{}, ctx.Err()
	}
	s1, wall := selfCPU(), time.Since(t0)
	r1, err := procCPU(env.pid)
	if err != nil {
		return idleFigures{}, err
	}
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / wall.Seconds() }
	return idleFigures{process: pct(s1 - s0), redis: pct(r1 - r0)}, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
