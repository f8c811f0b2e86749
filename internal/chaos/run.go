package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
	"github.com/batonhq/baton/tasks"
)

type config struct {
	short        bool
	chains       int
	chords       int
	llms         int
	minSteps     int
	maxSteps     int
	minHeaders   int
	maxHeaders   int
	workers      int
	concurrency  int
	window       time.Duration // faults are injected for this long
	submitFor    time.Duration // workflows are submitted over this span, from the start
	killEvery    time.Duration
	redisDown    time.Duration
	drainTimeout time.Duration
	seed         uint64
	keep         bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.BoolVar(&c.short, "short", false, "CI form: 60 chains, 12 chords, 60 s of faults (about 2.5 minutes in all)")
	fs.IntVar(&c.chains, "chains", 0, "chains of 3–10 steps (default 500, -short 60)")
	fs.IntVar(&c.chords, "chords", 0, "chords of 10–50 headers (default 100, -short 12)")
	fs.IntVar(&c.llms, "research", 0, "research chords: fetch-like headers, then analyze through a local LLM server (default 50, -short 8)")
	fs.IntVar(&c.workers, "workers", 3, "worker processes")
	fs.IntVar(&c.concurrency, "concurrency", 10, "tasks each worker runs at once")
	fs.DurationVar(&c.window, "window", 0, "how long faults are injected (default 3m, -short 60s)")
	fs.DurationVar(&c.killEvery, "kill-every", 2*time.Second, "mean interval between SIGKILLs")
	fs.DurationVar(&c.redisDown, "redis-down", 2*time.Second, "how long Redis stays down when it is restarted")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 0, "how long to wait for the load to finish after the faults stop (default 4m, -short 150s: past asynq's own worst-case lease recovery)")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed (default: from the clock; printed)")
	fs.BoolVar(&c.keep, "keep", false, "keep the run directory (Redis data, worker and execution logs)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.minSteps, c.maxSteps, c.minHeaders, c.maxHeaders = 3, 10, 10, 50
	def := func(v *int, full, short int) {
		if *v == 0 {
			*v = full
			if c.short {
				*v = short
			}
		}
	}
	def(&c.chains, 500, 60)
	def(&c.chords, 100, 12)
	def(&c.llms, 50, 8)
	if c.window == 0 {
		c.window = 3 * time.Minute
		if c.short {
			c.window = 60 * time.Second
		}
	}
	if c.drainTimeout == 0 {
		c.drainTimeout = 4 * time.Minute
		if c.short {
			c.drainTimeout = 150 * time.Second
		}
	}
	c.submitFor = max(c.window/2, c.window-2*c.killEvery)
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	if c.workers < 2 {
		return c, errors.New("-workers must be at least 2 (one is SIGTERMed while another is SIGKILLed)")
	}
	return c, nil
}

// workflow is one submitted canvas and what became of it.
type workflow struct {
	id       string
	chord    bool
	llm      bool // a chord whose body is the analyze task (result: any analysis)
	size     int  // steps of a chain, headers of a chord
	expected int

	submitted  time.Time
	finished   time.Time
	state      baton.State
	result     int
	err        string
	submitErrs int
	waitErrs   int
}

func (w *workflow) canvas() baton.Canvas {
	if w.llm {
		hs := make([]baton.Canvas, w.size)
		for i := range hs {
			hs[i] = stepDef.S(i, nil)
		}
		return baton.Chord(baton.Group(hs...), analyzeBody())
	}
	if w.chord {
		hs := make([]baton.Canvas, w.size)
		for i := range hs {
			hs[i] = stepDef.S(i, nil)
		}
		return baton.Chord(baton.Group(hs...), sumDef.Sig(nil))
	}
	steps := []baton.Canvas{stepDef.S(0, nil)}
	for len(steps) < w.size {
		steps = append(steps, stepDef.Sig(nil))
	}
	return baton.Chain(steps...)
}

// events are the faults injected, with their times.
type events struct {
	mu       sync.Mutex
	kills    []fault // SIGKILL
	terms    []fault // SIGTERM
	restarts []fault // Redis restarts (pid 0)
}

type fault struct {
	pid  int
	at   time.Time
	took time.Duration // process exit (SIGTERM) or Redis downtime
}

func (e *events) add(list *[]fault, f fault) {
	e.mu.Lock()
	*list = append(*list, f)
	e.mu.Unlock()
}

func runMain(args []string) (int, error) {
	cfg, err := parseFlags(args)
	if err != nil {
		return 2, err
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	dir, err := os.MkdirTemp("", "baton-chaos-*")
	if err != nil {
		return 2, err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	logDir, dataDir := filepath.Join(dir, "logs"), filepath.Join(dir, "redis")
	for _, d := range []string{logDir, dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 2, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return 2, err
	}
	form := "full"
	if cfg.short {
		form = "short"
	}
	fmt.Printf("baton chaos (%s form): %d chains of %d–%d steps, %d chords of %d–%d headers, %d research chords (analyze via a local LLM server), %d workers × %d, faults for %v, seed %d\n",
		form, cfg.chains, cfg.minSteps, cfg.maxSteps, cfg.chords, cfg.minHeaders, cfg.maxHeaders, cfg.llms, cfg.workers, cfg.concurrency, cfg.window, cfg.seed)
	fmt.Printf("run directory: %s\n", dir)

	srv, err := redistest.Start(redistest.Options{AOF: true, Dir: dataDir})
	if err != nil {
		return 2, err
	}
	defer srv.Stop()
	fmt.Printf("redis-server %s (appendonly yes, appendfsync always)\n", srv.Addr)

	llmRedis := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer llmRedis.Close()
	llm := newLLMServer(llmRedis)
	defer llm.srv.Close()
	fl, err := newFleet(self, logDir, cfg.workers, "-redis", srv.Addr, "-log", logDir, "-concurrency", fmt.Sprint(cfg.concurrency), "-llm", llm.BaseURL(), "-v")
	if err != nil {
		return 2, err
	}
	defer fl.stopAll(15 * time.Second)

	// The producer: a client with short timeouts, so a call made while
	// Redis is down fails fast and is retried.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, PoolSize: 64})
	defer rdb.Close()
	client, err := baton.NewClient(rdb, nil)
	if err != nil {
		return 2, err
	}
	defer client.Close()
	client.Declare(stepDef, sumDef)

	wfs := plan(cfg, rng)
	ev := &events{}
	start := time.Now()
	var doneCount atomic.Int64
	var wg sync.WaitGroup
	runCtx, cancelRun := context.WithTimeout(context.Background(), cfg.window+cfg.drainTimeout+time.Minute)
	defer cancelRun()

	// Load and faults: the workflows arrive in waves, one per fault
	// interval, and each fault lands while a wave is running, so a SIGKILL
	// catches tasks in flight. Each workflow runs in its own goroutine that
	// retries Submit (same id: idempotent) and then waits for the result.
	submit := func(w *workflow) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer doneCount.Add(1)
			runWorkflow(runCtx, client, w)
		}()
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		injectFaults(cfg, rng, fl, srv, ev, start, wfs, submit)
	}()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for waiting := true; waiting; {
		select {
		case <-faultsDone:
			waiting = false
		case <-progress.C:
			printProgress(start, len(wfs), &doneCount, ev)
		}
	}
	faultsEnd := time.Now()
	fmt.Printf("%5.0fs  faults stopped; draining\n", time.Since(start).Seconds())

	// Drain: every workflow ends, or the drain timeout passes.
	allDone := make(chan struct{})
	go func() {
		// Submissions may still be scheduled when the window is short.
		for doneCount.Load() < int64(len(wfs)) {
			time.Sleep(50 * time.Millisecond)
		}
		close(allDone)
	}()
	drainDeadline := time.After(cfg.drainTimeout)
	drained := false
	for waiting := true; waiting; {
		select {
		case <-allDone:
			drained, waiting = true, false
		case <-drainDeadline:
			waiting = false
		case <-progress.C:
			printProgress(start, len(wfs), &doneCount, ev)
		}
	}
	if !drained {
		dumpUnfinished(client, wfs)
		cancelRun()
		wg.Wait()
	}
	var lastFinish time.Time
	for _, w := range wfs {
		if w.finished.After(lastFinish) {
			lastFinish = w.finished
		}
	}
	fl.stopAll(15 * time.Second)

	rep := &report{cfg: cfg, wfs: wfs, ev: ev, start: start, faultsEnd: faultsEnd, lastFinish: lastFinish, drained: drained, llm: llm,
		unexpected: fl.unexpectedExits()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rep.collect(ctx, client, rdb, logDir); err != nil {
		return 2, err
	}
	ok := rep.print(os.Stdout)
	if !ok {
		if !cfg.keep {
			fmt.Println("violations found: rerun with -keep -seed", cfg.seed, "to keep the logs")
		}
		return 1, nil
	}
	return 0, nil
}

// plan draws the workload: chains and chords interleaved at random.
func plan(cfg config, rng *rand.Rand) []*workflow {
	var wfs []*workflow
	for i := range cfg.chains {
		n := cfg.minSteps + rng.IntN(cfg.maxSteps-cfg.minSteps+1)
		wfs = append(wfs, &workflow{id: fmt.Sprintf("chain-%04d", i), size: n, expected: n})
	}
	for i := range cfg.chords {
		n := cfg.minHeaders + rng.IntN(cfg.maxHeaders-cfg.minHeaders+1)
		wfs = append(wfs, &workflow{id: fmt.Sprintf("chord-%04d", i), chord: true, size: n, expected: n * (n + 1) / 2})
	}
	for i := range cfg.llms {
		n := 3 + rng.IntN(8)
		wfs = append(wfs, &workflow{id: fmt.Sprintf("research-%04d", i), chord: true, llm: true, size: n, expected: -1})
	}
	rng.Shuffle(len(wfs), func(i, j int) { wfs[i], wfs[j] = wfs[j], wfs[i] })
	return wfs
}

// runWorkflow submits w (retrying through Redis outages) and waits for it.
func runWorkflow(ctx context.Context, c *baton.Client, w *workflow) {
	w.submitted = time.Now()
	var wf *baton.Workflow
	for {
		var err error
		wf, err = c.Submit(ctx, w.canvas(), &baton.SubmitOpts{ID: w.id})
		if err == nil {
			break
		}
		w.submitErrs++
		if ctx.Err() != nil {
			w.err = "submit: " + err.Error()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		rec, err := wf.Wait(ctx)
		var te *baton.TaskError
		switch {
		case err == nil:
			w.finished, w.state = time.Now(), rec.State
			if w.llm {
				var res tasks.AnalyzeResult
				if err := wf.Get(ctx, &res); err != nil || res.Text == "" {
					w.err = fmt.Sprintf("analysis missing: %v", err)
				} else {
					w.result = w.expected // any analysis is right
				}
				return
			}
			if err := wf.Get(ctx, &w.result); err != nil {
				w.err = err.Error()
			}
			return
		case errors.As(err, &te):
			w.finished, w.state, w.err = time.Now(), te.State, te.Error()
			return
		case ctx.Err() != nil:
			w.err = "still running when the drain timeout passed"
			return
		}
		// Redis unreachable: wait again.
		w.waitErrs++
		time.Sleep(200 * time.Millisecond)
	}
}

// injectFaults runs the fault window: every ~killEvery it submits the next
// wave of workflows, waits 5–80 ms so the wave is running, then SIGKILLs a
// random worker (and starts its replacement at once). One fault, a third
// into the window, is a SIGTERM instead; one, at half of it, is a Redis
// restart (SIGKILL, down for cfg.redisDown, AOF reload), with a wave
// submitted while it is down.
func injectFaults(cfg config, rng *rand.Rand, fl *fleet, srv *redistest.Server, ev *events, start time.Time, wfs []*workflow, submit func(*workflow)) {
	end := start.Add(cfg.window)
	termAt, restartAt := start.Add(cfg.window/3), start.Add(cfg.window/2)
	termed, restarted := false, false
	waves := max(1, int(cfg.submitFor/cfg.killEvery))
	perWave := (len(wfs) + waves - 1) / waves
	last, next := -1, 0
	wave := func() {
		for n := 0; n < perWave && next < len(wfs); n++ {
			submit(wfs[next])
			next++
		}
	}
	for tick := start; ; {
		wave()
		kind := "kill"
		switch now := time.Now(); {
		case !termed && now.After(termAt):
			kind = "term"
		case !restarted && now.After(restartAt):
			kind = "restart"
		}
		if kind == "restart" {
			// Kill Redis while the wave's submissions are still being
			// written: a producer must come through a half-done Submit.
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(5+rng.IntN(75)) * time.Millisecond)
		}
		switch kind {
		case "term":
			termed = true
			i := rng.IntN(cfg.workers)
			if i == last {
				i = (i + 1) % cfg.workers
			}
			t0 := time.Now()
			pid, took, err := fl.signal(i, syscall.SIGTERM, 30*time.Second)
			ev.add(&ev.terms, fault{pid: pid, at: t0, took: took})
			fmt.Printf("%5.0fs  SIGTERM worker pid %d: exited in %v\n", time.Since(start).Seconds(), pid, took.Round(time.Millisecond))
			if err != nil {
				fmt.Println("  restart failed:", err)
			}
		case "restart":
			restarted = true
			t0 := time.Now()
			srv.Kill()
			wave() // producers meet the outage: they must get errors and retry
			time.Sleep(cfg.redisDown)
			err := srv.Restart()
			took := time.Since(t0)
			ev.add(&ev.restarts, fault{at: t0, took: took})
			fmt.Printf("%5.0fs  Redis restarted (SIGKILL, AOF reload): down %v\n", time.Since(start).Seconds(), took.Round(time.Millisecond))
			if err != nil {
				fmt.Println("  Redis restart failed:", err)
			}
		default:
			i := rng.IntN(cfg.workers)
			last = i
			t0 := time.Now()
			pid, _, err := fl.signal(i, syscall.SIGKILL, 10*time.Second)
			ev.add(&ev.kills, fault{pid: pid, at: t0})
			if err != nil {
				fmt.Println("  restart after SIGKILL failed:", err)
			}
		}
		tick = tick.Add(cfg.killEvery/2 + time.Duration(rng.Int64N(int64(cfg.killEvery))))
		if tick.After(end) {
			for ; next < len(wfs); next++ {
				submit(wfs[next])
			}
			time.Sleep(time.Until(end))
			return
		}
		time.Sleep(time.Until(tick))
	}
}

func printProgress(start time.Time, total int, done *atomic.Int64, ev *events) {
	ev.mu.Lock()
	k := len(ev.kills)
	ev.mu.Unlock()
	fmt.Printf("%5.0fs  workflows ended %d/%d, SIGKILLs %d\n", time.Since(start).Seconds(), done.Load(), total, k)
}

// dumpUnfinished prints every step of the workflows that did not end, so a
// hang can be diagnosed from the output alone.
func dumpUnfinished(c *baton.Client, wfs []*workflow) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range wfs {
		if !w.finished.IsZero() {
			continue
		}
		wf, err := c.Workflow(ctx, w.id)
		if err != nil {
			fmt.Printf("unfinished %s: %v\n", w.id, err)
			continue
		}
		rec, _ := wf.Record(ctx)
		if rec != nil {
			fmt.Printf("unfinished %s: workflow record %s %q\n", w.id, rec.State, rec.Error)
		}
		steps, err := wf.Steps(ctx)
		if err != nil {
			fmt.Printf("  steps: %v\n", err)
			continue
		}
		for _, s := range steps {
			if s.Record == nil {
				fmt.Printf("  %-28s (no record)\n", s.Position)
				continue
			}
			if s.Record.State != baton.Success {
				fmt.Printf("  %-28s %s %s retries=%d executions=%d %q\n", s.Position, s.Record.ID, s.Record.State, s.Record.Retries, s.Record.Executions, s.Record.Error)
			}
		}
	}
}
