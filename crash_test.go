package baton_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

// TestCrashWorkerKilledMidChain runs the chaos suite's worker binary as a
// real process, SIGKILLs it in the middle of step 4 of a 6-step chain, and
// starts a replacement at once: the chain resumes at step 4 (steps 1–3 are
// not run again), step 4 runs exactly once more, and the chain finishes
// well within asynq's own 60–90 s lease recovery. It takes 15–70 s, so it
// runs only with BATON_SLOW_TESTS=1 (the chaos suite covers the same
// ground at scale: go run ./internal/chaos -short).
func TestCrashWorkerKilledMidChain(t *testing.T) {
	if os.Getenv("BATON_SLOW_TESTS") != "1" {
		t.Log("set BATON_SLOW_TESTS=1 to run this 15-70 s process-level test")
		return
	}
	b := setup(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "chaos")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/chaos").CombinedOutput()
	require.NoError(t, err, string(out))
	startWorker := func() *exec.Cmd {
		cmd := exec.Command(bin, "worker", "-redis", b.srv.Addr, "-log", dir, "-concurrency", "2")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}

	// chaos.sleep with static args; the previous result lands in "input",
	// which the task ignores.
	type sleepArgs struct {
		MS int `json:"ms"`
	}
	sleep := baton.NewTask[sleepArgs, int]("chaos.sleep", nil, nil)
	steps := []baton.Canvas{}
	for _, ms := range []int{50, 50, 50, 5000, 50, 50} {
		steps = append(steps, sleep.S(sleepArgs{MS: ms}, nil))
	}
	ctx := ctxTimeout(t, 100*time.Second)
	victim := startWorker()
	wf, err := b.client.Submit(ctx, baton.Chain(steps...), nil)
	require.NoError(t, err)
	ids := durSteps(t, ctx, wf)
	waitState(t, b, ids[3], baton.Started)

	require.NoError(t, victim.Process.Kill())
	_ = victim.Wait()
	killed := time.Now()
	startWorker()

	var got int
	require.NoError(t, wf.Get(ctx, &got))
	require.Equal(t, 50, got)
	took := time.Since(killed)
	t.Logf("chain finished %v after the SIGKILL (step 4 re-ran 5 s of it)", took.Round(100*time.Millisecond))

	runs := map[string]int{}
	logs, err := filepath.Glob(filepath.Join(dir, "exec-*.log"))
	require.NoError(t, err)
	for _, name := range logs {
		f, err := os.Open(name)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) >= 4 && fs[0] == "S" {
				runs[fs[3]]++
			}
		}
		_ = f.Close()
	}
	for i, id := range ids {
		want := 1
		if i == 3 {
			want = 2
		}
		require.Equal(t, want, runs[id], "step %d (%s) handler runs", i+1, id)
		r, err := b.client.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, baton.Success, r.State)
	}
}
