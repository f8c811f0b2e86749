// Command asynqxbench measures internal/asynqx against raw asynq on a
// throwaway redis-server: the same asynq.Server processing N no-op tasks
// without and with the hook (batched dequeue and group-commit
// acknowledgement), and a naive two-step chain (step a enqueues step b)
// with asynq.Client's enqueue and asynq's done against the hook's fused
// completion. Every figure is the median of -repeats runs whose order
// alternates; the ratios are what to read on a shared machine.
//
//	go run ./internal/asynqx/asynqxbench [-n 20000] [-chains 5000] [-repeats 5] [-conc 10,50,100] [-lingers 0]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/internal/asynqx"
	"github.com/batonhq/baton/internal/redistest"
)

func main() {
	var o opts
	var conc, lingers string
	flag.IntVar(&o.n, "n", 20000, "no-op tasks per process run")
	flag.IntVar(&o.chains, "chains", 5000, "two-step chains per chain run")
	flag.IntVar(&o.repeats, "repeats", 5, "runs per figure (the median is shown)")
	flag.StringVar(&conc, "conc", "10,50,100", "asynq server concurrencies")
	flag.StringVar(&lingers, "lingers", "0", "group-commit lingers to measure, comma-separated (e.g. 0,100us,200us)")
	flag.Parse()
	var err error
	if o.conc, err = parseInts(conc); err != nil {
		fail(fmt.Errorf("-conc %q: %w", conc, err))
	}
	if o.lingers, err = parseDurations(lingers); err != nil {
		fail(fmt.Errorf("-lingers %q: %w", lingers, err))
	}
	if o.n < 100 || o.chains < 10 || o.repeats < 1 {
		fail(errors.New("-n must be at least 100, -chains at least 10, -repeats at least 1"))
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "asynqxbench:", err)
	os.Exit(1)
}

type opts struct {
	n, chains, repeats int
	conc               []int
	lingers            []time.Duration
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "0" {
			out = append(out, 0)
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a duration ≥ 0", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// variant is one way of running a workload.
type variant struct {
	name   string
	hook   bool
	linger time.Duration
	fused  bool // chains only: step a completes with Complete
}

// sample is one run's figures.
type sample struct {
	rate  float64 // tasks/s
	trips float64 // worker client round trips per task
	cmds  float64 // Redis commands per task (INFO commandstats)
	cpu   float64 // µs of CPU per task, this process + redis-server
	batch float64 // tasks per batch dequeue
	group float64 // calls per group commit
}

func run(ctx context.Context, o opts, out io.Writer) error {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		return err
	}
	defer srv.Stop()
	env := &env{addr: srv.Addr}
	admin := env.client()
	defer admin.Close()
	fmt.Fprintf(out, "redis-server %s on %s; %d repeats, medians; N=%d tasks, %d chains of 2\n\n",
		info(ctx, admin, "server", "redis_version"), srv.Addr, o.repeats, o.n, o.chains)

	process := []variant{{name: "asynq"}}
	chains := []variant{{name: "asynq"}}
	for _, l := range o.lingers {
		process = append(process, variant{name: "asynq+hook linger " + l.String(), hook: true, linger: l})
		chains = append(chains, variant{name: "asynq+hook linger " + l.String(), hook: true, linger: l})
	}
	chains = append(chains, variant{name: "asynq+hook+fused", hook: true, linger: o.lingers[0], fused: true})

	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tconc\tvariant\ttasks/s\tratio\ttrips/task\tredis cmds/task\tCPU µs/task\ttasks/batch\tcalls/group\t")
	for _, c := range o.conc {
		if err := measure(tw, fmt.Sprintf("process %d no-op", o.n), c, process, o.repeats, func(v variant) (sample, error) {
			return env.process(ctx, v, o.n, c)
		}); err != nil {
			return err
		}
	}
	for _, c := range o.conc {
		if err := measure(tw, fmt.Sprintf("%d chains of 2", o.chains), c, chains, o.repeats, func(v variant) (sample, error) {
			return env.chain(ctx, v, o.chains, c)
		}); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// measure runs each variant repeats times, alternating the order, and
// prints the medians and each variant's ratio to the first.
func measure(tw io.Writer, workload string, conc int, vs []variant, repeats int, f func(variant) (sample, error)) error {
	got := make([][]sample, len(vs))
	for r := range repeats {
		for i := range vs {
			j := i
			if r%2 == 1 {
				j = len(vs) - 1 - i
			}
			s, err := f(vs[j])
			if err != nil {
				return fmt.Errorf("%s, c=%d, %s: %w", workload, conc, vs[j].name, err)
			}
			got[j] = append(got[j], s)
			fmt.Fprintf(os.Stderr, "%s c=%d %s: %.0f tasks/s, %.2f trips/task\n", workload, conc, vs[j].name, s.rate, s.trips)
		}
	}
	base := median(got[0], func(s sample) float64 { return s.rate })
	for i, v := range vs {
		rate := median(got[i], func(s sample) float64 { return s.rate })
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.2f×\t%.2f\t%.2f\t%.0f\t%s\t%s\t\n", workload, conc, v.name, rate, rate/base,
			median(got[i], func(s sample) float64 { return s.trips }),
			median(got[i], func(s sample) float64 { return s.cmds }),
			median(got[i], func(s sample) float64 { return s.cpu }),
			orDash(v.hook, median(got[i], func(s sample) float64 { return s.batch })),
			orDash(v.hook, median(got[i], func(s sample) float64 { return s.group })))
	}
	return nil
}

func orDash(ok bool, v float64) string {
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

type env struct{ addr string }

func (e *env) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.addr, PoolSize: 128})
}

// worker is an asynq server's client for variant v: the hook (if any),
// then a round-trip counter that sees only what reaches Redis.
func (e *env) worker(v variant, conc int) (*redis.Client, *asynqx.Hook, *trips, error) {
	c := e.client()
	var h *asynqx.Hook
	if v.hook {
		var err error
		if h, err = asynqx.New(c, asynqx.Options{Concurrency: conc, Linger: v.linger}); err != nil {
			_ = c.Close()
			return nil, nil, nil, err
		}
	}
	t := &trips{}
	c.AddHook(t)
	return c, h, t, nil
}

func newServer(c redis.UniversalClient, conc int) *asynq.Server {
	return asynq.NewServerFromRedisClient(c, asynq.Config{
		Concurrency:       conc,
		TaskCheckInterval: time.Millisecond, // both sides: no sleep measured when the queue runs dry for a moment
		LogLevel:          asynq.WarnLevel,
		ShutdownTimeout:   5 * time.Second,
	})
}

// prepare empties Redis and enqueues msgs (pending, as asynq.Client would)
// in bulk through the fused script without acknowledgement.
func (e *env) prepare(ctx context.Context, msgs []*asynqx.TaskMessage) error {
	c := e.client()
	defer c.Close()
	if err := c.FlushAll(ctx).Err(); err != nil {
		return err
	}
	h, err := asynqx.New(c, asynqx.Options{Concurrency: 1, Linger: -1})
	if err != nil {
		return err
	}
	defer h.Close(ctx)
	enq := asynqx.NewCompleter("")
	for lo := 0; lo < len(msgs); lo += 500 {
		var next []asynqx.Next
		for _, m := range msgs[lo:min(lo+500, len(msgs))] {
			next = append(next, asynqx.Next{Msg: m})
		}
		if _, err := h.Complete(ctx, enq, asynqx.Completion{Next: next}); err != nil {
			return err
		}
	}
	return c.ConfigResetStat(ctx).Err()
}

// start empties Redis, enqueues n tasks of type typ with ids typ+"0",
// typ+"1", … and returns the worker's client for variant v.
func (e *env) start(ctx context.Context, v variant, conc, n int, typ string, payload []byte) (*redis.Client, *asynqx.Hook, *trips, error) {
	msgs := make([]*asynqx.TaskMessage, n)
	for i := range msgs {
		msgs[i] = msg(typ, typ+strconv.Itoa(i), payload)
	}
	if err := e.prepare(ctx, msgs); err != nil {
		return nil, nil, nil, err
	}
	return e.worker(v, conc)
}

func msg(typ, id string, payload []byte) *asynqx.TaskMessage {
	return &asynqx.TaskMessage{Type: typ, ID: id, Queue: "default", Payload: payload, Retry: 25, Timeout: 1800}
}

// process: N no-op tasks, from the server's start until every one is
// acknowledged (asynq's processed counter).
func (e *env) process(ctx context.Context, v variant, n, conc int) (sample, error) {
	c, h, t, err := e.start(ctx, v, conc, n, "noop", nil)
	if err != nil {
		return sample{}, err
	}
	defer c.Close()
	srv := newServer(c, conc)
	return e.timed(ctx, h, t, srv, n, asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
}

// chain: M chains of two steps with a 1 KB payload; step a enqueues step b
// with its payload (asynq.Client on the worker's client, or Complete), b
// ends the chain. Timed until both steps of every chain are acknowledged.
func (e *env) chain(ctx context.Context, v variant, m, conc int) (sample, error) {
	c, h, t, err := e.start(ctx, v, conc, m, "a", []byte(strings.Repeat("x", 1024)))
	if err != nil {
		return sample{}, err
	}
	defer c.Close()
	ac := asynq.NewClientFromRedisClient(c)
	fused := asynqx.NewCompleter("")
	handler := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		if task.Type() == "b" {
			return nil
		}
		id, _ := asynq.GetTaskID(ctx)
		if !v.fused {
			_, err := ac.EnqueueContext(ctx, asynq.NewTask("b", task.Payload()), asynq.TaskID("b"+id[1:]))
			return err
		}
		_, err := h.Complete(ctx, fused, asynqx.Completion{
			TaskID: id,
			Next:   []asynqx.Next{{Msg: msg("b", "b"+id[1:], task.Payload())}},
			Wake:   "asynqxbench:wake",
		})
		return err
	})
	return e.timed(ctx, h, t, newServer(c, conc), 2*m, handler)
}

// timed starts srv and waits until n tasks are acknowledged.
func (e *env) timed(ctx context.Context, h *asynqx.Hook, t *trips, srv *asynq.Server, n int, handler asynq.Handler) (sample, error) {
	admin := e.client()
	defer admin.Close()
	redisCPU0, err := redisCPU(ctx, admin)
	if err != nil {
		return sample{}, err
	}
	cpu0 := selfCPU()
	start := time.Now()
	if err := srv.Start(handler); err != nil {
		return sample{}, err
	}
	deadline := start.Add(5 * time.Minute)
	for {
		done, err := admin.Get(ctx, "asynq:{default}:processed").Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			srv.Shutdown()
			return sample{}, err
		}
		if done >= n {
			break
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return sample{}, fmt.Errorf("%d of %d tasks acknowledged after 5 minutes", done, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := selfCPU() - cpu0
	tripCount := t.count()
	redisCPU1, err := redisCPU(ctx, admin)
	if err != nil {
		return sample{}, err
	}
	cmds, err := commands(ctx, admin)
	if err != nil {
		return sample{}, err
	}
	srv.Shutdown()
	s := sample{
		rate:  float64(n) / elapsed.Seconds(),
		trips: float64(tripCount) / float64(n),
		cmds:  float64(cmds) / float64(n),
		cpu:   float64((cpu + redisCPU1 - redisCPU0).Microseconds()) / float64(n),
	}
	if h != nil {
		if err := h.Close(ctx); err != nil {
			return sample{}, err
		}
		st := h.Stats()
		s.batch = float64(st.Moved) / float64(max(st.Batches, 1))
		s.group = float64(st.Grouped) / float64(max(st.Groups, 1))
	}
	return s, nil
}

// trips counts round trips: a command or a pipeline each.
type trips struct {
	mu sync.Mutex
	n  int
}

func (t *trips) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *trips) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *trips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (t *trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { t.add(); return next(ctx, cmd) }
}
func (t *trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { t.add(); return next(ctx, cmds) }
}

// commands is the number of commands Redis ran since the last CONFIG
// RESETSTAT (a script counts once, plus once per command it calls), less
// the admin's own INFO and GET polls.
func commands(ctx context.Context, c *redis.Client) (int, error) {
	raw, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, line := range strings.Split(raw, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" || name == "cmdstat_get" || name == "cmdstat_config" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			return 0, fmt.Errorf("commandstats line %q: %w", line, err)
		}
		total += n
	}
	return total, nil
}

// redisCPU is the CPU redis-server has used (INFO cpu).
func redisCPU(ctx context.Context, c *redis.Client) (time.Duration, error) {
	var total float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(info(ctx, c, "cpu", f), 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s: %w", f, err)
		}
		total += v
	}
	return time.Duration(total * float64(time.Second)), nil
}

func info(ctx context.Context, c *redis.Client, section, field string) string {
	raw, _ := c.Info(ctx, section).Result()
	for _, line := range strings.Split(raw, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
