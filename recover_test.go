package baton_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// TestKilledWorkerRecoveredFast: a worker process killed with SIGKILL in the
// middle of a task; a live worker re-enqueues the orphan well before asynq's
// own 60–90 s lease recovery, the task ends SUCCESS with one result, and the
// original delivery, when asynq gives it back, is dropped.
func TestKilledWorkerRecoveredFast(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 90*time.Second)
	h, killed := killedMidTask(t, ctx, b, baton.QueueDefault)

	// A live worker serving the queue; this time "block" returns at once.
	var runs int
	done := baton.NewTask("block", func(ctx context.Context, n int) (int, error) { runs++; return n * 2, nil }, nil)
	b.startWorker(t, &baton.WorkerOptions{RecoverInterval: 500 * time.Millisecond}, done)

	requireRecovered(t, ctx, h, killed)
	require.Equal(t, 1, runs)
	rec, err := b.client.Get(ctx, h.ID)
	require.NoError(t, err)
	require.Equal(t, 2, rec.Executions, "one run in the killed worker, one after recovery")
}

// TestRecoveryAmongWorkersOfOtherQueues: the fleet-wide recovery lock is
// mostly won by a worker of another queue, which only scans its own queues;
// it must not make the fleet forget how long the orphan of this queue has
// been unlisted, or the orphan waits for asynq's 60–90 s lease recovery.
func TestRecoveryAmongWorkersOfOtherQueues(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 90*time.Second)
	h, killed := killedMidTask(t, ctx, b, "recover-me")

	other := baton.NewTask("other", func(ctx context.Context, n int) (int, error) { return n, nil }, &baton.TaskOptions{Queue: "elsewhere"})
	b.startWorker(t, &baton.WorkerOptions{Queues: map[string]int{"elsewhere": 1}, RecoverInterval: 100 * time.Millisecond}, other)
	done := baton.NewTask("block", func(ctx context.Context, n int) (int, error) { return n * 2, nil }, &baton.TaskOptions{Queue: "recover-me"})
	b.startWorker(t, &baton.WorkerOptions{Queues: map[string]int{"recover-me": 1}, RecoverInterval: 500 * time.Millisecond}, done)

	requireRecovered(t, ctx, h, killed)
}

// requireRecovered waits for the killed task's result (7 doubled) and
// checks it came well before asynq's own lease recovery.
func requireRecovered(t *testing.T, ctx context.Context, h *baton.TypedHandle[int], killed time.Time) {
	t.Helper()
	got, err := h.Get(ctx)
	require.NoError(t, err)
	require.Equal(t, 14, got)
	took := time.Since(killed)
	t.Logf("recovered %v after SIGKILL", took.Round(100*time.Millisecond))
	require.Less(t, took, 45*time.Second, "recovery must beat asynq's 60 s lease recovery")
}

// killedMidTask runs a testworker process on queue, enqueues a "block" task
// there, SIGKILLs the process once the task runs, and returns the task and
// the time of the kill.
func killedMidTask(t *testing.T, ctx context.Context, b *bundle, queue string) (*baton.TypedHandle[int], time.Time) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testworker")
	build := exec.Command("go", "build", "-o", bin, "./internal/testworker")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	proc := exec.Command(bin, "-redis", b.srv.Addr, "-queue", queue)
	proc.Stderr = os.Stderr
	require.NoError(t, proc.Start())
	t.Cleanup(func() { _ = proc.Process.Kill(); _, _ = proc.Process.Wait() })

	block := baton.NewTask[int, int]("block", nil, &baton.TaskOptions{Queue: queue})
	h, err := block.Enqueue(ctx, b.client, 7, nil)
	require.NoError(t, err)
	redistest.WaitFor(t, 20*time.Second, "the task starts in the worker process", func() bool {
		l, _ := b.rdb.LRange(ctx, "testworker:log", 0, -1).Result()
		return len(l) == 1 && strings.Contains(l[0], h.ID)
	})
	require.NoError(t, proc.Process.Signal(os.Kill))
	_, _ = proc.Process.Wait()
	return h, time.Now()
}
