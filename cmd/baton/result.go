package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/chain"
)

func newResultCmd(a *app) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "result ID",
		Short: "Show a task's or workflow's state, result or error",
		Long: `Show the record of a task or workflow: state, result or error, retries.
For a workflow id, also show every step as a tree.

Exit status: 0 SUCCESS, 1 FAILURE or REVOKED, 4 unknown id, 5 not finished
(PENDING, STARTED or RETRY; with --wait, when --timeout passes first).`,
		Example: `  baton result 0b6a...
  baton result 0b6a... --wait --timeout 1m
  baton result 0b6a... --json | jq .result`,
		Args: oneArg("a task or workflow ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usageErrorf("--timeout %v is negative", timeout)
			}
			ctx := cmd.Context()
			cl, err := a.Client(ctx)
			if err != nil {
				return err
			}
			id := args[0]
			wf, err := cl.Workflow(ctx, id)
			switch {
			case err == nil:
				return showWorkflow(ctx, a.stdout, wf, wait, timeout, asJSON)
			case !errors.Is(err, baton.ErrNotFound):
				return err
			}
			get := func(ctx context.Context) (*baton.Record, error) { return cl.Get(ctx, id) }
			if !wait {
				return showTask(ctx, a.stdout, get, nil, 0, asJSON)
			}
			return showTask(ctx, a.stdout, get, func(ctx context.Context) (*baton.Record, error) { return cl.Wait(ctx, id) }, timeout, asJSON)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "Wait until the task or workflow finishes")
	f.DurationVar(&timeout, "timeout", 0, "With --wait, give up waiting after this long (exit 5); 0 waits until interrupted")
	f.BoolVar(&asJSON, "json", false, "Print one JSON object")
	return cmd
}

type recordFunc func(context.Context) (*baton.Record, error)

// awaitRecord waits with wait, bounded by timeout (0: none). A task that
// ended, even in FAILURE, gives its record; when the timeout passes first,
// get gives the current (unfinished) record.
func awaitRecord(ctx context.Context, wait, get recordFunc, timeout time.Duration) (*baton.Record, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	rec, err := wait(wctx)
	if rec != nil {
		return rec, nil // terminal; a FAILURE's error is in the record
	}
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return get(ctx)
	}
	return nil, err
}

// showTask prints a task's record (waiting first when wait is set) and
// returns the exit status its state stands for.
func showTask(ctx context.Context, w io.Writer, get, wait recordFunc, timeout time.Duration, asJSON bool) error {
	var (
		rec *baton.Record
		err error
	)
	if wait != nil {
		rec, err = awaitRecord(ctx, wait, get, timeout)
	} else {
		rec, err = get(ctx)
	}
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(w, jsonRecord(rec)); err != nil {
			return err
		}
	} else {
		printRecord(w, rec)
	}
	return stateExit(rec.State)
}

// showWorkflow prints a workflow's record and its steps as a tree.
func showWorkflow(ctx context.Context, w io.Writer, wf *baton.Workflow, wait bool, timeout time.Duration, asJSON bool) error {
	var (
		rec *baton.Record
		err error
	)
	if wait {
		rec, err = awaitRecord(ctx, wf.Wait, wf.Record, timeout)
	} else {
		rec, err = wf.Record(ctx)
	}
	if err != nil {
		return err
	}
	steps, err := wf.Steps(ctx)
	if err != nil {
		return err
	}
	tree := workflowTree(wf.Plan, steps)
	if asJSON {
		out := struct {
			Workflow recordJSON `json:"workflow"`
			Steps    []stepJSON `json:"steps"`
		}{Workflow: jsonRecord(rec), Steps: make([]stepJSON, 0, len(tree))}
		for _, r := range tree {
			if r.node.Type == chain.TypeTask {
				out.Steps = append(out.Steps, r.json(wf.Plan))
			}
		}
		if err := writeJSON(w, out); err != nil {
			return err
		}
	} else {
		printRecord(w, rec)
		fmt.Fprintln(w)
		printTree(w, tree)
	}
	return stateExit(rec.State)
}

// recordJSON is a record as --json prints it: result and error are always
// present (null and "" when there is none).
type recordJSON struct {
	*baton.Record
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

func jsonRecord(r *baton.Record) recordJSON {
	return recordJSON{Record: r, Result: r.Result, Error: r.Error}
}

// stepJSON is one task of a workflow in --json output.
type stepJSON struct {
	Node     int    `json:"node"`
	Path     string `json:"path"`     // as in the tree: "2.1", "3.body"
	Position string `json:"position"` // "step 2 of 3 of a chain"
	Expired  bool   `json:"expired,omitempty"`
	recordJSON
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printRecord prints a record as aligned "key: value" lines; multi-line
// values (a pretty-printed result) continue under the value column.
func printRecord(w io.Writer, r *baton.Record) {
	type kv struct{ k, v string }
	rows := []kv{{"id", r.ID}, {"kind", r.Kind}, {"state", string(r.State)}}
	add := func(k, v string) {
		if v != "" {
			rows = append(rows, kv{k, v})
		}
	}
	add("queue", r.Queue)
	add("workflow", r.WorkflowID)
	add("parent", r.ParentID)
	rows = append(rows, kv{"retries", strconv.Itoa(r.Retries)})
	if r.Executions > 0 {
		rows = append(rows, kv{"executions", strconv.Itoa(r.Executions)})
	}
	add("enqueued", formatTime(r.EnqueuedAt))
	add("started", formatTime(r.StartedAt))
	add("finished", formatTime(r.FinishedAt))
	if r.State == baton.Retry {
		add("next try", formatTime(r.NextTryAt))
	}
	add("duration", durationOf(r))
	add("error", r.Error)
	if len(r.Payload) > 0 && r.State == baton.Failure {
		add("payload", string(r.Payload))
	}
	if len(r.Result) > 0 {
		add("result", prettyJSON(r.Result))
	}
	width := 0
	for _, row := range rows {
		width = max(width, len(row.k)+1)
	}
	for _, row := range rows {
		lines := strings.Split(row.v, "\n")
		fmt.Fprintf(w, "%-*s %s\n", width, row.k+":", lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%-*s %s\n", width, "", l)
		}
	}
}

func prettyJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2006-01-02T15:04:05.000Z07:00")
}

// durationOf is how long a finished task ran ("" before it finished).
// Timestamps have millisecond resolution.
func durationOf(r *baton.Record) string {
	if r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
		return ""
	}
	if d := r.Duration(); d >= time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return "<1ms"
}

// treeRow is one line of a workflow tree: a task or a container node.
type treeRow struct {
	index int
	node  chain.Node
	depth int
	path  string // "2.1", "3.header.1"; "" for the root
	step  *baton.Step
}

// workflowTree walks the plan depth first: chain and group members in order,
// a chord's header then body, each indented under its container.
func workflowTree(p *chain.Plan, steps []baton.Step) []treeRow {
	byNode := map[int]*baton.Step{}
	for i := range steps {
		byNode[steps[i].Node] = &steps[i]
	}
	var rows []treeRow
	var walk func(n, depth int, path string)
	walk = func(n, depth int, path string) {
		node := p.Nodes[n]
		rows = append(rows, treeRow{index: n, node: node, depth: depth, path: path, step: byNode[n]})
		for i, c := range node.Children {
			seg := strconv.Itoa(i + 1)
			if node.Type == chain.TypeChord {
				seg = map[int]string{0: "header", 1: "body"}[i]
			}
			if path != "" {
				seg = path + "." + seg
			}
			walk(c, depth+1, seg)
		}
	}
	walk(0, 0, "")
	return rows
}

func (r treeRow) json(p *chain.Plan) stepJSON {
	s := stepJSON{Node: r.index, Path: r.path, Position: p.Position(r.index)}
	rec := &baton.Record{ID: r.node.TaskID}
	if r.node.Sig != nil {
		rec.Kind = r.node.Sig.Kind
	}
	if r.step != nil && r.step.Record != nil {
		rec = r.step.Record
	} else {
		s.Expired = true
	}
	s.recordJSON = jsonRecord(rec)
	return s
}

func printTree(w io.Writer, rows []treeRow) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTASK ID\tKIND\tSTATE\tRETRIES\tDURATION\tERROR")
	for _, r := range rows {
		indent := strings.Repeat("  ", r.depth)
		label := r.path
		if r.node.Type != chain.TypeTask {
			label = strings.TrimSpace(label + " " + r.node.Type)
			fmt.Fprintf(tw, "%s%s\t\t\t\t\t\t\n", indent, label)
			continue
		}
		if label == "" {
			label = "task"
		}
		kind := ""
		if r.node.Sig != nil {
			kind = r.node.Sig.Kind
		}
		state, retries, dur, errText := "(expired)", "", "", ""
		if r.step != nil && r.step.Record != nil {
			rec := r.step.Record
			state, retries, dur, errText = string(rec.State), strconv.Itoa(rec.Retries), durationOf(rec), firstLine(rec.Error)
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, label, r.node.TaskID, kind, state, retries, dur, errText)
	}
	_ = tw.Flush()
	// Container rows carry empty cells to keep the columns aligned: trim
	// the padding they leave at the end of lines.
	for l := range strings.Lines(buf.String()) {
		fmt.Fprintln(w, strings.TrimRight(l, " \n"))
	}
}
