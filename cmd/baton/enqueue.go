package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
)

// enqueueFlags are the flags of `baton enqueue`.
type enqueueFlags struct {
	args        string
	maxRetries  int
	retryDelay  time.Duration
	countdown   time.Duration
	eta         string
	expiresIn   time.Duration
	queue       string
	timeout     time.Duration
	id          string
	wait        bool
	waitTimeout time.Duration
	asJSON      bool
	allowKinds  bool
}

func newEnqueueCmd(a *app) *cobra.Command {
	var fl enqueueFlags
	cmd := &cobra.Command{
		Use:   "enqueue KIND",
		Short: "Enqueue one task and print its id",
		Long: `Enqueue one task of the given kind with JSON arguments and print its id,
alone on stdout. With --wait, wait for it to finish and print its record as
` + "`baton result`" + ` does (same exit status).

Options left unset keep the task's registered defaults.`,
		Example: `  baton enqueue echo --args '{"x": 1}'
  baton enqueue echo --args '{"x": 1}' --wait --json
  baton enqueue fetch --args '{"url": "https://example.com"}' --max-retries 5 --retry-delay 10s
  baton enqueue sleep --args '{"ms": 1000}' --countdown 1m --expires-in 10m`,
		Args: oneArg("a task KIND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnqueue(cmd, a, args[0], &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.args, "args", "", "Task arguments as JSON (any JSON value)")
	f.IntVar(&fl.maxRetries, "max-retries", 0, "Retries after a failed attempt (default: the task's)")
	f.DurationVar(&fl.retryDelay, "retry-delay", 0, "Fixed wait before each retry (default: the task's policy)")
	f.DurationVar(&fl.countdown, "countdown", 0, "Run the first attempt after this long")
	f.StringVar(&fl.eta, "eta", "", "Run the first attempt at this time (RFC 3339, e.g. 2030-01-02T15:04:05Z; wins over --countdown)")
	f.DurationVar(&fl.expiresIn, "expires-in", 0, "Revoke the task if it has not started within this long")
	f.StringVar(&fl.queue, "queue", "", "Queue to run on (default: the task's)")
	f.DurationVar(&fl.timeout, "timeout", 0, "Bound on one attempt (default: the task's)")
	f.StringVar(&fl.id, "id", "", "Task id, "+backend.IDRule+" (default: a new random id); enqueuing an existing id does not run it again")
	f.BoolVar(&fl.wait, "wait", false, "Wait for the task to finish and print its record")
	f.DurationVar(&fl.waitTimeout, "wait-timeout", 0, "With --wait, give up waiting after this long (exit 5); 0 waits until interrupted")
	f.BoolVar(&fl.asJSON, "json", false, "Print JSON")
	f.BoolVar(&fl.allowKinds, "allow-unknown-kinds", false, "Enqueue a kind this program does not know (registered by another worker)")
	return cmd
}

// opts turns the flags into EnqueueOpts, rejecting bad values by flag name.
func (fl *enqueueFlags) opts(cmd *cobra.Command) (*baton.EnqueueOpts, error) {
	o := &baton.EnqueueOpts{ID: fl.id, Queue: fl.queue, Timeout: fl.timeout, Countdown: fl.countdown, ExpiresIn: fl.expiresIn}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"retry-delay", fl.retryDelay}, {"countdown", fl.countdown}, {"expires-in", fl.expiresIn}, {"timeout", fl.timeout}, {"wait-timeout", fl.waitTimeout}} {
		if d.v < 0 {
			return nil, usageErrorf("--%s %v is negative", d.name, d.v)
		}
	}
	if cmd.Flags().Changed("max-retries") {
		if fl.maxRetries < 0 {
			return nil, usageErrorf("--max-retries %d is negative: use 0 for no retries", fl.maxRetries)
		}
		o.MaxRetries = &fl.maxRetries
	}
	if cmd.Flags().Changed("retry-delay") {
		o.RetryDelay = baton.FixedDelay(fl.retryDelay)
	}
	if fl.eta != "" {
		t, err := time.Parse(time.RFC3339, fl.eta)
		if err != nil {
			return nil, usageErrorf("--eta %q is not an RFC 3339 time: use e.g. %s", fl.eta, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		}
		o.ETA = t
	}
	return o, nil
}

// parseArgs checks --args: any JSON value, or none.
func parseArgs(s string) (json.RawMessage, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, usageErrorf("--args is not valid JSON: %v (quote it for the shell, e.g. --args '{\"x\": 1}')", err)
	}
	return json.RawMessage(s), nil
}

func runEnqueue(cmd *cobra.Command, a *app, kind string, fl *enqueueFlags) error {
	ctx := cmd.Context()
	args, err := parseArgs(fl.args)
	if err != nil {
		return err
	}
	opts, err := fl.opts(cmd)
	if err != nil {
		return err
	}
	cl, err := a.Client(ctx)
	if err != nil {
		return err
	}
	if !fl.allowKinds {
		known, kinds, err := a.knownKind(ctx, kind)
		if err != nil {
			return err
		}
		if !known {
			return usageErrorf("unknown task kind %q (known: %s); pass --allow-unknown-kinds if another worker registers it", kind, strings.Join(kinds, ", "))
		}
	}
	h, err := cl.EnqueueKind(ctx, kind, args, opts)
	if err != nil {
		// Bad input, not a failure: an oversized payload or invalid options.
		if errors.Is(err, baton.ErrPayloadTooLarge) || errors.Is(err, baton.ErrInvalidOptions) {
			return &usageError{err}
		}
		return err
	}
	if !fl.wait {
		if fl.asJSON {
			return writeJSON(a.stdout, map[string]string{"id": h.ID, "kind": h.Kind, "queue": h.Queue})
		}
		_, err := fmt.Fprintln(a.stdout, h.ID)
		return err
	}
	get := func(ctx context.Context) (*baton.Record, error) { return h.Record(ctx) }
	return showTask(ctx, a.stdout, get, h.Wait, fl.waitTimeout, fl.asJSON)
}
