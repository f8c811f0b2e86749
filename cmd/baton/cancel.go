package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton"
)

func newCancelCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel WORKFLOW_ID",
		Short: "Cancel a workflow: steps not started never start",
		Long: `Cancel a workflow: steps that have not started are recorded REVOKED and never
run, running steps have their context cancelled (best effort), and whoever
waits on the workflow gets a cancellation error. A finished workflow is left
as it is.`,
		Args: oneArg("a WORKFLOW_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := a.Client(ctx)
			if err != nil {
				return err
			}
			id := args[0]
			wf, err := cl.Workflow(ctx, id)
			if errors.Is(err, baton.ErrNotFound) {
				if _, terr := cl.Get(ctx, id); terr == nil {
					return usageErrorf("%s is a task, not a workflow: only workflows (baton submit) can be cancelled", id)
				}
			}
			if err != nil {
				return err
			}
			rec, err := wf.Record(ctx)
			if err == nil && rec.State.Terminal() {
				_, err = fmt.Fprintf(a.stdout, "workflow %s already finished (%s); nothing to cancel\n", id, rec.State)
				return err
			}
			if err := cl.Cancel(ctx, id); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "cancelled workflow %s\n", id)
			return err
		},
	}
}
