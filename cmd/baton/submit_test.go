package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

func TestSubmit(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	ctx := ctxTimeout(t, 60*time.Second)
	const chainDoc = `{"chain": [
		{"task": "echo", "args": {"n": 1}},
		{"task": "sleep", "args": {"ms": 1}},
		{"task": "echo"}
	]}`

	t.Run("a valid chain from a file prints the workflow id", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "chain.json")
		require.NoError(t, os.WriteFile(file, []byte(chainDoc), 0o600))
		id := b.run(t, "submit", file).requireCode(t, exitOK).id(t)
		wf, err := b.client.Workflow(ctx, id)
		require.NoError(t, err)
		var got map[string]int
		require.NoError(t, wf.Get(ctx, &got))
		require.Equal(t, map[string]int{"n": 1}, got)
	})
	t.Run("--wait from stdin prints the final result", func(t *testing.T) {
		o := b.runIn(t, chainDoc, "submit", "-", "--wait", "--id", "wf-stdin").requireCode(t, exitOK)
		require.Regexp(t, `(?m)^id: +wf-stdin$`, o.stdout)
		require.Regexp(t, `(?m)^state: +SUCCESS$`, o.stdout)
		require.Regexp(t, `(?m)^result: +\{\n +"n": 1\n +\}$`, o.stdout)
		require.Regexp(t, `(?m)^  3 +wf-stdin\.3 +echo +SUCCESS`, o.stdout)

		var got struct {
			Workflow struct {
				State  string          `json:"state"`
				Result json.RawMessage `json:"result"`
			} `json:"workflow"`
			Steps []stepOut `json:"steps"`
		}
		o = b.runIn(t, chainDoc, "submit", "-", "--wait", "--json").requireCode(t, exitOK)
		require.NoError(t, json.Unmarshal([]byte(o.stdout), &got))
		require.Equal(t, "SUCCESS", got.Workflow.State)
		require.JSONEq(t, `{"n":1}`, string(got.Workflow.Result))
		require.Len(t, got.Steps, 3)
	})
	t.Run("--json without --wait", func(t *testing.T) {
		m := b.runIn(t, chainDoc, "submit", "-", "--json", "--id", "wf-json").requireCode(t, exitOK).record(t)
		require.Equal(t, map[string]any{"id": "wf-json", "kind": "chain", "tasks": float64(3)}, m)
	})
	t.Run("--input feeds the first steps", func(t *testing.T) {
		doc := `{"group": [{"task": "echo"}, {"task": "echo", "args": ["static"]}, {"task": "echo", "args": {"k": 1}}]}`
		id := b.runIn(t, doc, "submit", "-", "--input", `{"x": 1}`).requireCode(t, exitOK).id(t)
		wf, err := b.client.Workflow(ctx, id)
		require.NoError(t, err)
		rec, err := wf.Wait(ctx)
		require.NoError(t, err)
		require.JSONEq(t, `[{"x":1}, [{"x":1},"static"], {"k":1,"input":{"x":1}}]`, string(rec.Result))
	})
	t.Run("--input that is not JSON", func(t *testing.T) {
		o := b.runIn(t, `{"task": "echo"}`, "submit", "-", "--input", "hello").requireCode(t, exitUsage)
		require.Contains(t, o.stderr, `--input "hello" is not valid JSON`)
	})
	t.Run("a failing workflow exits 1", func(t *testing.T) {
		doc := `{"chain": [{"task": "fail", "args": {"permanent": true, "message": "no"}}, {"task": "echo"}]}`
		o := b.runIn(t, doc, "submit", "-", "--wait").requireCode(t, exitFailure)
		require.Regexp(t, `(?m)^state: +FAILURE$`, o.stdout)
	})
}

// TestSubmitInvalid: a bad document is rejected with its JSON path before
// anything reaches Redis. Its own Redis, so nothing else writes meanwhile.
func TestSubmitInvalid(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	invalid := []struct {
		name, doc, want string
	}{
		{"unknown kind", `{"chain": [{"task": "echo"}, {"group": [{"task": "nope"}]}]}`,
			`$.chain[1].group[0].task: unknown task kind "nope"`},
		{"unknown kind in a callback", `{"task": "echo", "on_error": {"task": "nope"}}`,
			`$.on_error.task: unknown task kind "nope"`},
		{"group is not an array", `{"chain": [{"task": "echo"}, {"group": {"task": "echo"}}]}`,
			`$.chain[1].group: expected an array of nodes`},
		{"two node keys", `{"chain": [{"task": "echo", "group": []}]}`,
			`$.chain[0]: a node has exactly one of`},
		{"chord without body", `{"chord": {"header": [{"task": "echo"}]}}`,
			`$.chord.body: a chord needs a body`},
		{"empty chain", `{"chain": []}`, `$.chain: a chain needs at least one step`},
		{"task id in options", `{"chain": [{"task": "echo", "options": {"id": "x"}}]}`,
			`$.chain[0].options.id: task ids in a canvas are assigned by baton`},
		{"bad options", `{"chain": [{"task": "echo", "options": {"countdown": "soon"}}]}`, `$.chain[0].options`},
		{"timeout under 1ms", `{"chain": [{"task": "echo", "options": {"timeout": "1ns"}}]}`, `timeout: "1ns" is under 1ms`},
		{"not JSON", `{"chain": [`, `$: not a JSON document`},
		{"nested 3000 deep", strings.Repeat(`{"chord": {"header": [{"task": "echo"}], "body": `, 3000) + `{"task": "echo"}` + strings.Repeat(`}}`, 3000),
			`canvas nested more than 64 levels deep`},
	}
	for _, tt := range invalid {
		t.Run("invalid: "+tt.name, func(t *testing.T) {
			o := b.runIn(t, tt.doc, "submit", "-").requireCode(t, exitUsage)
			require.Contains(t, o.stderr, tt.want)
			require.Less(t, len(o.stderr), 500, "a short message: %.500s", o.stderr)
			require.Empty(t, o.stdout)
			require.Empty(t, b.dataKeys(t), "nothing was enqueued or recorded")
		})
	}
	t.Run("canvas limits", func(t *testing.T) {
		doc := `{"chain": [{"task": "echo"}, {"task": "echo"}, {"task": "echo"}]}`
		o := b.runIn(t, doc, "submit", "-", "--max-canvas-tasks", "2").requireCode(t, exitUsage)
		require.Contains(t, o.stderr, "3 tasks, over the limit of 2")
		require.Contains(t, o.stderr, "BATON_MAX_CANVAS_TASKS")
		o = b.runIn(t, doc, "submit", "-", "--max-canvas-bytes", "200").requireCode(t, exitUsage)
		require.Contains(t, o.stderr, "over the limit of 200 bytes")
		require.Contains(t, o.stderr, "BATON_MAX_CANVAS_BYTES")
		require.Empty(t, b.dataKeys(t), "nothing was enqueued or recorded")
	})
	t.Run("invalid workflow id", func(t *testing.T) {
		o := b.runIn(t, `{"task": "echo"}`, "submit", "-", "--id", "a.b").requireCode(t, exitUsage)
		require.Contains(t, o.stderr, `workflow id "a.b"`)
	})
	t.Run("missing file", func(t *testing.T) {
		o := b.run(t, "submit", filepath.Join(t.TempDir(), "nope.json")).requireCode(t, exitUsage)
		require.Contains(t, o.stderr, "nope.json")
	})
	t.Run("--allow-unknown-kinds accepts what the others reject", func(t *testing.T) {
		b.runIn(t, `{"task": "elsewhere"}`, "submit", "-", "--allow-unknown-kinds").requireCode(t, exitOK).id(t)
		require.NotEmpty(t, b.dataKeys(t))
	})
}

// bigGroupDoc writes a JSON canvas of n echo tasks in one group, big
// enough that its dispatch is still going when the test acts.
func bigGroupDoc(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"group": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"task": "echo", "args": %d}`, i)
	}
	b.WriteString(`]}`)
	file := filepath.Join(t.TempDir(), "big group.json")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
	return file
}

var resumeRE = regexp.MustCompile(`resume it with: baton submit --id (\S+) '([^']+)'$`)

// requireResumeLine checks that stderr is one line naming the workflow id
// and the command that resumes it, and returns the id.
func requireResumeLine(t *testing.T, stderr, file string) string {
	t.Helper()
	t.Logf("stderr: %s", stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	m := resumeRE.FindStringSubmatch(strings.TrimSpace(stderr))
	require.NotNil(t, m, "stderr names the resume command: %q", stderr)
	require.Equal(t, file, m[2])
	require.Equal(t, 1, strings.Count(stderr, "resume it with"), "said once")
	require.Contains(t, stderr, "workflow "+m[1]+" may be partly submitted")
	return m[1]
}

// waitDispatching waits until the first tasks of a submission are queued:
// its dispatch is under way.
func waitDispatching(t *testing.T, rdb *redis.Client) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, "the dispatch is under way", func() bool {
		return pendingCount(t, rdb) > 0
	})
}

// pendingCount is how many tasks asynq's default queue holds.
func pendingCount(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues, err := insp.Queues()
	require.NoError(t, err)
	if !slices.Contains(queues, "default") {
		return 0
	}
	info, err := insp.GetQueueInfo("default")
	require.NoError(t, err)
	return info.Pending
}

// TestSubmitResumeAfterRedisHangs: Redis stops answering writes (CLIENT
// PAUSE) in the middle of dispatching a big canvas: submit fails within the
// timeout with one line naming the workflow id and the command that
// resumes it; that command, run once Redis answers, dispatches the rest,
// every task exactly once.
func TestSubmitResumeAfterRedisHangs(t *testing.T) {
	b := setup(t)
	const n = 30000
	file := bigGroupDoc(t, n)
	admin := b.srv.Client(t, 0)
	done := make(chan out, 1)
	go func() { done <- b.run(t, "submit", file, "--redis-timeout", "1s") }()
	waitDispatching(t, admin)
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "PAUSE", 60000, "WRITE").Err())
	o := <-done
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err())
	// The writes held by the pause go through now, but submit is gone: no
	// more than those few can have been added.
	queued := pendingCount(t, admin)

	o.requireCode(t, exitRedis)
	require.Empty(t, o.stdout)
	require.Contains(t, o.stderr, "BATON_REDIS_TIMEOUT")
	id := requireResumeLine(t, o.stderr, file)
	require.Less(t, queued, n, "the dispatch was cut short (%d of %d queued)", queued, n)

	o = b.run(t, "submit", "--id", id, file).requireCode(t, exitOK)
	require.Equal(t, id, o.id(t))
	require.Equal(t, n, pendingCount(t, admin), "every task queued, none twice")
	wf, err := b.client.Workflow(context.Background(), id)
	require.NoError(t, err)
	steps, err := wf.Steps(context.Background())
	require.NoError(t, err)
	require.Len(t, steps, n)
	for _, s := range steps {
		require.NotNil(t, s.Record, "step %d has its PENDING record", s.Node)
	}
}

// TestSubmitInterrupted: SIGINT to the baton binary in the middle of
// dispatching a big canvas exits 130 with one line (no repeated "context
// canceled") naming the workflow id and the command that resumes it; that
// command finishes the dispatch, every task exactly once.
func TestSubmitInterrupted(t *testing.T) {
	b := setup(t)
	bin := buildBaton(t)
	const n = 30000
	file := bigGroupDoc(t, n)

	var stdout, stderr syncBuffer
	cmd := exec.Command(bin, "submit", file)
	cmd.Env = append(os.Environ(), "REDIS_URL="+b.url)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	waitDispatching(t, b.rdb)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "stderr: %s", stderr.String())
	require.Equal(t, exitInterrupted, ee.ExitCode(), "stderr: %s", stderr.String())
	require.Empty(t, stdout.String())
	require.True(t, strings.HasPrefix(stderr.String(), "baton: interrupted"), stderr.String())
	require.NotContains(t, stderr.String(), "context canceled")
	id := requireResumeLine(t, stderr.String(), file)
	require.Less(t, pendingCount(t, b.rdb), n, "the dispatch was cut short")

	resume := exec.Command(bin, "submit", "--id", id, file)
	resume.Env = cmd.Env
	outp, err := resume.Output()
	require.NoError(t, err)
	require.Equal(t, id+"\n", string(outp))
	require.Equal(t, n, pendingCount(t, b.rdb), "every task queued, none twice")
}
