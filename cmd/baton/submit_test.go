package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
