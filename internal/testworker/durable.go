package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
)

// Tasks for the durable-run and heartbeat tests (durable_process_test.go),
// registered with -durable. They record what they do in Redis lists and
// counters under "testworker:", which the tests read.

// GateKey, once set, lets gated children (dur.child with n ≥ GateFrom) and
// the checkpoint loop past their gate.
const (
	GateKey  = "testworker:open"
	GateFrom = 5
)

// waitGate blocks until GateKey exists or ctx ends, heartbeating if the task
// heartbeats.
func waitGate(ctx context.Context, rdb redis.UniversalClient, beat func()) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if n, _ := rdb.Exists(ctx, GateKey).Result(); n == 1 {
			return nil
		}
		if beat != nil {
			beat()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func durableTasks(rdb redis.UniversalClient) []baton.Definition {
	// dur.child: n*10. Counts starts ("start:<id>") and, past the gate,
	// executions ("exec:<id>").
	child := baton.NewTask("dur.child", func(ctx context.Context, n int) (int, error) {
		ti, _ := baton.InfoFrom(ctx)
		rdb.Incr(ctx, "testworker:start:"+ti.ID)
		if n >= GateFrom {
			if err := waitGate(ctx, rdb, nil); err != nil {
				return 0, err
			}
		}
		rdb.Incr(ctx, "testworker:exec:"+ti.ID)
		return n * 10, nil
	}, nil)

	// dur.parent: calls dur.child for 1..n one after another; the sum.
	parent := baton.NewDurable("dur.parent", func(dc *baton.Durable, n int) (int, error) {
		sum := 0
		for i := 1; i <= n; i++ {
			v, err := baton.Call(dc, child, i, nil)
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}, nil)

	// dur.ckpt: a 20-iteration local loop in one step, checkpointed; it
	// stops at iteration 10 until the gate opens. Iterations are logged in
	// "testworker:ckpt:did", restored positions in "testworker:ckpt:resumed".
	ckpt := baton.NewDurable("dur.ckpt", func(dc *baton.Durable, _ int) (int, error) {
		return baton.RunStep(dc, "loop", func(ctx context.Context) (int, error) {
			var st struct{ I, Sum int }
			if _, err := dc.Restore(&st); err != nil {
				return 0, err
			}
			rdb.RPush(ctx, "testworker:ckpt:resumed", st.I)
			for st.I < 20 {
				st.Sum += st.I
				st.I++
				if err := dc.Checkpoint(st); err != nil {
					return 0, err
				}
				rdb.RPush(ctx, "testworker:ckpt:did", st.I)
				if err := baton.Heartbeat(ctx, st.I); err != nil {
					return 0, err
				}
				if st.I == 10 {
					if err := waitGate(ctx, rdb, func() { _ = baton.Heartbeat(ctx, st.I) }); err != nil {
						return 0, err
					}
				}
			}
			return st.Sum, nil
		}, nil)
	}, &baton.TaskOptions{HeartbeatTimeout: 2 * time.Second})

	// hb.task: heartbeats every 200 ms with {"i": n} until its second
	// attempt, which returns the details it was handed plus 1000. Each
	// attempt logs "<unix ms> <pid> <details>" in "testworker:hb:starts".
	type beat struct {
		I int `json:"i"`
	}
	hb := baton.NewTask("hb.task", func(ctx context.Context, _ int) (int, error) {
		var last beat
		had, err := baton.HeartbeatDetails(ctx, &last)
		if err != nil {
			return 0, err
		}
		rdb.RPush(ctx, "testworker:hb:starts", fmt.Sprintf("%d %d %d", time.Now().UnixMilli(), os.Getpid(), last.I))
		if had {
			return last.I + 1000, nil
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for i := 1; ; i++ {
			if err := baton.Heartbeat(ctx, beat{I: i}); err != nil {
				return 0, err
			}
			rdb.RPush(ctx, "testworker:hb:beats", strconv.Itoa(i))
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-t.C:
			}
		}
	}, &baton.TaskOptions{HeartbeatTimeout: 2 * time.Second})
	return []baton.Definition{child, parent, ckpt, hb}
}
