package dash

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/backend"
	"github.com/batonhq/baton/internal/redistest"
)

// TestFormatPayloadCorruptPlan: a message pointing at a stored plan that is
// not well formed is shown with its node number; walking that plan would
// panic the request.
func TestFormatPayloadCorruptPlan(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	bad := `{"wf":"bad","nodes":[{"t":"chain","p":-1,"i":0,"c":[1]},{"t":"task","p":7,"i":0,"id":"bad.1","s":{"task":"k"}}]}`
	require.NoError(t, rdb.HSet(context.Background(), backend.WorkflowKey("bad"), "plan", bad).Err())
	f := newFormatter(rdb)
	out := f.FormatPayload("k", []byte(`{"v":1,"id":"bad.1","kind":"k","wf":"bad","n":1}`))
	require.Contains(t, out, `"position": "node 1"`)
}
