package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

func TestEnqueue(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("prints the id alone", func(t *testing.T) {
		o := b.run(t, "enqueue", "echo", "--args", `{"x":1}`).requireCode(t, exitOK)
		require.Empty(t, o.stderr)
		rec, err := b.client.Wait(ctx, o.id(t))
		require.NoError(t, err)
		require.JSONEq(t, `{"x":1}`, string(rec.Result))
	})
	t.Run("--id chooses the id", func(t *testing.T) {
		o := b.run(t, "enqueue", "echo", "--id", "my-task-1").requireCode(t, exitOK)
		require.Equal(t, "my-task-1", o.id(t))
	})
	t.Run("--wait --json prints the SUCCESS record", func(t *testing.T) {
		o := b.run(t, "enqueue", "echo", "--args", `{"x":1}`, "--wait", "--json").requireCode(t, exitOK)
		m := o.record(t)
		require.Equal(t, "SUCCESS", m["state"])
		require.Equal(t, map[string]any{"x": float64(1)}, m["result"])
		require.Equal(t, "echo", m["kind"])
		require.Contains(t, m, "error")
		require.Contains(t, m, "retries")
	})
	t.Run("--wait prints the record for people", func(t *testing.T) {
		o := b.run(t, "enqueue", "echo", "--args", `{"x":[1,2]}`, "--wait").requireCode(t, exitOK)
		require.Regexp(t, `(?m)^state: +SUCCESS$`, o.stdout)
		require.Regexp(t, `(?m)^result: +\{$`, o.stdout, "pretty-printed result")
		require.Contains(t, o.stdout, `  "x": [`)
	})
	t.Run("--wait on a failing task exits 1 with its error", func(t *testing.T) {
		o := b.run(t, "enqueue", "fail", "--args", `{"message":"deliberate"}`, "--wait", "--json").requireCode(t, exitFailure)
		m := o.record(t)
		require.Equal(t, "FAILURE", m["state"])
		require.Equal(t, float64(2), m["retries"])
		require.Equal(t, float64(3), m["executions"])
		require.Contains(t, m["error"], "deliberate")
		require.Empty(t, o.stderr, "the record says it all")
	})
	t.Run("options reach the task", func(t *testing.T) {
		o := b.run(t, "enqueue", "sleep", "--queue", "low", "--countdown", "1h", "--max-retries", "7",
			"--retry-delay", "3s", "--timeout", "1m", "--expires-in", "2h").requireCode(t, exitOK)
		rec, err := b.client.Get(ctx, o.id(t))
		require.NoError(t, err)
		require.Equal(t, "low", rec.Queue)
		require.Equal(t, baton.Pending, rec.State)
		ti, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo("low", rec.ID)
		require.NoError(t, err)
		require.Equal(t, asynq.TaskStateScheduled, ti.State)
		require.Equal(t, 8, ti.MaxRetry, "asynq gets MaxRetries+1")
		require.WithinDuration(t, time.Now().Add(time.Hour), ti.NextProcessAt, time.Minute)
	})
	t.Run("--eta", func(t *testing.T) {
		eta := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		o := b.run(t, "enqueue", "echo", "--eta", eta.Format(time.RFC3339)).requireCode(t, exitOK)
		ti, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo("default", o.id(t))
		require.NoError(t, err)
		require.True(t, eta.Equal(ti.NextProcessAt), "%v != %v", eta, ti.NextProcessAt)
	})

	usage := []struct {
		name string
		args []string
		want string
	}{
		{"invalid --args", []string{"enqueue", "echo", "--args", `{"x":`}, "--args is not valid JSON"},
		{"unknown kind", []string{"enqueue", "nope"}, `unknown task kind "nope" (known: echo, sleep, fail, flaky`},
		{"negative --countdown", []string{"enqueue", "echo", "--countdown", "-1s"}, "--countdown -1s is negative"},
		{"negative --max-retries", []string{"enqueue", "echo", "--max-retries", "-1"}, "--max-retries -1 is negative"},
		{"bad --eta", []string{"enqueue", "echo", "--eta", "tomorrow"}, `--eta "tomorrow" is not an RFC 3339 time`},
		{"bad --queue", []string{"enqueue", "echo", "--queue", "a b"}, `queue name "a b"`},
		{"no kind", []string{"enqueue"}, "needs a task KIND"},
		{"payload too large", []string{"enqueue", "echo", "--args", `"` + strings.Repeat("x", 2<<20) + `"`}, "payload too large"},
		{"unknown flag", []string{"enqueue", "echo", "--nope"}, "unknown flag: --nope"},
		{"--id with a '.'", []string{"enqueue", "echo", "--id", "a.b"}, `task id "a.b" has '.': use 1 to 200 ASCII letters, digits, '-', '_' and ':'`},
		{"--id of another kind", []string{"enqueue", "sleep", "--id", "my-task-1"}, `task id "my-task-1" is taken by a task of kind "echo"`},
		{"--timeout under 1ms", []string{"enqueue", "echo", "--timeout", "1ns"}, "Timeout 1ns is under 1ms"},
		{"--countdown under 1ms", []string{"enqueue", "echo", "--countdown", "10us"}, "Countdown 10µs is under 1ms"},
		{"--retry-delay under 1ms", []string{"enqueue", "echo", "--retry-delay", "1ns"}, "RetryPolicy.Delay 1ns is under 1ms"},
		{"--expires-in under 1ms", []string{"enqueue", "echo", "--expires-in", "1ns"}, "ExpiresIn 1ns is under 1ms"},
	}
	for _, tt := range usage {
		t.Run(tt.name+" is a usage error", func(t *testing.T) {
			o := b.run(t, tt.args...).requireCode(t, exitUsage)
			require.Contains(t, o.stderr, tt.want)
			require.Empty(t, o.stdout)
		})
	}
	t.Run("--allow-unknown-kinds enqueues anyway", func(t *testing.T) {
		o := b.run(t, "enqueue", "other-kind", "--allow-unknown-kinds").requireCode(t, exitOK)
		_, err := b.client.Get(ctx, o.id(t))
		require.NoError(t, err)
	})
}
