package baton_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// DecodeTaskMessage reads what asynq holds for a queued task: its id, kind
// and arguments, and for a workflow step the arguments it will get (the
// result of the step before it) and its place in the workflow.
func TestDecodeTaskMessage(t *testing.T) {
	b := setup(t)
	ctx := ctxTimeout(t, 10*time.Second)
	insp := asynq.NewInspectorFromRedisClient(b.rdb)

	h, err := b.client.EnqueueKind(ctx, "greet", map[string]string{"name": "Ada"}, nil)
	require.NoError(t, err)
	info, err := insp.GetTaskInfo(baton.QueueDefault, h.ID)
	require.NoError(t, err)
	m, err := baton.DecodeTaskMessage(info.Payload)
	require.NoError(t, err)
	require.Equal(t, baton.TaskMessage{ID: h.ID, Kind: "greet", Args: []byte(`{"name":"Ada"}`)}, *m)

	// The second step waits on a queue no worker consumes, with the first
	// step's result as its arguments.
	double := baton.NewTask("msg.double", func(_ context.Context, n int) (int, error) { return 2 * n, nil }, nil)
	b.startWorker(t, nil, double)
	wf, err := b.client.Submit(ctx, baton.Chain(double.S(21, nil), double.Sig(&baton.EnqueueOpts{Queue: "parked"})), nil)
	require.NoError(t, err)
	second := wf.Plan.Nodes[wf.Plan.Tasks()[1]].TaskID
	redistest.WaitFor(t, 5*time.Second, "the second step is queued", func() bool {
		_, err := insp.GetTaskInfo("parked", second)
		return err == nil
	})
	info, err = insp.GetTaskInfo("parked", second)
	require.NoError(t, err)
	m, err = baton.DecodeTaskMessage(info.Payload)
	require.NoError(t, err)
	first := wf.Plan.Nodes[wf.Plan.Tasks()[0]].TaskID
	require.Equal(t, baton.TaskMessage{ID: second, Kind: "msg.double", Args: []byte("42"), WorkflowID: wf.ID, ParentID: first}, *m)

	_, err = baton.DecodeTaskMessage([]byte("not json"))
	require.ErrorContains(t, err, "not a baton message")
}
