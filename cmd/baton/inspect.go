package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/backend"
)

// queueStats is one queue's row in `baton inspect`.
type queueStats struct {
	Queue     string `json:"queue"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Completed int    `json:"completed"`
	Paused    bool   `json:"paused"`
}

func newInspectCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show the queues with their pending, active, scheduled, retry and archived tasks",
		Long: `Show every queue with its task counts: pending (waiting for a worker),
active (running), scheduled (countdown or ETA), retry (waiting to retry, or
waiting for a limit), archived (failed for good, kept for inspection) and
completed. The default queue is always listed.

Then, when workers enforce limits (BATON_RATE_LIMITS, ...), each limit:
its definition, the kinds under it, how many key values it saw in the last
day, its usage (the busiest key's slots held, or burst allowance used) and
how many tasks wait on it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rdb, err := a.Redis(cmd.Context())
			if err != nil {
				return err
			}
			stats, err := inspectQueues(asynq.NewInspectorFromRedisClient(rdb))
			if err != nil {
				return err
			}
			limits, err := backend.ReadLimits(cmd.Context(), rdb)
			if err != nil {
				return err
			}
			if asJSON {
				out := map[string]any{"queues": stats}
				if len(limits) > 0 {
					out["limits"] = limits
				}
				return writeJSON(a.stdout, out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "QUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tCOMPLETED")
			for _, s := range stats {
				name := s.Queue
				if s.Paused {
					name += " (paused)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", name, s.Pending, s.Active, s.Scheduled, s.Retry, s.Archived, s.Completed)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return writeLimits(a.stdout, limits)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	return cmd
}

// inspectQueues reads every queue asynq knows, plus the default queue.
func inspectQueues(ins *asynq.Inspector) ([]queueStats, error) {
	names, err := ins.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	known := len(names)
	if !slices.Contains(names, baton.QueueDefault) {
		names = append(names, baton.QueueDefault)
	}
	out := make([]queueStats, 0, len(names))
	for i, q := range names {
		if i >= known {
			out = append(out, queueStats{Queue: q}) // no task ever queued on it
			continue
		}
		info, err := ins.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		out = append(out, queueStats{Queue: q, Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
			Retry: info.Retry, Archived: info.Archived, Completed: info.Completed, Paused: info.Paused})
	}
	slices.SortFunc(out, func(a, b queueStats) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}

// writeLimits prints the limits workers enforce, after a blank line; nothing
// when there are none.
func writeLimits(w io.Writer, limits []backend.LimitState) error {
	if len(limits) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LIMIT\tTYPE\tDEFINITION\tKINDS\tKEYS\tUSAGE\tWAITING")
	for _, l := range limits {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.0f%%\t%d\n", l.Name, l.Type, l.LimitDef.String(), strings.Join(l.Kinds, ","),
			l.ActiveKeys, l.Usage*100, l.Waiting)
	}
	return tw.Flush()
}
