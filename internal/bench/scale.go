package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// runW6: scale-out. N echo tasks are pre-enqueued, then 1, 2 and 4 real
// `baton worker` processes (concurrency 10 each) drain them; tasks/s from
// the processes' start until the queue is empty and every task is SUCCESS.
// No target: it shows how processes share one Redis on this machine.
func runW6(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	dir, err := os.MkdirTemp("", "baton-bench-bin-*")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "baton")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/batonhq/baton/cmd/baton")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("build baton: %w: %s", err, out)
	}
	var rows []Row
	var one float64
	for _, procs := range []int{1, 2, 4} {
		var rates []float64
		for range o.Repeats {
			if err := env.flush(ctx); err != nil {
				return nil, "", err
			}
			r, err := scaleOnce(ctx, env, bin, procs, o.N)
			if err != nil {
				return nil, "", fmt.Errorf("%d processes: %w", procs, err)
			}
			rates = append(rates, r)
		}
		row := newRow("W6", fmt.Sprintf("%d worker process(es), c=10 each", procs), "tasks/s", rates, "", nil, nil)
		if procs == 1 {
			one = row.Baton
		} else if one > 0 {
			row.BaselineName, row.Baseline, row.Ratio = "1 process", one, row.Baton/one
		}
		rows = append(rows, row)
	}
	return rows, "echo tasks pre-enqueued on queue \"scale\"; separate `baton worker` processes on one redis-server, 2 CPUs shared with Redis", nil
}

func scaleOnce(ctx context.Context, env *redisEnv, bin string, procs, n int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ids := make([]string, n)
	if err := parallel(n, enqueueGoroutines, func(i int) error {
		h, err := c.EnqueueKind(ctx, "echo", map[string]int{"i": i}, &baton.EnqueueOpts{Queue: "scale"})
		if err == nil {
			ids[i] = h.ID
		}
		return err
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	var cmds []*exec.Cmd
	defer func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}
	}()
	for range procs {
		cmd := exec.Command(bin, "worker", "--concurrency", "10", "--queues", "scale=1")
		cmd.Env = append(os.Environ(), "REDIS_URL=redis://"+env.srv.Addr+"/0", "BATON_LOG_LEVEL=error")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, cmd)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for {
		qi, err := insp.GetQueueInfo("scale")
		if err == nil && qi.Pending == 0 && qi.Active == 0 && qi.Retry == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("queue not drained: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	if err := verifySuccess(ctx, c, ids); err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}
