package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/beat"
)

func newBeatCmd(a *app) *cobra.Command {
	var (
		file  string
		check bool
	)
	cmd := &cobra.Command{
		Use:   "beat",
		Short: "Enqueue periodic tasks and canvases from a schedule file",
		Long: `Run the scheduler: enqueue each entry of the schedule file when it falls
due, until SIGINT or SIGTERM. Entries have a name, a cron spec or an every
interval, a timezone, and a task (with args and options) or a JSON canvas.

Run two beats for availability: every run has the id beat-<name>-<unix tick>
and is enqueued exactly once, whichever beat gets there first. A bad file is
rejected at start, naming the entry and the field at fault; --check only
validates it and prints the next runs.`,
		Example: `  baton beat --schedule deploy/schedule.yaml
  baton beat --schedule schedule.json --check`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBeat(cmd.Context(), a, file, check)
		},
	}
	cmd.Flags().StringVar(&file, "schedule", "", "Schedule file, YAML or JSON (required)")
	cmd.Flags().BoolVar(&check, "check", false, "Validate the schedule, print the next runs and exit")
	return cmd
}

func runBeat(ctx context.Context, a *app, file string, check bool) error {
	if file == "" {
		return usageErrorf("baton beat needs --schedule FILE (YAML or JSON)")
	}
	s, err := beat.Load(file)
	if err != nil {
		return usageErrorf("%w", err)
	}
	defs, err := a.Definitions(ctx)
	if err != nil {
		return err
	}
	kinds := make([]string, len(defs))
	for i, d := range defs {
		kinds[i] = d.Kind()
	}
	if err := s.CheckKinds(kinds); err != nil {
		return usageErrorf("schedule %s: %w", file, err)
	}
	if check {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENTRY\tSCHEDULE\tRUNS\tNEXT RUN")
		now := time.Now()
		for _, e := range s.Entries {
			what := e.Task
			if what == "" {
				what = "canvas"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, e.Spec(), what, e.Next(now).Format(time.RFC3339))
		}
		return tw.Flush()
	}
	cl, err := a.Client(ctx)
	if err != nil {
		return err
	}
	log := a.Logger()
	log.Info("beat starting", "schedule", file, "entries", len(s.Entries))
	return beat.New(cl, s, &beat.Options{Logger: log}).Run(ctx)
}
