package baton_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// Durable runs and heartbeats across SIGKILLed worker processes
// (internal/testworker -durable; its tasks count what they do in Redis).

const gateKey = "testworker:open" // internal/testworker's GateKey

// buildTestworker builds internal/testworker into a temporary directory.
func buildTestworker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testworker")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/testworker").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startTestworker starts a worker process with the durable test tasks; it
// is killed at cleanup if still running.
func startTestworker(t *testing.T, bin, addr string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-redis", addr, "-durable"}, args...)...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func sigkill(t *testing.T, cmd *exec.Cmd) time.Time {
	t.Helper()
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	return time.Now()
}

func redisInt(t *testing.T, b *bundle, key string) int {
	t.Helper()
	v, err := b.rdb.Get(context.Background(), key).Int()
	if err != nil {
		return 0
	}
	return v
}

// TestDurableCallsSurviveSIGKILL: a durable run makes 10 Calls one after
// another. The worker process is SIGKILLed after the 4th child succeeded,
// while the 5th runs; a new process takes over. Children 1–4 never run
// again, the 5th (in flight at the kill) runs to its end once, 6–10 once,
// and the result is right.
func TestDurableCallsSurviveSIGKILL(t *testing.T) {
	b := setup(t)
	bin := buildTestworker(t)
	victim := startTestworker(t, bin, b.srv.Addr)
	ctx := ctxTimeout(t, 90*time.Second)

	parent := baton.NewTask[int, int]("dur.parent", nil, nil)
	h, err := parent.Enqueue(ctx, b.client, 10, nil)
	require.NoError(t, err)
	child := func(i int) string { return fmt.Sprintf("%s.c%d", h.ID, i-1) }
	waitState(t, b, child(4), baton.Success)
	redistest.WaitFor(t, 15*time.Second, "child 5 runs (held at its gate)", func() bool {
		return redisInt(t, b, "testworker:start:"+child(5)) == 1
	})
	killed := sigkill(t, victim)
	require.NoError(t, b.rdb.Set(ctx, gateKey, "1", time.Hour).Err())
	startTestworker(t, bin, b.srv.Addr, "-recover-interval", "500ms")

	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 550, got, "sum of i*10 for i = 1..10")
	t.Logf("run finished %v after the SIGKILL (the orphaned child waits for recovery)", time.Since(killed).Round(100*time.Millisecond))
	for i := 1; i <= 10; i++ {
		require.Equal(t, 1, redisInt(t, b, "testworker:exec:"+child(i)), "child %d ran to its end once", i)
		starts := 1
		if i == 5 {
			starts = 2 // killed at its gate, then recovered
		}
		require.Equal(t, starts, redisInt(t, b, "testworker:start:"+child(i)), "child %d starts", i)
	}
	ops, err := b.client.Operations(ctx, h.ID)
	require.NoError(t, err)
	require.Len(t, ops, 10)
	for i, op := range ops {
		require.Equal(t, "done", op.State, "operation %d", i)
		require.JSONEq(t, strconv.Itoa((i+1)*10), string(op.Result))
	}
}

// TestDurableCheckpointAcrossKill: a long local loop inside a step
// checkpoints each iteration; its worker is SIGKILLed at iteration 10 and
// the next attempt (re-delivered by its missed heartbeat) restores the
// checkpoint: iterations 1–10 are not done again.
func TestDurableCheckpointAcrossKill(t *testing.T) {
	b := setup(t)
	bin := buildTestworker(t)
	victim := startTestworker(t, bin, b.srv.Addr)
	ctx := ctxTimeout(t, 60*time.Second)
	ck := baton.NewTask[int, int]("dur.ckpt", nil, nil)
	h, err := ck.Enqueue(ctx, b.client, 0, nil)
	require.NoError(t, err)
	redistest.WaitFor(t, 15*time.Second, "the loop reaches iteration 10", func() bool {
		n, _ := b.rdb.LLen(ctx, "testworker:ckpt:did").Result()
		return n == 10
	})
	sigkill(t, victim)
	require.NoError(t, b.rdb.Set(ctx, gateKey, "1", time.Hour).Err())
	startTestworker(t, bin, b.srv.Addr)

	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 190, got, "sum of 0..19")
	did, err := b.rdb.LRange(ctx, "testworker:ckpt:did", 0, -1).Result()
	require.NoError(t, err)
	want := make([]string, 20)
	for i := range want {
		want[i] = strconv.Itoa(i + 1)
	}
	require.Equal(t, want, did, "every iteration done once")
	resumed, err := b.rdb.LRange(ctx, "testworker:ckpt:resumed", 0, -1).Result()
	require.NoError(t, err)
	require.Equal(t, []string{"0", "10"}, resumed)
}

// TestHeartbeatRedeliveredAfterSIGKILL: a task heartbeating every 200 ms
// with HeartbeatTimeout 2s; the worker process running it is SIGKILLed; the
// other worker process runs it again within the documented bound (README,
// Guarantees: HeartbeatTimeout + 1s after the kill), handing on the last
// details that were written. Measured over several kills.
func TestHeartbeatRedeliveredAfterSIGKILL(t *testing.T) {
	b := setup(t)
	bin := buildTestworker(t)
	procs := map[int]*exec.Cmd{}
	for range 2 {
		p := startTestworker(t, bin, b.srv.Addr)
		procs[p.Process.Pid] = p
	}
	ctx := ctxTimeout(t, 120*time.Second)
	hb := baton.NewTask[int, int]("hb.task", nil, nil)
	const timeout, bound = 2 * time.Second, 3 * time.Second // HeartbeatTimeout; README's bound
	var took []time.Duration
	for round := range 5 {
		require.NoError(t, b.rdb.Del(ctx, "testworker:hb:starts", "testworker:hb:beats").Err())
		h, err := hb.Enqueue(ctx, b.client, round, nil)
		require.NoError(t, err)
		redistest.WaitFor(t, 15*time.Second, "the task heartbeats", func() bool {
			n, _ := b.rdb.LLen(ctx, "testworker:hb:beats").Result()
			return n >= int64(3+round) // kill at a different point of the write window each round
		})
		first := hbStarts(t, b)[0]
		killed := sigkill(t, procs[first.pid])
		delete(procs, first.pid)
		rec := durRecord(t, ctx, b.client, h.ID)
		written := string(rec.HeartbeatDetails) // what the next attempt must get
		beats, err := b.rdb.LRange(ctx, "testworker:hb:beats", 0, -1).Result()
		require.NoError(t, err)

		gctx, gcancel := context.WithTimeout(ctx, 15*time.Second)
		got, err := h.Get(gctx)
		gcancel()
		if err != nil {
			hbDump(t, b, h.ID)
		}
		require.NoError(t, err)
		starts := hbStarts(t, b)
		require.Len(t, starts, 2)
		d := starts[1].at.Sub(killed)
		took = append(took, d)
		require.Less(t, d, bound, "re-delivered within HeartbeatTimeout + 1s")
		require.JSONEq(t, written, fmt.Sprintf(`{"i":%d}`, starts[1].details), "the last details written reach the next attempt")
		require.Equal(t, starts[1].details+1000, got)
		last, _ := strconv.Atoi(beats[len(beats)-1])
		require.LessOrEqual(t, last-starts[1].details, 3, "details lag the last heartbeat by at most one write window (timeout/4)")

		p := startTestworker(t, bin, b.srv.Addr)
		procs[p.Process.Pid] = p
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("HeartbeatTimeout %v: SIGKILL → next attempt started: min %v, median %v, max %v (%v)",
		timeout, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), took)
}

type hbStart struct {
	at      time.Time
	pid     int
	details int
}

func hbStarts(t *testing.T, b *bundle) []hbStart {
	t.Helper()
	l, err := b.rdb.LRange(context.Background(), "testworker:hb:starts", 0, -1).Result()
	require.NoError(t, err)
	out := make([]hbStart, len(l))
	for i, s := range l {
		f := strings.Fields(s)
		require.Len(t, f, 3, s)
		ms, _ := strconv.ParseInt(f[0], 10, 64)
		pid, _ := strconv.Atoi(f[1])
		det, _ := strconv.Atoi(f[2])
		out[i] = hbStart{at: time.UnixMilli(ms), pid: pid, details: det}
	}
	return out
}

// hbDump logs the asynq deliveries and the record of task id.
func hbDump(t *testing.T, b *bundle, id string) {
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for _, d := range []string{id, id + "~r1"} {
		if ti, err := insp.GetTaskInfo(baton.QueueDefault, d); err == nil {
			t.Logf("delivery %s: %s, retried %d, last error %q", d, ti.State, ti.Retried, ti.LastErr)
		}
	}
	if r, err := b.client.Get(context.Background(), id); err == nil {
		t.Logf("record: %s, executions %d, heartbeat %v %s", r.State, r.Executions, r.HeartbeatAt, r.HeartbeatDetails)
	}
}
