package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/chain"
)

func newSubmitCmd(a *app) *cobra.Command {
	var (
		id          string
		wait        bool
		waitTimeout time.Duration
		asJSON      bool
		allowKinds  bool
		input       string
	)
	cmd := &cobra.Command{
		Use:   "submit FILE|-",
		Short: "Submit a JSON canvas (chain, group, chord) and print the workflow id",
		Long: `Submit a workflow described in JSON, from FILE or from stdin ("-"), and print
its id alone on stdout. A node is one of:

  {"task": "echo", "args": {...} or [...], "options": {...}, "immutable": false}
  {"chain": [node, ...]}
  {"group": [node, ...]}
  {"chord": {"header": [node, ...], "body": node}}

Every node may also take "link" and "on_error" callbacks (a task node each).
--input feeds a JSON value to the first step(s) as if it were a previous
result.

The whole document is checked before anything is enqueued: a malformed node
or an unknown task kind is reported with its JSON path (exit 2). With --wait,
wait for the workflow and print it as ` + "`baton result`" + ` does.

If the submission is cut short once it has begun (Redis fails, Ctrl-C), one
line on stderr names the workflow id and the command that resumes it:

  baton submit --id ID FILE

Submitting an id again is idempotent: it dispatches what the first attempt
did not, and never runs a task twice.`,
		Example: `  echo '{"chain": [{"task": "echo", "args": 1}, {"task": "sleep", "args": {"ms": 100}}]}' | baton submit - --wait
  baton submit research.json --id nightly-2030-01-02
  echo '{"group": [{"task": "echo"}, {"task": "echo"}]}' | baton submit - --input '{"x": 1}' --wait`,
		Args: oneArg("a FILE with the JSON canvas, or - for stdin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if waitTimeout < 0 {
				return usageErrorf("--wait-timeout %v is negative", waitTimeout)
			}
			var in json.RawMessage
			if cmd.Flags().Changed("input") {
				if !json.Valid([]byte(input)) {
					return usageErrorf("--input %q is not valid JSON: quote strings (--input '\"text\"') and pass numbers, arrays or objects as they are", input)
				}
				in = json.RawMessage(input)
			}
			doc, err := readDocument(a.stdin, args[0])
			if err != nil {
				return err
			}
			cv, err := chain.Parse(doc)
			if err != nil {
				return usageErrorf("invalid canvas in %s: %w", sourceName(args[0]), err)
			}
			ctx := cmd.Context()
			cl, err := a.Client(ctx)
			if err != nil {
				return err // nothing was written
			}
			if id == "" {
				// Chosen here, not by Submit, so that a submission cut short
				// can still be named and resumed.
				id = uuid.NewString()
			}
			resume := resumeCommand(id, args[0], allowKinds, in)
			wf, err := cl.Submit(ctx, cv, &baton.SubmitOpts{ID: id, RequireKnownKinds: !allowKinds, Input: in})
			if err != nil {
				if isSubmitInputError(err) {
					return usageErrorf("%s (in %s)", strings.TrimPrefix(err.Error(), "baton: "), sourceName(args[0]))
				}
				return &resumeError{id: id, cmd: resume, err: err, redis: ctx.Err() == nil}
			}
			if !wait {
				if asJSON {
					return writeJSON(a.stdout, map[string]any{"id": wf.ID, "kind": wf.Plan.Kind(), "tasks": len(wf.Plan.Tasks())})
				}
				_, err := fmt.Fprintln(a.stdout, wf.ID)
				return err
			}
			err = showWorkflow(ctx, a.stdout, wf, true, waitTimeout, asJSON)
			var ee *exitError
			if err != nil && !errors.As(err, &ee) && !errors.Is(err, baton.ErrNotFound) {
				// Submitted, but the wait was cut short: the same command
				// (idempotent) waits again.
				return &resumeError{id: id, cmd: resume + " --wait", err: err, redis: ctx.Err() == nil}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "Workflow id, "+backend.IDRule+" (default: a new random id); submitting an existing id returns that workflow and finishes dispatching it")
	f.BoolVar(&wait, "wait", false, "Wait for the workflow to finish and print it with its steps")
	f.DurationVar(&waitTimeout, "wait-timeout", 0, "With --wait, give up waiting after this long (exit 5); 0 waits until interrupted")
	f.BoolVar(&asJSON, "json", false, "Print JSON")
	f.BoolVar(&allowKinds, "allow-unknown-kinds", false, "Accept task kinds this program does not know (registered by another worker)")
	f.StringVar(&input, "input", "", "JSON value fed to the first step(s) as if it were a previous result, e.g. --input '[1, 2]'")
	return cmd
}

// resumeCommand is the command that finishes (or waits again for) the
// submission of workflow id from file: submitting an id again is
// idempotent and dispatches what was not.
func resumeCommand(id, file string, allowKinds bool, input json.RawMessage) string {
	cmd := "baton submit --id " + id
	if allowKinds {
		cmd += " --allow-unknown-kinds"
	}
	if input != nil {
		cmd += " --input " + shellQuote(string(input))
	}
	return cmd + " " + shellQuote(file)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// readDocument reads FILE, or stdin for "-".
func readDocument(stdin io.Reader, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usageErrorf("read canvas: %w", err)
	}
	return b, nil
}

func sourceName(arg string) string {
	if arg == "-" {
		return "stdin"
	}
	return arg
}

// isSubmitInputError reports whether Submit rejected its input (the canvas
// or the workflow id) rather than failing to reach Redis.
func isSubmitInputError(err error) bool {
	return errors.Is(err, baton.ErrInvalidCanvas) || errors.Is(err, baton.ErrInvalidOptions)
}
