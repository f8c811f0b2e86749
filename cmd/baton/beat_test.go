package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// syncBuffer is a bytes.Buffer safe for a child's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildBaton builds the CLI into a temporary directory.
func buildBaton(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "baton")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	outp, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", outp)
	return bin
}

var (
	enqueuedRE = regexp.MustCompile(`msg=enqueued component=beat entry=hb id=beat-hb-(\d+)`)
	recoverRE  = regexp.MustCompile(`msg="the lease holder did not enqueue the run; enqueuing it" component=beat entry=hb id=beat-hb-(\d+)`)
	firstRE    = regexp.MustCompile(`msg=scheduled component=beat entry=hb spec="every 1s" next=(\S+)`)
)

// TestBeatTwoProcesses runs two real `baton beat` processes on one Redis for
// about 10 s with a 1-second entry: every second gets exactly one run.
func TestBeatTwoProcesses(t *testing.T) {
	b := setupWithWorker(t)
	bin := buildBaton(t)
	sched := filepath.Join(t.TempDir(), "schedule.yaml")
	require.NoError(t, os.WriteFile(sched, []byte(`
entries:
  - name: hb
    every: 1s
    task: echo
    args: {msg: beat}
`), 0o600))

	var logs [2]*syncBuffer
	var cmds [2]*exec.Cmd
	for i := range cmds {
		logs[i] = &syncBuffer{}
		cmds[i] = exec.Command(bin, "beat", "--schedule", sched, "--log-level", "debug")
		cmds[i].Env = append(os.Environ(), "REDIS_URL="+b.url)
		cmds[i].Stdout, cmds[i].Stderr = logs[i], logs[i]
		require.NoError(t, cmds[i].Start())
	}
	defer func() {
		for _, c := range cmds {
			if c.ProcessState == nil {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}
	}()
	time.Sleep(10 * time.Second)
	stop := time.Now()
	for _, c := range cmds {
		require.NoError(t, c.Process.Signal(syscall.SIGTERM))
	}
	for i, c := range cmds {
		require.NoError(t, c.Wait(), "beat %d:\n%s", i, logs[i])
	}

	// The first tick either beat scheduled, and every run each enqueued.
	var first int64
	enq := map[int64]int{}
	for i, l := range logs {
		s := l.String()
		m := firstRE.FindStringSubmatch(s)
		require.NotNil(t, m, "beat %d did not start:\n%s", i, s)
		tk, err := time.Parse(time.RFC3339, m[1])
		require.NoError(t, err)
		if first == 0 || tk.Unix() < first {
			first = tk.Unix()
		}
		for _, re := range []*regexp.Regexp{enqueuedRE, recoverRE} {
			for _, m := range re.FindAllStringSubmatch(s, -1) {
				n, _ := strconv.ParseInt(m[1], 10, 64)
				enq[n]++
			}
		}
	}

	// Runs recorded in Redis: one per second from the first tick on, each
	// executed once by the worker.
	ctx := context.Background()
	keys, err := b.rdb.Keys(ctx, "baton:task:{beat-hb-*").Result()
	require.NoError(t, err)
	var got []int64
	for _, k := range keys {
		id := k[strings.LastIndex(k, ":")+1:]
		n, err := strconv.ParseInt(strings.TrimPrefix(id, "beat-hb-"), 10, 64)
		require.NoError(t, err, k)
		got = append(got, n)
		redistest.WaitFor(t, 10*time.Second, "run "+id+" executed", func() bool {
			r, err := b.client.Get(ctx, id)
			return err == nil && r.State.Terminal()
		})
		r, err := b.client.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 1, r.Executions, "run %s executions", id)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	require.NotEmpty(t, got)
	require.Equal(t, first, got[0], "first run is the first tick")
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1]+1, got[i], "one run per second, no gap: %v", got)
	}
	last := got[len(got)-1]
	require.GreaterOrEqual(t, last, stop.Unix()-1, "runs until the beats stopped")
	require.LessOrEqual(t, last, stop.Unix()+1)
	require.Equal(t, int(last-first+1), len(got))
	require.GreaterOrEqual(t, len(got), 8, "about 10 runs in 10 s")

	// Each run was enqueued by exactly one beat (the lease holder).
	for _, n := range got {
		require.Equal(t, 1, enq[n], "run beat-hb-%d enqueued %d times", n, enq[n])
	}
	require.Len(t, enq, len(got))
	t.Logf("%d runs, %s", len(got), fmt.Sprint(got))
}

func TestBeatBadSchedule(t *testing.T) {
	b := setup(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("entries:\n  - name: nightly\n    cron: \"0 25 * * *\"\n    task: echo\n"), 0o600))
	o := b.run(t, "beat", "--schedule", bad).requireCode(t, 2)
	require.Contains(t, o.stderr, `entries[0] "nightly": cron: "0 25 * * *"`)

	unknown := filepath.Join(dir, "unknown.yaml")
	require.NoError(t, os.WriteFile(unknown, []byte("entries:\n  - name: x\n    every: 1m\n    task: nope\n"), 0o600))
	o = b.run(t, "beat", "--schedule", unknown).requireCode(t, 2)
	require.Contains(t, o.stderr, `entries "x": task: unknown task kind "nope"`)

	o = b.run(t, "beat").requireCode(t, 2)
	require.Contains(t, o.stderr, "--schedule")

	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"entries":[{"name":"x","every":"1m","task":"echo","args":{"msg":"hi"}}]}`), 0o600))
	o = b.run(t, "beat", "--schedule", good, "--check").requireCode(t, 0)
	require.Contains(t, o.stdout, "every 1m0s")
}
