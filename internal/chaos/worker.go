package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

// The chaos tasks. Producers build canvases from the handler-less
// definitions; `chaos worker` registers the same kinds with handlers.
const (
	kindStep  = "chaos.step"  // int → int+1, sleeps 2–5 ms
	kindSum   = "chaos.sum"   // []int → their sum (a chord body), sleeps 2–5 ms
	kindSleep = "chaos.sleep" // {"ms": n} → n, sleeps n ms (for crash tests)
)

// taskOpts: a generous retry budget, because a handler whose bookkeeping
// read fails (Redis restarting) returns an error and is retried.
var taskOpts = &baton.TaskOptions{MaxRetries: 25, RetryDelay: baton.FixedDelay(200 * time.Millisecond), Timeout: 30 * time.Second}

var (
	stepDef = baton.NewTask[int, int](kindStep, nil, taskOpts)
	sumDef  = baton.NewTask[[]int, int](kindSum, nil, taskOpts)
)

// SleepArgs are chaos.sleep's arguments.
type SleepArgs struct {
	MS int `json:"ms"`
}

// recorder appends one line per event to DIR/exec-<pid>.log. Each line is a
// single write(2) on an O_APPEND file: it survives a SIGKILL of the process.
//
//	S <unix ms> <pid> <task id> <kind> <execution> <state seen at start>
//	E <unix ms> <pid> <task id> ok|err
type recorder struct {
	mu  sync.Mutex
	f   *os.File
	pid string
}

func openRecorder(dir string) (*recorder, error) {
	pid := os.Getpid()
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("exec-%d.log", pid)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f, pid: strconv.Itoa(pid)}, nil
}

func (r *recorder) line(kind string, fields ...string) {
	s := kind + " " + strconv.FormatInt(time.Now().UnixMilli(), 10) + " " + r.pid + " " + strings.Join(fields, " ") + "\n"
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.WriteString(s); err != nil {
		// Losing the log would hide executions: stop the worker loudly.
		fmt.Fprintln(os.Stderr, "chaos worker: write execution log:", err)
		os.Exit(3)
	}
}

type chaosWorker struct {
	rec    *recorder
	client *baton.Client
}

// observe logs the start of an execution with the state the task's record
// was in. The worker moved it to STARTED just before calling the handler;
// SUCCESS here would be a step executed again after its success was
// recorded, the violation the suite counts. It returns the function that
// logs the end.
func (cw *chaosWorker) observe(ctx context.Context, kind string) (func(error), error) {
	info, _ := baton.InfoFrom(ctx)
	r, err := cw.client.Get(ctx, info.ID)
	state, execs := "UNREADABLE", 0
	if err == nil {
		state, execs = string(r.State), r.Executions
	}
	cw.rec.line("S", info.ID, kind, strconv.Itoa(execs), state)
	end := func(herr error) {
		res := "ok"
		if herr != nil {
			res = "err"
		}
		cw.rec.line("E", info.ID, res)
	}
	if err != nil {
		err = fmt.Errorf("read own record: %w", err)
		end(err)
		return nil, err
	}
	return end, nil
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func jitter() time.Duration { return time.Duration(2000+rand.IntN(3000)) * time.Microsecond }

func (cw *chaosWorker) defs() []baton.Definition {
	step := baton.NewTask(kindStep, func(ctx context.Context, n int) (int, error) {
		end, err := cw.observe(ctx, kindStep)
		if err != nil {
			return 0, err
		}
		err = pause(ctx, jitter())
		end(err)
		return n + 1, err
	}, taskOpts)
	sum := baton.NewTask(kindSum, func(ctx context.Context, ns []int) (int, error) {
		end, err := cw.observe(ctx, kindSum)
		if err != nil {
			return 0, err
		}
		t := 0
		for _, n := range ns {
			t += n
		}
		err = pause(ctx, jitter())
		end(err)
		return t, err
	}, taskOpts)
	sleep := baton.NewTask(kindSleep, func(ctx context.Context, a SleepArgs) (int, error) {
		end, err := cw.observe(ctx, kindSleep)
		if err != nil {
			return 0, err
		}
		err = pause(ctx, time.Duration(a.MS)*time.Millisecond)
		end(err)
		return a.MS, err
	}, taskOpts)
	return []baton.Definition{step, sum, sleep}
}

// workerMain runs `chaos worker`: one baton.Worker until SIGTERM or SIGINT.
func workerMain(args []string) int {
	fs := flag.NewFlagSet("chaos worker", flag.ContinueOnError)
	addr := fs.String("redis", "", "Redis address host:port (required)")
	dir := fs.String("log", "", "directory for the execution log (required)")
	conc := fs.Int("concurrency", 10, "tasks run at once")
	poll := fs.Duration("poll", 100*time.Millisecond, "longest idle wait before looking for tasks")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "graceful shutdown timeout")
	verbose := fs.Bool("v", false, "log at info level (default: warnings)")
	llmURL := fs.String("llm", "", "OpenAI-compatible base URL for the analyze task (empty: no analyze task)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "chaos worker: -redis and -log are required")
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pid", os.Getpid())
	rec, err := openRecorder(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{Addr: *addr})
	defer rdb.Close()
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{
		Concurrency: *conc, PollInterval: *poll, ShutdownTimeout: *shutdown, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 2
	}
	cw := &chaosWorker{rec: rec, client: w.Client()}
	defs := cw.defs()
	if *llmURL != "" {
		a := tasks.NewAnalyzer(tasks.LLMConfig{BaseURL: *llmURL, APIKey: "chaos-key", Logger: log}, rdb)
		defs = append(defs, tasks.AnalyzeTask(a))
	}
	if err := w.Register(defs...); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	return 0
}
