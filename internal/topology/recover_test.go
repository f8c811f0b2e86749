//go:build topology

package topology_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// TestOrphanRecovery: a worker process is SIGKILLed in the middle of a
// task, so its asynq server is gone without a word; a live worker finds the
// orphan (asynq's server list and the task's queue, read through the
// Inspector on the topology) and re-enqueues it long before asynq's own
// lease recovery would, and the task ends SUCCESS, run once more.
func TestOrphanRecovery(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "testworker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/batonhq/baton/internal/testworker").CombinedOutput()
	require.NoError(t, err, string(out))

	eachTopology(t, func(t *testing.T, e *env) {
		ctx := ctxTimeout(t, 90*time.Second)
		logKey := "testworker:log:{" + e.queue + "}"
		var stderr bytes.Buffer
		proc := exec.Command(bin, "-url", e.url, "-queue", e.queue, "-log", logKey)
		proc.Stderr = &stderr
		require.NoError(t, proc.Start())
		t.Cleanup(func() {
			_ = proc.Process.Kill()
			_, _ = proc.Process.Wait()
			if t.Failed() {
				t.Logf("testworker stderr:\n%s", stderr.String())
			}
		})

		block := baton.NewTask[int, int]("block", nil, &baton.TaskOptions{Queue: e.queue})
		h, err := block.Enqueue(ctx, e.client, 7, nil)
		require.NoError(t, err)
		redistest.WaitFor(t, waitLimit, "the task starts in the worker process", func() bool {
			l, _ := e.rdb.LRange(ctx, logKey, 0, -1).Result()
			return len(l) == 1 && strings.Contains(l[0], h.ID)
		})
		require.NoError(t, proc.Process.Signal(os.Kill))
		_, _ = proc.Process.Wait()
		killed := time.Now()

		var runs atomic.Int32
		done := baton.NewTask("block", func(ctx context.Context, n int) (int, error) { runs.Add(1); return n * 2, nil },
			&baton.TaskOptions{Queue: e.queue})
		e.worker(t, &baton.WorkerOptions{RecoverInterval: 500 * time.Millisecond}, done)

		got, err := h.Get(ctx)
		require.NoError(t, err)
		require.Equal(t, 14, got)
		took := time.Since(killed)
		t.Logf("recovered %v after SIGKILL", took.Round(100*time.Millisecond))
		require.Less(t, took, 45*time.Second, "recovery beats asynq's 60 s lease recovery")
		require.EqualValues(t, 1, runs.Load())
		rec, err := e.client.Get(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, 2, rec.Executions, "one run in the killed worker, one after recovery")
	})
}
