package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/tasks"
)

func TestResult(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("a task that always fails ends FAILURE after exactly 3 attempts", func(t *testing.T) {
		id := b.run(t, "enqueue", "fail", "--args", `{"message":"out of cheese"}`).requireCode(t, exitOK).id(t)
		m := b.run(t, "result", id, "--wait", "--json").requireCode(t, exitFailure).record(t)
		require.Equal(t, id, m["id"])
		require.Equal(t, "FAILURE", m["state"])
		require.Equal(t, float64(2), m["retries"])
		require.Equal(t, float64(3), m["executions"])
		require.Contains(t, m["error"], "out of cheese")
		require.Nil(t, m["result"])

		o := b.run(t, "result", id).requireCode(t, exitFailure)
		require.Regexp(t, `(?m)^state: +FAILURE$`, o.stdout)
		require.Regexp(t, `(?m)^retries: +2$`, o.stdout)
		require.Regexp(t, `(?m)^error: +out of cheese`, o.stdout)
		require.Regexp(t, `(?m)^payload: +\{"message":"out of cheese"\}$`, o.stdout)
	})
	t.Run("SUCCESS exits 0", func(t *testing.T) {
		h, err := b.client.EnqueueKind(ctx, "echo", 42, nil)
		require.NoError(t, err)
		o := b.run(t, "result", h.ID, "--wait").requireCode(t, exitOK)
		require.Regexp(t, `(?m)^result: +42$`, o.stdout)
		require.Regexp(t, `(?m)^duration: +\S+$`, o.stdout)
	})
	t.Run("unknown id exits 4", func(t *testing.T) {
		for _, args := range [][]string{{"result", "no-such-id"}, {"result", "no-such-id", "--wait"}} {
			o := b.run(t, args...).requireCode(t, exitNotFound)
			require.Equal(t, "baton: task not found: no-such-id (never enqueued, or its record expired)\n", o.stderr)
			require.Empty(t, o.stdout)
		}
	})
	t.Run("not finished exits 5", func(t *testing.T) {
		h, err := b.client.EnqueueKind(ctx, "echo", 1, &baton.EnqueueOpts{Countdown: time.Hour})
		require.NoError(t, err)
		o := b.run(t, "result", h.ID).requireCode(t, exitNotFinished)
		require.Regexp(t, `(?m)^state: +PENDING$`, o.stdout)
		m := b.run(t, "result", h.ID, "--wait", "--timeout", "50ms", "--json").requireCode(t, exitNotFinished).record(t)
		require.Equal(t, "PENDING", m["state"])
	})
	t.Run("REVOKED exits 1", func(t *testing.T) {
		h, err := b.client.EnqueueKind(ctx, "echo", 1, &baton.EnqueueOpts{Countdown: 300 * time.Millisecond, ExpiresIn: time.Millisecond})
		require.NoError(t, err)
		m := b.run(t, "result", h.ID, "--wait", "--json").requireCode(t, exitFailure).record(t)
		require.Equal(t, "REVOKED", m["state"])
		require.Contains(t, m["error"], "expired")
	})
}

// stepOut is a step of `result WORKFLOW --json`.
type stepOut struct {
	Node     int             `json:"node"`
	Path     string          `json:"path"`
	Position string          `json:"position"`
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	State    string          `json:"state"`
	Result   json.RawMessage `json:"result"`
	Error    string          `json:"error"`
}

func TestResultWorkflow(t *testing.T) {
	t.Parallel()
	b := setupWithWorker(t)
	ctx := ctxTimeout(t, 60*time.Second)

	// chain(echo 1, group(echo, echo), chord([echo 2, echo 3], echo))
	cv := baton.Chain(
		tasks.Echo.S(json.RawMessage(`1`), nil),
		baton.Group(tasks.Echo.Sig(nil), tasks.Echo.Sig(nil)),
		baton.Chord(baton.Group(tasks.Echo.SI(json.RawMessage(`2`), nil), tasks.Echo.SI(json.RawMessage(`3`), nil)), tasks.Echo.Sig(nil)),
	)
	wf, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "wf-tree"})
	require.NoError(t, err)
	_, err = wf.Wait(ctx)
	require.NoError(t, err)

	t.Run("tree", func(t *testing.T) {
		o := b.run(t, "result", "wf-tree").requireCode(t, exitOK)
		require.Regexp(t, `(?m)^id: +wf-tree$`, o.stdout)
		require.Regexp(t, `(?m)^kind: +chain$`, o.stdout)
		require.Regexp(t, `(?m)^state: +SUCCESS$`, o.stdout)
		want := []string{
			`^STEP +TASK ID +KIND +STATE +RETRIES +DURATION +ERROR$`,
			`^chain$`,
			`^  1 +wf-tree\.1 +echo +SUCCESS +0 +\S+$`,
			`^  2 group$`,
			`^    2\.1 +wf-tree\.2 +echo +SUCCESS +0 +\S+$`,
			`^    2\.2 +wf-tree\.3 +echo +SUCCESS`,
			`^  3 chord$`,
			`^    3\.header group$`,
			`^      3\.header\.1 +wf-tree\.4 +echo +SUCCESS`,
			`^      3\.header\.2 +wf-tree\.5 +echo +SUCCESS`,
			`^    3\.body +wf-tree\.6 +echo +SUCCESS`,
		}
		lines := strings.Split(o.stdout[strings.Index(o.stdout, "STEP"):], "\n")
		for i, re := range want {
			require.Regexp(t, re, lines[i])
		}
	})
	t.Run("json", func(t *testing.T) {
		o := b.run(t, "result", "wf-tree", "--json").requireCode(t, exitOK)
		var got struct {
			Workflow map[string]any `json:"workflow"`
			Steps    []stepOut      `json:"steps"`
		}
		require.NoError(t, json.Unmarshal([]byte(o.stdout), &got))
		require.Equal(t, "SUCCESS", got.Workflow["state"])
		require.Equal(t, []any{float64(2), float64(3)}, got.Workflow["result"])
		require.Len(t, got.Steps, 6)
		require.Equal(t, stepOut{Node: 1, Path: "1", Position: "step 1 of 3 of a chain", ID: "wf-tree.1", Kind: "echo",
			State: "SUCCESS", Result: json.RawMessage(`1`)}, got.Steps[0])
		require.Equal(t, "3.body", got.Steps[5].Path)
		require.Equal(t, "chord body", got.Steps[5].Position)
	})
	t.Run("failed workflow", func(t *testing.T) {
		cv := baton.Chain(tasks.Echo.S(json.RawMessage(`1`), nil), tasks.Fail.SI(tasks.FailArgs{Message: "nope", Permanent: true}, nil), tasks.Echo.Sig(nil))
		wf, err := b.client.Submit(ctx, cv, &baton.SubmitOpts{ID: "wf-fail"})
		require.NoError(t, err)
		_, err = wf.Wait(ctx)
		require.Error(t, err)
		// The backend's pipeliner may record the workflow's FAILURE a moment
		// before the skipped steps after it (reported upstream).
		b.waitState(t, "wf-fail.3", baton.Failure)
		o := b.run(t, "result", "wf-fail", "--wait").requireCode(t, exitFailure)
		require.Regexp(t, `(?m)^state: +FAILURE$`, o.stdout)
		require.Regexp(t, `(?m)^  2 +wf-fail\.2 +fail +FAILURE +0 +\S+ +nope$`, o.stdout)
		require.Regexp(t, `(?m)^  3 +wf-fail\.3 +echo +FAILURE`, o.stdout)
	})
}
